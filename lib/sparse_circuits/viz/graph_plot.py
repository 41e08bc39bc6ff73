"""Drawing a circuit's layered graph: inline SVG for the HTML page and the widget, matplotlib for papers.

Node positions come from ``graph_layout``; edges are those of ``circuits.graph.circuit_graph``. Colours: blue
positive, red negative; edge width grows with |weight| relative to the largest edge of its kind (W_in and
residual weights live on different scales). Every label goes through ``esc`` (``html.escape``), so a
vocabulary word such as ``<script>`` shows as text.
"""

from __future__ import annotations

import html

import torch

from ..circuits.graph import adjacency, downstream, edge_counts, upstream
from .graph_layout import layout, row_names

POS, NEG, QK = "#2166ac", "#b2182b", "#888888"
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
    width = min(max_width, max(700, 9 * max(per_row.values(), default=1))) + left
    height = 2 * margin + (n_rows - 1) * row_height
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
    shown = drawn_edges(graph, max_edges)
    if len(shown) < len(graph["edges"]):
        parts.append(
            f'<text x="4" y="12" fill="#b2182b">drawing the {len(shown)} strongest of '
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


def plot_circuit_graph(graph: dict, ax=None, highlight: str | None = None, labels: bool | None = None):
    """The layered graph with matplotlib (for papers and papermill-run notebooks): edge width by |weight|,
    colour by sign, q-k pairs dashed grey; with ``highlight``, other nodes and edges fade. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    pos = layout(graph)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * len(row_names(graph["n_layer"]))))
    sel, up, down = _lit(graph, highlight)
    segs, widths, colours, styles = [], [], [], []
    for e, (w, colour) in zip(graph["edges"], _edge_style(graph)):
        segs.append([pos[e.src], pos[e.dst]])
        widths.append(w * 0.6)
        alpha = 0.35 if sel is None else (0.9 if _on_path(e.src, e.dst, sel, up, down) else 0.04)
        colours.append((*_hex_rgb(colour), alpha))
        styles.append("--" if e.kind == "qk" else "-")
    if segs:
        ax.add_collection(LineCollection(segs, linewidths=widths, colors=colours, linestyles=styles, zorder=1))
    names = list(graph["nodes"])
    if names:
        xy = torch.tensor([pos[n] for n in names])
        alpha = [1.0 if sel is None or n in sel or n in up or n in down else 0.15 for n in names]
        fc = [(*_hex_rgb(SITE_COLOURS[graph["nodes"][n]["site"]]), a) for n, a in zip(names, alpha)]
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=[60 if sel and n in sel else 14 for n in names],
            c=fc,
            zorder=2,
            edgecolors=["black" if sel and n in sel else "none" for n in names],
        )
        if labels if labels is not None else len(names) <= 40:
            for n, (x, y) in zip(names, xy.tolist()):
                ax.annotate(n, (x, y), fontsize=6, xytext=(0, 4), textcoords="offset points", ha="center")
    rows = row_names(graph["n_layer"])
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    c = edge_counts(graph)
    n_nodes = sum(v["kind"] == "node" for v in graph["nodes"].values())
    ax.set_title(f"{n_nodes} nodes, {c['total']} edges" + (f"; selected {highlight}" if sel else ""), fontsize=9)
    return ax


def _hex_rgb(h: str) -> tuple[float, float, float]:
    return tuple(int(h[i : i + 2], 16) / 255 for i in (1, 3, 5))
