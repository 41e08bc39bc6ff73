"""The circuit inspector as HTML: node panels (the widget shows them) and the self-contained offline page of
``circuit_to_html`` (graph, a panel per node, activations on the task prompts, a small script to select nodes).

Every token and label goes through ``esc`` (``html.escape``) or, in the page's JSON, through ``json_for_html``,
so a vocabulary word such as ``<script>`` shows as text. Colours: blue positive, red negative.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..circuits.graph import bias_like_nodes, downstream, edge_counts, flow_edges, node_weights, upstream
from ..model.gpt import SparseGPT
from ..tasks import TaskData
from .graph_plot import NEG, POS, esc, graph_svg, rgba
from .inspector import InspectorData


def json_for_html(obj) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' that could close it)."""
    return (
        json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )


# ---------------------------------------------------------------------------------- node panels


def tokens_html(tokens: list[str], values: list[float] | None = None, scale: float = 1.0, at: int | None = None) -> str:
    """Tokens as spans coloured by their values (escaped; the value shows on hover)."""
    out = []
    for j, t in enumerate(tokens):
        style = "padding:0 2px;margin:0 1px;border-radius:2px;"
        title = ""
        if values is not None:
            style += f"background:{rgba(values[j], scale)};"
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
    rows = "".join(
        f"<tr><td>{tokens_html(acts['tokens'][i], o, scale)}</td><td>{tokens_html(acts['tokens'][i], p, scale)}</td></tr>"
        for i, (o, p) in enumerate(vals)
    )
    return (
        f"<p>Activations on {n} prompts (shared scale, max |a| = {scale:.3g}; blue +, red -)</p>"
        f'<table style="border-collapse:collapse"><tr><th>original model</th><th>pruned model</th></tr>{rows}</table>'
    )


def weights_html(weights: dict, top: int = 10) -> str:
    """The largest incoming and outgoing nonzero weights, marking endpoints inside the circuit."""
    parts = []
    for side in ("incoming", "outgoing"):
        ws = weights[side]
        n_kept = sum(w["kept"] for w in ws)
        rows = "".join(
            f"<tr><td>{esc(w['node'])}</td><td>{esc(w['kind'])}</td>"
            f'<td style="color:{POS if w["weight"] >= 0 else NEG}">{w["weight"]:+.4f}</td>'
            f"<td>{'kept' if w['kept'] else ''}</td></tr>"
            for w in ws[:top]
        )
        parts.append(
            f"<div style='display:inline-block;vertical-align:top;margin-right:2em'><b>{side}</b>: "
            f"{len(ws)} nonzero, {n_kept} to kept nodes<table>{rows}</table></div>"
        )
    return "".join(parts)


def head_html(pat: dict, max_prompts: int = 6) -> str:
    """Attention from the answer position, sink column included, original vs pruned, with TV distance."""
    parts = [
        f"<p><b>L{pat['layer']} head {pat['head']}</b>: attention from the answer position, sink "
        f"included. Total-variation distance original vs pruned: TV = {pat['tv_mean']:.3f} (mean over "
        f"{len(pat['tv'])} prompts)</p>"
    ]
    for i in range(min(max_prompts, len(pat["keys"]))):
        keys = pat["keys"][i]
        head = "".join(f"<th style='font-weight:normal'>{esc(k)}</th>" for k in keys)
        o, p = _cells(pat["original"][i], len(keys)), _cells(pat["pruned"][i], len(keys))
        parts.append(
            f"<table style='font-size:11px;margin-bottom:4px'><tr><th></th>{head}</tr>"
            f"<tr><th>original</th>{o}</tr><tr><th>pruned</th>{p}</tr></table>"
            f"<div style='font-size:11px'>TV = {float(pat['tv'][i]):.3f}</div>"
        )
    return "".join(parts)


def _cells(row: torch.Tensor, n: int) -> str:
    return "".join(f"<td style='background:{rgba(v, 1.0)};text-align:center'>{v:.2f}</td>" for v in row[:n].tolist())


def snippets_html(snips: dict) -> str:
    """Top- and bottom-activating corpus snippets (``inspection.CorpusActivations.snippets``), tokens coloured."""
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
    """Where a node sits, how connected it is, whether it is bias-like, and its ablation effect."""
    info = panel["info"] or {}
    if not panel.get("in_circuit"):
        return f"<h3>{esc(panel['label'])}</h3><p>{esc(info.get('kind', 'not in the circuit'))}</p>"
    eff = panel["effect"]
    what = "ablating it from the circuit" if eff["removed"] else "adding it to the circuit"
    head = f", head {info['head']}" if info["head"] is not None else ""
    bias = (
        (
            "<b style='color:#b2182b'>bias-like</b>: no kept inputs, so its value in the pruned model does not "
            "depend on the prompt (up to norm scaling and attention mixing)"
        )
        if panel["bias_like"]
        else "has kept inputs"
    )
    return (
        f"<h3>{esc(panel['label'])}</h3><p>layer {info['layer']}, site {esc(info['site'])}, channel "
        f"{info['channel']}{head}; {panel['n_upstream']} upstream and {panel['n_downstream']} downstream nodes; "
        f"{bias}.<br>Task loss of the circuit {eff['circuit_loss']:.4f}; {what}: {eff['toggled_loss']:.4f} "
        f"(change {eff['delta']:+.4f}).</p>"
    )


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
    """One paragraph about the circuit: nodes, edges by kind (``circuits.graph.edge_counts``), how it was found."""
    m = view.circuit.meta
    c = edge_counts(view.graph)
    n_nodes = len(view.node_labels)
    fields = [f"{esc(k)}: {esc(m[k])}" for k in ("model", "task", "ablation", "frozen_ln", "seed", "loss") if k in m]
    return (
        f"<p><b>{n_nodes} nodes</b>, {c['total']} edges ({c['weights']} weights, {c['qk_pairs']} q-k pairs, "
        f"{c['residual']} residual, {c['unembed']} unembedding), of {view.circuit.total_nodes} model nodes. "
        f"{'; '.join(fields)}. {len(view.data)} prompts.</p>"
    )


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


def export_page(
    view: InspectorData,
    title: str | None = None,
    max_prompts: int = 8,
    top_weights: int = 8,
    max_edges: int | None = 15000,
) -> str:
    """The whole offline HTML page for one circuit (see ``circuit_to_html``)."""
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
        panel = {
            "label": label,
            "info": info,
            "in_circuit": True,
            "effect": effects[label],
            "bias_like": label in bias_like,
            "n_upstream": len(upstream(g, label, view.adj)),
            "n_downstream": len(downstream(g, label, view.adj)),
        }
        w = node_weights(view.model, view.circuit, label, g["answer_tokens"], view.tok)
        panels.append(
            f'<div class="sc-np" id="np-{i}" hidden>{node_header_html(panel)}{weights_html(w, top_weights)}</div>'
        )
        if info["head"] is not None:
            heads[i] = (info["layer"], info["head"])
    for label, info in g["nodes"].items():
        if info["kind"] != "node":
            panels.append(
                f'<div class="sc-np" id="np-{index[label]}" hidden><h3>{esc(label)}</h3>'
                f"<p>{esc(info['kind'])} node (not masked by pruning)</p></div>"
            )
    head_id = lambda layer, head: f"hp-{layer}-{head}"  # noqa: E731
    head_blocks = [
        f'<div class="sc-hp" id="{head_id(*h)}" hidden>{head_html(view.head_patterns(*h), max_prompts)}</div>'
        for h in sorted(set(heads.values()))
    ]
    rows = "".join(f'<tr><td class="o">{tokens_html(t)}</td><td class="p">{tokens_html(t)}</td></tr>' for t in tokens)
    options = "".join(f'<option value="{index[k]}">{esc(k)}</option>' for k in labels)
    data = {
        "flow": [[index[s], index[d]] for s, d in flow_edges(g)],
        "acts": acts,
        "head": {i: head_id(*h) for i, h in heads.items()},
        "first": index[circuit_nodes[0]] if circuit_nodes else None,
    }
    name = title or f"circuit: {view.circuit.meta.get('task', '')} {view.circuit.meta.get('model') or ''}".strip()
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(name)}</title><style>{_CSS}</style></head>'
        f"<body><h2>{esc(name)}</h2>{summary_html(view)}"
        f"<p>Click a node (or pick it) to see its panel and highlight what feeds it and what it feeds. Edge "
        f"width: |weight| within its kind; blue positive, red negative; dashed grey: q-k pairs.</p>"
        f'<div id="sc-graph">{graph_svg(g, view.positions, max_edges=max_edges)}</div>'
        f'<p>Node: <select id="sc-pick">{options}</select></p>{"".join(panels)}{"".join(head_blocks)}'
        f'<p>Activations on the task prompts (shared scale, max |a| = <span id="sc-scale">-</span>; blue +, red -)</p>'
        f'<table id="sc-acts"><tr><th>original model</th><th>pruned model</th></tr>{rows}</table>'
        f'<script type="application/json" id="sc-data">{json_for_html(data)}</script>'
        f"<script>{_JS}</script></body></html>"
    )


def circuit_to_html(
    model: SparseGPT,
    tok,
    circuit,
    path: str | Path,
    data: TaskData | None = None,
    *,
    split: str = "test",
    n_prompts: int = 8,
    ablation: dict | str | None = "auto",
    means: dict | None = None,
    title: str | None = None,
    max_edges: int | None = 15000,
) -> Path:
    """Write one self-contained, offline HTML file: the circuit's graph (inline SVG, click a node) and a
    panel per node (activations in the original and pruned model as coloured tokens, weights, ablation
    effect, bias-like flag, attention patterns of its head). ``data`` defaults to ``n_prompts`` prompts
    of the circuit's task on ``split``; beyond ``max_edges`` only the strongest edges are drawn."""
    if data is None:
        data = circuit.task().data(split, tok, n_prompts)
    view = InspectorData.build(model, tok, circuit, data, ablation=ablation, means=means)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export_page(view, title=title, max_edges=max_edges), encoding="utf-8")
    return path
