"""Drawing a circuit's layered graph: inline SVG for the HTML page and the widget, matplotlib for papers.

Node positions come from ``graph_layout``; edges are those of ``circuits.graph.circuit_graph``. Colours: blue
positive, red negative; edge width grows with |weight| relative to the largest edge of its kind (W_in and
residual weights live on different scales). Every label goes through ``esc`` (``html.escape``), so a
vocabulary word such as ``<script>`` shows as text. A large circuit's matplotlib drawing shows its key paths
(``key_path_edges``: the strongest routes from inputs to the logits) and greys out the rest, saying so on the
figure; every drawing carries a legend of what an edge's colour, dash and width mean.
"""

from __future__ import annotations

import html
import math

import torch

from ..circuits.graph import NON_FLOW_KINDS, adjacency, downstream, edge_counts, upstream
from .graph_layout import layout, row_names, row_of

POS, NEG, QK, OFF_PATH = "#2166ac", "#b2182b", "#888888", "#cccccc"
KEY_PATHS_ABOVE = 200
"""``plot_circuit_graph`` draws circuits of more nodes than this as their key paths (``key_path_edges``)."""
KEY_EDGES = 120
"""Edges kept on the key paths of a large circuit."""
MAX_GREY_EDGES = 2000
"""A key-path drawing leaves out the other edges when they are more than this, instead of drawing them grey."""
SITE_COLOURS = {
    "embed": "#555555",
    "attn_in": "#8c6bb1",
    "q": "#e6ab02",
    "k": "#d95f02",
    "v": "#1b9e77",
    "attn_out": "#7570b3",
    "mlp_in": "#66a61e",
    "mlp_neuron": "#e7298a",
    "mlp_out": "#a6761d",
    "logits": "#000000",
}


def esc(s: object) -> str:
    """Text for HTML and SVG: every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape(str(s), quote=True)


def rgba(v: float, scale: float) -> str:
    """CSS colour of a value: blue positive, red negative, opaque at |v| >= scale."""
    a = min(1.0, abs(v) / scale) if scale > 0 else 0.0
    return f"rgba(33,102,172,{a:.2f})" if v >= 0 else f"rgba(178,24,43,{a:.2f})"


def _largest_by_kind(graph: dict) -> dict[str, float]:
    """Edge kind -> largest |weight| among the graph's edges of that kind."""
    top: dict[str, float] = {}
    for e in graph["edges"]:
        top[e.kind] = max(top.get(e.kind, 0.0), abs(e.weight))
    return top


def _edge_style(graph: dict) -> list[tuple[float, str]]:
    """(width, colour) per edge: width by |w| over the largest |w| of the same kind, colour by sign."""
    top = _largest_by_kind(graph)
    out = []
    for e in graph["edges"]:
        w = 0.3 + 2.2 * abs(e.weight) / top[e.kind] if top[e.kind] > 0 else 0.3
        out.append((w, QK if e.kind == "qk" else (POS if e.weight >= 0 else NEG)))
    return out


def relative_strengths(graph: dict) -> list[float]:
    """|weight| of each edge over the largest |weight| of its kind (0 when that is 0)."""
    top = _largest_by_kind(graph)
    return [abs(e.weight) / top[e.kind] if top[e.kind] > 0 else 0.0 for e in graph["edges"]]


def key_path_edges(graph: dict, n_edges: int) -> list[int]:
    """Indices of the ``n_edges`` edges on the strongest paths from the inputs to the logits.

    A path's strength is its weakest edge (``relative_strengths``); an edge scores the strength of the strongest
    path through it from a source (a node without incoming edges: embedding channels, bias-like nodes) to a sink
    (the answer logits; nodes without outgoing edges when the graph has no logits). Every edge on an edge's best
    path scores at least as much, so the best-scoring edges form whole paths (ties aside). Edges on no such path
    and q-k pairs (no value flows along them) are never chosen."""
    edges, nodes = graph["edges"], graph["nodes"]
    rel = relative_strengths(graph)
    row = {k: row_of(info, graph["n_layer"]) for k, info in nodes.items()}
    flow = [i for i, e in enumerate(edges) if e.kind not in NON_FLOW_KINDS]  # each goes up at least one row
    has_in, has_out = {edges[i].dst for i in flow}, {edges[i].src for i in flow}
    sinks = {k for k, info in nodes.items() if info["kind"] == "logit"} or set(nodes) - has_out
    fwd = {k: 0.0 if k in has_in else math.inf for k in nodes}  # strongest path from a source to k
    for i in sorted(flow, key=lambda i: row[edges[i].src]):
        e = edges[i]
        fwd[e.dst] = max(fwd[e.dst], min(fwd[e.src], rel[i]))
    bwd = {k: math.inf if k in sinks else 0.0 for k in nodes}  # strongest path from k to a sink
    for i in sorted(flow, key=lambda i: -row[edges[i].dst]):
        e = edges[i]
        bwd[e.src] = max(bwd[e.src], min(rel[i], bwd[e.dst]))
    score = {i: min(fwd[edges[i].src], rel[i], bwd[edges[i].dst]) for i in flow}
    ranked = sorted((i for i in flow if score[i] > 0), key=lambda i: (-score[i], i))
    return sorted(ranked[:n_edges])


def edge_legend_handles(key_paths: bool = False) -> list:
    """Legend entries of a graph's edges: sign colours, the q-k dash, thin and thick widths (and, for a key-path
    drawing, the grey of edges off the key paths)."""
    from matplotlib.lines import Line2D

    out = [
        Line2D([], [], color=POS, lw=1.5, label="positive weight"),
        Line2D([], [], color=NEG, lw=1.5, label="negative weight"),
        Line2D([], [], color=QK, lw=1.0, ls="--", label="q-k pair (forms a score)"),
        Line2D([], [], color="black", lw=0.3, label="weak (width: |w| / largest of its kind)"),
        Line2D([], [], color="black", lw=1.6, label="strongest of its kind"),
    ]
    if key_paths:
        out.append(Line2D([], [], color=OFF_PATH, lw=1.0, label="not on a key path"))
    return out


def _label_offsets(names: list[str], pos: dict, width_pt: float) -> dict[str, tuple[float, float, float]]:
    """Label placement per node, (dx, dy in points, rotation): neighbours in a row alternate above and below; a
    row too crowded for that gets its labels turned upright, so no two labels overlap."""
    rows: dict[float, list[str]] = {}
    for n in names:
        rows.setdefault(pos[n][1], []).append(n)
    out = {}
    for members in rows.values():
        members.sort(key=lambda n: pos[n][0])
        longest = max(len(n) for n in members) * 3.4  # points at fontsize 6
        fits = len(members) * longest <= 2 * width_pt  # two staggered lines of labels
        for i, n in enumerate(members):
            out[n] = (0.0, 4.0 if i % 2 == 0 else -10.0, 0.0) if fits else (0.0, 4.0, 90.0)
    return out


def _lit(graph: dict, highlight: str | None, adj=None) -> tuple[set[str] | None, set[str], set[str]]:
    if highlight is None or highlight not in graph["nodes"]:
        return None, set(), set()
    adj = adj or adjacency(graph)
    return {highlight}, upstream(graph, highlight, adj), downstream(graph, highlight, adj)


def _on_path(s: str, d: str, sel: set[str], up: set[str], down: set[str]) -> bool:
    a, b = sel | up, sel | down
    return (s in a and d in a) or (s in b and d in b)


# ---------------------------------------------------------------------------------------- graph


def drawn_edges(graph: dict, max_edges: int | None) -> list[int]:
    """Indices of the edges to draw: all, or the ``max_edges`` strongest relative to their kind's largest."""
    n = len(graph["edges"])
    if max_edges is None or n <= max_edges:
        return list(range(n))
    top = _largest_by_kind(graph)
    rel = torch.tensor([abs(e.weight) / top[e.kind] for e in graph["edges"]])
    return sorted(rel.topk(max_edges).indices.tolist())


def graph_svg(
    graph: dict,
    positions: dict | None = None,
    highlight: str | None = None,
    adj=None,
    row_height: int = 34,
    max_width: int = 6000,
    max_edges: int | None = 15000,
) -> str:
    """The layered graph as an inline SVG string (embed at the bottom, logits at the top). With a highlight
    node, it and its upstream and downstream nodes and the edges between them stand out. Circles carry
    ``data-i`` (position in graph["nodes"]) and lines ``data-s``/``data-d``, for the HTML page's script.
    Beyond ``max_edges`` only the strongest edges are drawn (a dense model's circuit can have 10^5)."""
    pos = positions or layout(graph)
    n_rows = len(row_names(graph["n_layer"]))
    per_row: dict[float, int] = {}
    for _, y in pos.values():
        per_row[y] = per_row.get(y, 0) + 1
    left, margin = 120, 16
    shown = drawn_edges(graph, max_edges)
    notes = 2 if len(shown) < len(graph["edges"]) else 1  # lines of text above the graph: the legend, a note
    width = min(max_width, max(700, 9 * max(per_row.values(), default=1))) + left
    height = 2 * margin + (n_rows - 1) * row_height + 14 * notes
    xy = {k: (left + x * (width - left - margin), height - margin - y * row_height) for k, (x, y) in pos.items()}
    sel, up, down = _lit(graph, highlight, adj)
    index = {k: i for i, k in enumerate(graph["nodes"])}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
    ]
    for r, name in enumerate(row_names(graph["n_layer"])):
        y = height - margin - r * row_height
        parts.append(f'<text x="4" y="{y + 3:.0f}" fill="#444">{esc(name)}</text>')
    styles = _edge_style(graph)
    parts.append(
        f'<text x="4" y="12" fill="#444">edges: <tspan fill="{POS}">blue positive weight</tspan>, '
        f'<tspan fill="{NEG}">red negative</tspan>, <tspan fill="{QK}">grey dashed q-k pair</tspan>; '
        "width: |weight| / largest of its kind</text>"
    )
    if len(shown) < len(graph["edges"]):
        parts.append(
            f'<text x="4" y="26" fill="#b2182b">drawing the {len(shown)} strongest of '
            f"{len(graph['edges'])} edges</text>"
        )
    parts.append('<g stroke-opacity="0.35">')  # one default opacity; highlighted lines override it
    for k in shown:
        e, (w, colour) = graph["edges"][k], styles[k]
        (x1, y1), (x2, y2) = xy[e.src], xy[e.dst]
        op = "" if sel is None else f' stroke-opacity="{0.9 if _on_path(e.src, e.dst, sel, up, down) else 0.05}"'
        dash = ' stroke-dasharray="2,2"' if e.kind == "qk" else ""
        parts.append(
            f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
            f'stroke-width="{w:.1f}"{op}{dash} data-s="{index[e.src]}" data-d="{index[e.dst]}"/>'
        )
    parts.append("</g>")
    for label, info in graph["nodes"].items():
        x, y = xy[label]
        on = sel is None or label in sel or label in up or label in down
        chosen = sel is not None and label in sel
        extra = ' stroke="#000" stroke-width="2"' if chosen else ""
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{7 if chosen else 4}" fill="{SITE_COLOURS[info["site"]]}" '
            f'fill-opacity="{1 if on else 0.15}"{extra} data-i="{index[label]}" style="cursor:pointer">'
            f"<title>{esc(label)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def plot_circuit_graph(
    graph: dict,
    ax=None,
    highlight: str | None = None,
    labels: bool | None = None,
    key_edges: int | None = None,
):
    """The layered graph with matplotlib (for papers and papermill-run notebooks): edge width by |weight|,
    colour by sign, q-k pairs dashed grey, with an edge legend beside the plot; with ``highlight``, other nodes
    and edges fade. With ``key_edges`` (by default ``KEY_EDGES`` for a circuit of more than ``KEY_PATHS_ABOVE``
    nodes) only the edges ``key_path_edges`` chooses are coloured, the others light grey (left out when more than
    ``MAX_GREY_EDGES``), and a note under the plot says so. Labels (default: up to 40 labelled nodes) alternate above and below. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    pos = layout(graph)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * len(row_names(graph["n_layer"]))))
    n_nodes = sum(v["kind"] == "node" for v in graph["nodes"].values())
    if key_edges is None and n_nodes > KEY_PATHS_ABOVE:
        key_edges = KEY_EDGES
    key = set(key_path_edges(graph, key_edges)) if key_edges is not None else None
    on_key = {n for i in key for n in (graph["edges"][i].src, graph["edges"][i].dst)} if key is not None else None
    sel, up, down = _lit(graph, highlight)
    segs, widths, colours, styles = [], [], [], []
    order = sorted(range(len(graph["edges"])), key=lambda i: key is not None and i in key)  # key paths on top
    # off the key paths: a few hundred grey edges show the rest of the circuit; thousands merge into solid bands
    n_off = len(graph["edges"]) - len(key) if key is not None else 0
    drop_off = n_off > MAX_GREY_EDGES
    off_alpha = min(0.25, 300 / max(1, n_off))
    if drop_off:
        order = [i for i in order if i in key]
    edge_styles = _edge_style(graph)
    for i in order:
        e, (w, colour) = graph["edges"][i], edge_styles[i]
        segs.append([pos[e.src], pos[e.dst]])
        alpha = 0.35 if sel is None else (0.9 if _on_path(e.src, e.dst, sel, up, down) else 0.04)
        if key is not None and i not in key:
            colour, w, alpha = OFF_PATH, 0.5, min(alpha, off_alpha)
        elif key is not None:
            alpha = max(alpha, 0.7)
        widths.append(w * 0.6)
        colours.append((*_hex_rgb(colour), alpha))
        styles.append("--" if e.kind == "qk" else "-")
    if segs:
        ax.add_collection(LineCollection(segs, linewidths=widths, colors=colours, linestyles=styles, zorder=1))
    names = list(graph["nodes"])
    if names:
        xy = torch.tensor([pos[n] for n in names])

        def shown(n: str) -> bool:  # the selected node always; others when lit and on a key path
            if sel is not None and n in sel:
                return True
            return (sel is None or n in up or n in down) and (on_key is None or n in on_key)

        alpha = [1.0 if shown(n) else 0.15 for n in names]
        fc = [(*_hex_rgb(SITE_COLOURS[graph["nodes"][n]["site"]]), a) for n, a in zip(names, alpha)]
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=[60 if sel and n in sel else 14 for n in names],
            c=fc,
            zorder=2,
            edgecolors=["black" if sel and n in sel else "none" for n in names],
        )
        named = [n for n in names if on_key is None or n in on_key or (sel is not None and n in sel)]
        if labels if labels is not None else len(named) <= 40:
            width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
            for n, (dx, dy, rot) in _label_offsets(named, pos, width_pt).items():
                ax.annotate(
                    n,
                    pos[n],
                    fontsize=6,
                    xytext=(dx, dy),
                    textcoords="offset points",
                    ha="center",
                    va="bottom" if rot else "baseline",
                    rotation=rot,
                )
    rows = row_names(graph["n_layer"])
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    c = edge_counts(graph)
    ax.set_title(f"{n_nodes} nodes, {c['total']} edges" + (f"; selected {highlight}" if sel else ""), fontsize=9)
    ax.legend(
        handles=edge_legend_handles(key is not None and not drop_off),
        title="edges",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=7,
        title_fontsize=8,
    )
    if key is not None:
        ax.text(
            0.0,
            -0.02,
            f"key paths: the {len(key)} strongest of {len(graph['edges'])} edges (embedding reads included) on "
            "paths from the inputs to the logits (a path is as strong as its weakest edge);\n"
            + (f"the other {n_off} edges are not drawn" if drop_off else "other edges grey")
            + ", nodes off these paths faded",
            transform=ax.transAxes,
            fontsize=7,
            va="top",
            color="#444444",
        )
    return ax


def _hex_rgb(h: str) -> tuple[float, float, float]:
    return tuple(int(h[i : i + 2], 16) / 255 for i in (1, 3, 5))
