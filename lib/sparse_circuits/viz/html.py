"""The circuit inspector as HTML: node panels (the widget shows them), the comparison of two circuits, and the
self-contained offline page of ``circuit_to_html`` (graph with zoom and pan, a panel per node, activations on the
task prompts, a small script to select nodes).

Every token and label goes through ``esc`` (``html.escape``) or, in the page's JSON, through ``json_for_html``,
so a vocabulary word such as ``<script>`` shows as text. Numbers show 3 significant digits (``num``). Colours:
blue positive, red negative. The page's scripts are the package's ``static/zoom_pan.js`` and ``static/page.js``,
inlined: the page loads nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..circuits.graph import bias_like_nodes, downstream, edge_counts, edge_summary, flow_edges, node_weights, upstream
from ..model.gpt import SparseGPT
from ..tasks import TaskData
from .graph_layout import SCOPES
from .graph_plot import NEG, POS, esc, graph_svg, rgba
from .inspector import InspectorData

STATIC = Path(__file__).with_name("static")
# Node labels are drawn on the page's graph up to this many nodes (beyond, they overlap).
LABEL_LIMIT = 60


def num(x: float, sign: bool = False) -> str:
    """A number for display: 3 significant digits, fixed point from 0.001 to 99900 (else 1.23e-05), a leading
    ``+`` on non-negative numbers with ``sign``."""
    x = float(f"{float(x):.3g}")  # round first, so 9.996 shows as 10.0
    a = abs(x)
    if not math.isfinite(x) or x == 0 or 1e-3 <= a < 1e5:
        text = f"{x:.{max(0, 2 - math.floor(math.log10(a)))}f}" if math.isfinite(x) and x != 0 else f"{x:g}"
    else:
        text = f"{x:.2e}"
    return ("+" if sign and x >= 0 else "") + text


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
            title = f' title="{num(values[j])}"'
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
        f"<p>Activations on {n} prompts (shared scale, max |a| = {num(scale)}; blue +, red -)</p>"
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
            f'<td style="color:{POS if w["weight"] >= 0 else NEG}">{num(w["weight"], sign=True)}</td>'
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
        f"included. Total-variation distance original vs pruned: TV = {num(pat['tv_mean'])} (mean over "
        f"{len(pat['tv'])} prompts)</p>"
    ]
    for i in range(min(max_prompts, len(pat["keys"]))):
        keys = pat["keys"][i]
        head = "".join(f"<th style='font-weight:normal'>{esc(k)}</th>" for k in keys)
        o, p = _cells(pat["original"][i], len(keys)), _cells(pat["pruned"][i], len(keys))
        parts.append(
            f"<table style='font-size:11px;margin-bottom:4px'><tr><th></th>{head}</tr>"
            f"<tr><th>original</th>{o}</tr><tr><th>pruned</th>{p}</tr></table>"
            f"<div style='font-size:11px'>TV = {num(pat['tv'][i])}</div>"
        )
    return "".join(parts)


def _cells(row: torch.Tensor, n: int) -> str:
    return "".join(f"<td style='background:{rgba(v, 1.0)};text-align:center'>{num(v)}</td>" for v in row[:n].tolist())


def snippets_html(snips: dict) -> str:
    """Top- and bottom-activating corpus snippets (``inspection.CorpusActivations.snippets``), tokens coloured."""
    parts = []
    for name in ("top", "bottom"):
        items = snips.get(name, [])
        scale = max([abs(v) for s in items for v in s["acts"]] or [0.0])
        lis = "".join(
            f"<li>{num(s['value'], sign=True)}: {tokens_html(s['tokens'], s['acts'], scale, s['at'])}</li>"
            for s in items
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
        f"{bias}.<br>Loss on the shown prompts: circuit {num(eff['circuit_loss'])}; {what}: "
        f"{num(eff['toggled_loss'])} (change {num(eff['delta'], sign=True)}).</p>"
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
    """One paragraph about the circuit: nodes, edges (``circuits.graph.edge_summary``), how it was found, and
    both losses: on the pruning set (recorded by pruning) and on the prompts shown here."""
    m = view.circuit.meta
    n_nodes = len(view.node_labels)
    fields = [f"{esc(k)}: {esc(m[k])}" for k in ("model", "task", "ablation", "frozen_ln", "seed") if k in m]
    answers = f"the {len(view.graph['answer_tokens'])} answer logits"
    losses = [f"loss on the pruning set {num(m['loss'])}"] if "loss" in m else []
    if view.node_labels:  # the circuit's loss comes with any node's ablation effect (cached)
        shown = view.effects(view.node_labels[:1])[view.node_labels[0]]["circuit_loss"]
        losses.append(f"loss on the {len(view.data)} shown prompts {num(shown)}")
    return (
        f"<p><b>{n_nodes} nodes</b>, {esc(edge_summary(edge_counts(view.graph), answers))}, of "
        f"{view.circuit.total_nodes} model nodes. {'; '.join(fields)}. {len(view.data)} prompts. "
        f"Task loss ({esc(view.loss)}) of the circuit: {'; '.join(losses) or 'no nodes'}.</p>"
    )


def compare_html(result: dict, names: tuple[str, str] = ("A", "B"), top: int = 40) -> str:
    """The numbers of ``analysis.inspection.compare_graphs`` as a table, and the nodes only one circuit keeps."""
    a, b = (esc(n) for n in names)
    rows = [
        ("circuit nodes", len(result["nodes_a"]), len(result["nodes_b"])),
        ("nodes only in this one", len(result["nodes_only_a"]), len(result["nodes_only_b"])),
        ("edges (between nodes)", result["n_edges_a"], result["n_edges_b"]),
        ("edges only in this one", len(result["edges_only_a"]), len(result["edges_only_b"])),
    ]
    body = "".join(f"<tr><td>{what}</td><td>{x}</td><td>{y}</td></tr>" for what, x, y in rows)
    only = "".join(
        f"<p><b>only in {name}</b>: {esc(', '.join(result[key][:top]))}{' ...' if len(result[key]) > top else ''}</p>"
        for name, key in ((a, "nodes_only_a"), (b, "nodes_only_b"))
    )
    return (
        f"<table><tr><th></th><th>{a}</th><th>{b}</th></tr>{body}</table>"
        f"<p>{len(result['nodes_both'])} nodes in both; Jaccard of the node sets {num(result['jaccard'])}, of the "
        f"edge sets {num(result['edge_jaccard'])}.</p>{only}"
    )


# ------------------------------------------------------------------------------------ HTML page

# The graph fills most of the window beside the panels (stacked on narrow windows); the graph's box can be resized.
_CSS = """body{font-family:sans-serif;font-size:13px;margin:.5em 1em}
#sc-main{display:flex;gap:1em;align-items:flex-start}#sc-left{flex:3 1 0;min-width:0}
#sc-right{flex:2 1 0;min-width:0;max-height:95vh;overflow:auto}
#sc-graph{border:1px solid #ddd;height:75vh;resize:vertical;overflow:hidden}
#sc-graph svg{width:100%;height:100%;display:block;touch-action:none;user-select:none}
@media (max-width:900px){#sc-main{display:block}#sc-right{max-height:none}}
table{border-collapse:collapse}td,th{padding:1px 4px;vertical-align:top}#sc-acts td{border-bottom:1px solid #eee}
#sc-acts span{padding:0 2px;margin:0 1px;border-radius:2px}"""


def page_script() -> str:
    """The page's inline script: zoom and pan, then selection, scope filter and labels."""
    return (STATIC / "zoom_pan.js").read_text() + (STATIC / "page.js").read_text()


def _sig(values: torch.Tensor) -> list[float]:
    return [float(f"{v:.3g}") for v in values.tolist()]


def export_page(
    view: InspectorData,
    title: str | None = None,
    max_prompts: int = 8,
    top_weights: int = 8,
    max_edges: int | None = 15000,
    initial_node: str | None = None,
) -> str:
    """The whole offline HTML page for one circuit (see ``circuit_to_html``); it opens on ``initial_node``
    (default: the first circuit node)."""
    g = view.graph
    labels = list(g["nodes"])
    index = {k: i for i, k in enumerate(labels)}
    circuit_nodes = view.node_labels
    if initial_node is not None and initial_node not in index:
        raise ValueError(f"initial_node {initial_node!r} is not a node of the circuit's graph")
    first = initial_node or (circuit_nodes[0] if circuit_nodes else None)
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
    scopes = "".join(f'<option value="{v}">{t}</option>' for v, t in SCOPES.items())
    data = {
        "flow": [[index[s], index[d]] for s, d in flow_edges(g)],
        "acts": acts,
        "head": {i: head_id(*h) for i, h in heads.items()},
        "first": index[first] if first is not None else None,
        "labels": labels,
        "label_limit": LABEL_LIMIT,
    }
    name = title or f"circuit: {view.circuit.meta.get('task', '')} {view.circuit.meta.get('model') or ''}".strip()
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><title>{esc(name)}</title><style>{_CSS}</style></head>'
        f"<body><h2>{esc(name)}</h2>{summary_html(view)}"
        f"<p>Click a node (or pick it) to see its panel and highlight what feeds it and what it feeds; wheel to "
        f"zoom, drag to pan. Edge width: |weight| within its kind; blue positive, red negative; dashed grey: q-k "
        f"pairs. Node labels are drawn on graphs of at most {LABEL_LIMIT} nodes (else hover a node).</p>"
        f'<div id="sc-main"><div id="sc-left"><p>Node: <select id="sc-pick">{options}</select> Show: '
        f'<select id="sc-scope">{scopes}</select> <button id="sc-reset" type="button">reset view</button></p>'
        f'<div id="sc-graph">{graph_svg(g, view.positions, max_edges=max_edges)}</div></div>'
        f'<div id="sc-right">{"".join(panels)}{"".join(head_blocks)}'
        f'<p>Activations on the task prompts (shared scale, max |a| = <span id="sc-scale">-</span>; blue +, red -)'
        f'</p><table id="sc-acts"><tr><th>original model</th><th>pruned model</th></tr>{rows}</table></div></div>'
        f'<script type="application/json" id="sc-data">{json_for_html(data)}</script>'
        f"<script>{page_script()}</script></body></html>"
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
    initial_node: str | None = None,
) -> Path:
    """Write one self-contained, offline HTML file: the circuit's graph (inline SVG, click a node) and a
    panel per node (activations in the original and pruned model as coloured tokens, weights, ablation
    effect, bias-like flag, attention patterns of its head). ``data`` defaults to ``n_prompts`` prompts
    of the circuit's task on ``split``; beyond ``max_edges`` only the strongest edges are drawn. The page opens
    on ``initial_node`` (a label; default the first circuit node), e.g. the node a walkthrough is about."""
    if data is None:
        data = circuit.task().data(split, tok, n_prompts)
    view = InspectorData.build(model, tok, circuit, data, ablation=ablation, means=means)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export_page(view, title=title, max_edges=max_edges, initial_node=initial_node), encoding="utf-8")
    return path
