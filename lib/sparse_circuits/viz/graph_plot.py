"""Rendering a circuit for people: the layered graph as SVG or matplotlib, node panels as HTML, and the
self-contained HTML page of ``inspector.circuit_to_html``.

Every token and label goes through ``esc`` (``html.escape``) or, in the page's JSON, through ``json_for_html``,
so a vocabulary word such as ``<script>`` shows as text. Colours: blue positive, red negative; edge width
grows with |weight| relative to the largest edge of its kind (W_in and residual weights live on different
scales).
"""

from __future__ import annotations

import html
import json

import torch

from .inspector import (
    InspectorData,
    adjacency,
    bias_like_nodes,
    downstream,
    edge_counts,
    flow_edges,
    layout,
    node_weights,
    row_names,
    upstream,
)

POS, NEG, QK = "#2166ac", "#b2182b", "#888888"
SITE_COLOURS = {"embed": "#555555", "attn_in": "#8c6bb1", "q": "#e6ab02", "k": "#d95f02", "v": "#1b9e77",
                "attn_out": "#7570b3", "mlp_in": "#66a61e", "mlp_neuron": "#e7298a", "mlp_out": "#a6761d",
                "logits": "#000000"}  # fmt: skip


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def json_for_html(obj) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' that could close it)."""
    return (
        json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )


def _rgba(v: float, scale: float) -> str:
    a = min(1.0, abs(v) / scale) if scale > 0 else 0.0
    return f"rgba(33,102,172,{a:.2f})" if v >= 0 else f"rgba(178,24,43,{a:.2f})"


def _edge_style(graph: dict) -> list[tuple[float, str]]:
    """(width, colour) per edge: width by |w| over the largest |w| of the same kind, colour by sign."""
    top: dict[str, float] = {}
    for e in graph["edges"]:
        top[e.kind] = max(top.get(e.kind, 0.0), abs(e.weight))
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
    top: dict[str, float] = {}
    for e in graph["edges"]:
        top[e.kind] = max(top.get(e.kind, 0.0), abs(e.weight))
    rel = torch.tensor([abs(e.weight) / top[e.kind] for e in graph["edges"]])
    return sorted(rel.topk(max_edges).indices.tolist())


def graph_svg(graph: dict, positions: dict | None = None, highlight: str | None = None, adj=None,
              row_height: int = 34, max_width: int = 6000, max_edges: int | None = 15000) -> str:  # fmt: skip
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
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">']  # fmt: skip
    for r, name in enumerate(row_names(graph["n_layer"])):
        y = height - margin - r * row_height
        parts.append(f'<text x="4" y="{y + 3:.0f}" fill="#444">{esc(name)}</text>')
    styles = _edge_style(graph)
    shown = drawn_edges(graph, max_edges)
    if len(shown) < len(graph["edges"]):
        parts.append(f'<text x="4" y="12" fill="#b2182b">drawing the {len(shown)} strongest of '
                     f"{len(graph['edges'])} edges</text>")  # fmt: skip
    parts.append('<g stroke-opacity="0.35">')  # one default opacity; highlighted lines override it
    for k in shown:
        e, (w, colour) = graph["edges"][k], styles[k]
        (x1, y1), (x2, y2) = xy[e.src], xy[e.dst]
        op = "" if sel is None else f' stroke-opacity="{0.9 if _on_path(e.src, e.dst, sel, up, down) else 0.05}"'
        dash = ' stroke-dasharray="2,2"' if e.kind == "qk" else ""
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
                     f'stroke-width="{w:.1f}"{op}{dash} data-s="{index[e.src]}" data-d="{index[e.dst]}"/>')  # fmt: skip
    parts.append("</g>")
    for label, info in graph["nodes"].items():
        x, y = xy[label]
        on = sel is None or label in sel or label in up or label in down
        chosen = sel is not None and label in sel
        extra = ' stroke="#000" stroke-width="2"' if chosen else ""
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{7 if chosen else 4}" fill="{SITE_COLOURS[info["site"]]}" '
                     f'fill-opacity="{1 if on else 0.15}"{extra} data-i="{index[label]}" style="cursor:pointer">'
                     f"<title>{esc(label)}</title></circle>")  # fmt: skip
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
        ax.scatter(xy[:, 0], xy[:, 1], s=[60 if sel and n in sel else 14 for n in names], c=fc, zorder=2,
                   edgecolors=["black" if sel and n in sel else "none" for n in names])  # fmt: skip
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


# ---------------------------------------------------------------------------------- node panels


def tokens_html(tokens: list[str], values: list[float] | None = None, scale: float = 1.0, at: int | None = None) -> str:
    """Tokens as spans coloured by their values (escaped; the value shows on hover)."""
    out = []
    for j, t in enumerate(tokens):
        style = "padding:0 2px;margin:0 1px;border-radius:2px;"
        title = ""
        if values is not None:
            style += f"background:{_rgba(values[j], scale)};"
            title = f' title="{values[j]:.4g}"'
        if at == j:
            style += "font-weight:bold;text-decoration:underline;"
        out.append(f'<span style="{style}"{title}>{esc(t)}</span>')
    return "".join(out)


def activations_html(acts: dict, max_prompts: int = 12) -> str:
    """Per-token activations of one node, original model beside pruned model, on one shared colour scale."""
    n = min(max_prompts, len(acts["tokens"]))
    lens = [len(t) for t in acts["tokens"][:n]]
    vals = [(acts["original"][i, :k].tolist(), acts["pruned"][i, :k].tolist()) for i, k in zip(range(n), lens)]
    scale = max([abs(v) for o, p in vals for v in o + p] or [0.0])
    rows = "".join(f"<tr><td>{tokens_html(acts['tokens'][i], o, scale)}</td><td>{tokens_html(acts['tokens'][i], p, scale)}</td></tr>"
                   for i, (o, p) in enumerate(vals))  # fmt: skip
    return (f"<p>Activations on {n} prompts (shared scale, max |a| = {scale:.3g}; blue +, red -)</p>"
            f'<table style="border-collapse:collapse"><tr><th>original model</th><th>pruned model</th></tr>{rows}</table>')  # fmt: skip


def weights_html(weights: dict, top: int = 10) -> str:
    """The largest incoming and outgoing nonzero weights, marking endpoints inside the circuit."""
    parts = []
    for side in ("incoming", "outgoing"):
        ws = weights[side]
        n_kept = sum(w["kept"] for w in ws)
        rows = "".join(f'<tr><td>{esc(w["node"])}</td><td>{esc(w["kind"])}</td>'
                       f'<td style="color:{POS if w["weight"] >= 0 else NEG}">{w["weight"]:+.4f}</td>'
                       f'<td>{"kept" if w["kept"] else ""}</td></tr>' for w in ws[:top])  # fmt: skip
        parts.append(f"<div style='display:inline-block;vertical-align:top;margin-right:2em'><b>{side}</b>: "
                     f"{len(ws)} nonzero, {n_kept} to kept nodes<table>{rows}</table></div>")  # fmt: skip
    return "".join(parts)


def head_html(pat: dict, max_prompts: int = 6) -> str:
    """Attention from the answer position, sink column included, original vs pruned, with TV distance."""
    parts = [f"<p><b>L{pat['layer']} head {pat['head']}</b>: attention from the answer position, sink "
             f"included. Total-variation distance original vs pruned: TV = {pat['tv_mean']:.3f} (mean over "
             f"{len(pat['tv'])} prompts)</p>"]  # fmt: skip
    for i in range(min(max_prompts, len(pat["keys"]))):
        keys = pat["keys"][i]
        head = "".join(f"<th style='font-weight:normal'>{esc(k)}</th>" for k in keys)
        o, p = _cells(pat["original"][i], len(keys)), _cells(pat["pruned"][i], len(keys))
        parts.append(f"<table style='font-size:11px;margin-bottom:4px'><tr><th></th>{head}</tr>"
                     f"<tr><th>original</th>{o}</tr><tr><th>pruned</th>{p}</tr></table>"
                     f"<div style='font-size:11px'>TV = {float(pat['tv'][i]):.3f}</div>")  # fmt: skip
    return "".join(parts)


def _cells(row: torch.Tensor, n: int) -> str:
    return "".join(f"<td style='background:{_rgba(v, 1.0)};text-align:center'>{v:.2f}</td>" for v in row[:n].tolist())


def snippets_html(snips: dict) -> str:
    parts = []
    for name in ("top", "bottom"):
        items = snips.get(name, [])
        scale = max([abs(v) for s in items for v in s["acts"]] or [0.0])
        lis = "".join(
            f"<li>{s['value']:+.3f}: {tokens_html(s['tokens'], s['acts'], scale, s['at'])}</li>" for s in items
        )
        parts.append(f"<b>{name}-activating corpus snippets</b><ol>{lis}</ol>")
    return "".join(parts)


def node_header_html(panel: dict) -> str:
    info = panel["info"] or {}
    if not panel.get("in_circuit"):
        return f"<h3>{esc(panel['label'])}</h3><p>{esc(info.get('kind', 'not in the circuit'))}</p>"
    eff = panel["effect"]
    what = "ablating it from the circuit" if eff["removed"] else "adding it to the circuit"
    head = f", head {info['head']}" if info["head"] is not None else ""
    bias = ("<b style='color:#b2182b'>bias-like</b>: no kept inputs, so its value in the pruned model does not "
            "depend on the prompt (up to norm scaling and attention mixing)") if panel["bias_like"] else "has kept inputs"  # fmt: skip
    return (f"<h3>{esc(panel['label'])}</h3><p>layer {info['layer']}, site {esc(info['site'])}, channel "
            f"{info['channel']}{head}; {panel['n_upstream']} upstream and {panel['n_downstream']} downstream nodes; "
            f"{bias}.<br>Task loss of the circuit {eff['circuit_loss']:.4f}; {what}: {eff['toggled_loss']:.4f} "
            f"(change {eff['delta']:+.4f}).</p>")  # fmt: skip


def node_panel_html(panel: dict) -> str:
    """Everything about one node (the widget's node panel)."""
    parts = [node_header_html(panel)]
    if panel.get("in_circuit"):
        parts.append(activations_html(panel["activations"]))
        if "head" in panel:
            parts.append(head_html(panel["head"]))
        parts.append(weights_html(panel["weights"]))
        if "snippets" in panel:
            parts.append(snippets_html(panel["snippets"]))
    return "".join(parts)


def summary_html(view: InspectorData) -> str:
    m = view.circuit.meta
    c = edge_counts(view.graph)
    n_nodes = len(view.node_labels)
    fields = [f"{esc(k)}: {esc(m[k])}" for k in ("model", "task", "ablation", "frozen_ln", "seed", "loss") if k in m]
    return (f"<p><b>{n_nodes} nodes</b>, {c['total']} edges ({c['weights']} weights, {c['qk_pairs']} q-k pairs, "
            f"{c['residual']} residual, {c['unembed']} unembedding), of {view.circuit.total_nodes} model nodes. "
            f"{'; '.join(fields)}. {len(view.data)} prompts.</p>")  # fmt: skip


# ------------------------------------------------------------------------------------ HTML page

_CSS = """body{font-family:sans-serif;font-size:13px;margin:1em}#sc-graph{overflow-x:auto;border:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:1px 4px;vertical-align:top}#sc-acts td{border-bottom:1px solid #eee}
#sc-acts span{padding:0 2px;margin:0 1px;border-radius:2px}"""

# Plain script, no libraries: selecting a node shows its panel, colours the prompt tokens by its
# activations and highlights its upstream and downstream closure.
_JS = """(function(){
const D=JSON.parse(document.getElementById('sc-data').textContent);
const circles=Array.from(document.querySelectorAll('#sc-graph circle'));
const lines=Array.from(document.querySelectorAll('#sc-graph line'));
const succ=circles.map(()=>[]),pred=circles.map(()=>[]);
D.flow.forEach(([s,d])=>{succ[s].push(d);pred[d].push(s);});
function closure(i,adj){const seen=new Set(),todo=[i];while(todo.length){for(const j of adj[todo.pop()])
 if(!seen.has(j)){seen.add(j);todo.push(j);}}seen.delete(i);return seen;}
const orig=Array.from(document.querySelectorAll('#sc-acts td.o span'));
const prun=Array.from(document.querySelectorAll('#sc-acts td.p span'));
function colour(v,m){const a=m>0?Math.min(1,Math.abs(v)/m):0;
 return v>=0?'rgba(33,102,172,'+a.toFixed(2)+')':'rgba(178,24,43,'+a.toFixed(2)+')';}
function paint(spans,vals,m){spans.forEach((s,k)=>{s.style.background=vals?colour(vals[k],m):'';
 s.title=vals?String(vals[k]):'';});}
function select(i){
 const up=closure(i,pred),down=closure(i,succ),a=new Set([i,...up]),b=new Set([i,...down]);
 circles.forEach((c,k)=>{const on=a.has(k)||b.has(k);c.setAttribute('fill-opacity',on?1:0.15);
  c.setAttribute('r',k===i?7:4);c.setAttribute('stroke',k===i?'#000':'none');c.setAttribute('stroke-width',2);});
 lines.forEach(l=>{const s=+l.dataset.s,d=+l.dataset.d;
  l.setAttribute('stroke-opacity',(a.has(s)&&a.has(d))||(b.has(s)&&b.has(d))?0.9:0.05);});
 document.querySelectorAll('.sc-np,.sc-hp').forEach(e=>{e.hidden=true;});
 const np=document.getElementById('np-'+i);if(np)np.hidden=false;
 const h=D.head[i];if(h)document.getElementById(h).hidden=false;
 const v=D.acts[i];let m=0;if(v)v[0].concat(v[1]).forEach(x=>{m=Math.max(m,Math.abs(x));});
 paint(orig,v&&v[0],m);paint(prun,v&&v[1],m);
 document.getElementById('sc-scale').textContent=v?m.toPrecision(3):'-';
 document.getElementById('sc-pick').value=String(i);}
circles.forEach((c,k)=>c.addEventListener('click',()=>select(k)));
document.getElementById('sc-pick').addEventListener('change',e=>select(+e.target.value));
if(D.first!==null)select(D.first);})();"""


def _sig(values: torch.Tensor) -> list[float]:
    return [float(f"{v:.3g}") for v in values.tolist()]


def export_page(view: InspectorData, title: str | None = None, max_prompts: int = 8, top_weights: int = 8,
                max_edges: int | None = 15000) -> str:  # fmt: skip
    """The whole offline HTML page for one circuit (see ``inspector.circuit_to_html``)."""
    g = view.graph
    labels = list(g["nodes"])
    index = {k: i for i, k in enumerate(labels)}
    circuit_nodes = view.node_labels
    tokens = view.tokens[:max_prompts]
    lens = [len(t) for t in tokens]
    effects = view.effects(circuit_nodes)  # batched: several masks per forward pass
    bias_like = bias_like_nodes(g)
    acts, heads, panels = {}, {}, []
    for label in circuit_nodes:
        i, info = index[label], g["nodes"][label]
        a = view.activations(label)
        acts[i] = [_sig(torch.cat([a[k][p, :n] for p, n in enumerate(lens)])) for k in ("original", "pruned")]
        panel = {"label": label, "info": info, "in_circuit": True, "effect": effects[label],
                 "bias_like": label in bias_like, "n_upstream": len(upstream(g, label, view.adj)),
                 "n_downstream": len(downstream(g, label, view.adj))}  # fmt: skip
        w = node_weights(view.model, view.circuit, label, g["answer_tokens"], view.tok)
        panels.append(
            f'<div class="sc-np" id="np-{i}" hidden>{node_header_html(panel)}{weights_html(w, top_weights)}</div>'
        )
        if info["head"] is not None:
            heads[i] = f"hp-{info['layer']}-{info['head']}"
    for label, info in g["nodes"].items():
        if info["kind"] != "node":
            panels.append(f'<div class="sc-np" id="np-{index[label]}" hidden><h3>{esc(label)}</h3>'
                          f"<p>{esc(info['kind'])} node (not masked by pruning)</p></div>")  # fmt: skip
    head_blocks = []
    for hid in sorted(set(heads.values())):
        _, layer, head = hid.split("-")
        pat = view.head_patterns(int(layer), int(head))
        head_blocks.append(f'<div class="sc-hp" id="{hid}" hidden>{head_html(pat, max_prompts)}</div>')
    rows = "".join(f'<tr><td class="o">{tokens_html(t)}</td><td class="p">{tokens_html(t)}</td></tr>' for t in tokens)
    options = "".join(f'<option value="{index[k]}">{esc(k)}</option>' for k in labels)
    data = {"flow": [[index[s], index[d]] for s, d in flow_edges(g)], "acts": acts, "head": heads,
            "first": index[circuit_nodes[0]] if circuit_nodes else None}  # fmt: skip
    name = title or f"circuit: {view.circuit.meta.get('task', '')} {view.circuit.meta.get('model') or ''}".strip()
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(name)}</title><style>{_CSS}</style></head>'
            f"<body><h2>{esc(name)}</h2>{summary_html(view)}"
            f"<p>Click a node (or pick it) to see its panel and highlight what feeds it and what it feeds. Edge "
            f"width: |weight| within its kind; blue positive, red negative; dashed grey: q-k pairs.</p>"
            f'<div id="sc-graph">{graph_svg(g, view.positions, max_edges=max_edges)}</div>'
            f'<p>Node: <select id="sc-pick">{options}</select></p>{"".join(panels)}{"".join(head_blocks)}'
            f'<p>Activations on the task prompts (shared scale, max |a| = <span id="sc-scale">-</span>; blue +, red -)</p>'
            f'<table id="sc-acts"><tr><th>original model</th><th>pruned model</th></tr>{rows}</table>'
            f'<script type="application/json" id="sc-data">{json_for_html(data)}</script>'
            f"<script>{_JS}</script></body></html>")  # fmt: skip
