"""Inspecting a circuit node by node: its layered graph, and each node's activations, weights and role.

The plain functions answer one question each (``circuit_graph``, ``activation_table``, ``node_weights``,
``ablation_effect``, ``head_patterns``, ...). ``InspectorData`` computes once per circuit what a view needs
(graph, layout, the original and pruned caches on a prompt set), so that selecting a node is a lookup plus
one small forward pass. The widget (``widgets.CircuitInspector``) and the static HTML export
(``circuit_to_html``, ``sparse-circuits export-html``) both read it.

Node labels are ``NodeLayout`` labels (``L1.v.h3.5``, ``L0.mlp_neuron.17``), plus ``embed.C`` (embedding
channel C of the residual stream) and ``logit.TOKEN`` (answer-token logits).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from ..circuits.masking import NodeLayout, masked, record_norm_scales
from ..data.corpus import CorpusConfig
from ..model.gpt import SparseGPT
from ..tasks import TaskData, answer_logits, per_example_loss

# Rows of the layered view: q, k and v share a row, so a layer is six rows.
SITE_ROW = {"attn_in": 0, "q": 1, "k": 1, "v": 1, "attn_out": 2, "mlp_in": 3, "mlp_neuron": 4, "mlp_out": 5}
ROW_NAMES = ("attn_in", "q/k/v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")
READERS, WRITERS = ("attn_in", "mlp_in"), ("attn_out", "mlp_out")
# Weight matrices between node sites of one layer ([out, in] nn.Linear weights) and their edge kinds.
MAPS = (
    ("attn_in", "q", "W_Q", lambda b: b.attn.W_Q.weight),
    ("attn_in", "k", "W_K", lambda b: b.attn.W_K.weight),
    ("attn_in", "v", "W_V", lambda b: b.attn.W_V.weight),
    ("v", "attn_out", "W_O", lambda b: b.attn.W_O.weight),
    ("mlp_in", "mlp_neuron", "W_in", lambda b: b.mlp.W_in.weight),
    ("mlp_neuron", "mlp_out", "W_out", lambda b: b.mlp.W_out.weight),
)
WEIGHT_KINDS = tuple(m[2] for m in MAPS)
# Edge kinds through which a node's value does not flow (a q-k pair forms a score, neither feeds the other).
NON_FLOW_KINDS = ("qk",)


class Edge(NamedTuple):
    src: str
    dst: str
    weight: float
    kind: str  # W_Q W_K W_V W_O W_in W_out qk residual embed unembed


# ------------------------------------------------------------------------------------------ labels


def node_label(layer: int, site: str, channel: int, d_head: int) -> str:
    """The NodeLayout label of a node, without a linear search over the layout."""
    if site in ("q", "k", "v"):
        return f"L{layer}.{site}.h{channel // d_head}.{channel % d_head}"
    return f"L{layer}.{site}.{channel}"


def parse_label(label: str, model: SparseGPT) -> int:
    """Flat NodeLayout index of a label such as ``L1.v.h3.5`` or ``L0.mlp_out.7``."""
    try:
        parts = label.split(".")
        layer, site = int(parts[0][1:]), parts[1]
        ch = int(parts[2][1:]) * model.cfg.d_head + int(parts[3]) if site in ("q", "k", "v") else int(parts[2])
        return NodeLayout(model).sl(layer, site).start + ch
    except (IndexError, KeyError, ValueError) as e:
        raise ValueError(f"not a model node label: {label!r} (expected e.g. L1.v.h3.5 or L0.mlp_out.7)") from e


def _index(model: SparseGPT, node: str | int) -> int:
    return node if isinstance(node, int) else parse_label(node, model)


def token_str(tok, token_id: int) -> str:
    s = tok.id_to_token(int(token_id)) if tok is not None else None
    return s if s is not None else f"#{int(token_id)}"


def _row(layer: int, site: str) -> int:
    """Forward position of a site (embed is row 0)."""
    return 1 + 6 * layer + SITE_ROW[site]


def _norm(model: SparseGPT, layer: int, reader: str) -> torch.Tensor:
    b = model.blocks[layer]
    return (b.ln1 if reader == "attn_in" else b.ln2).weight.detach().cpu()


def _sites(n_layer: int, names: tuple[str, ...]) -> list[tuple[int, str]]:
    return [(layer, s) for layer in range(n_layer) for s in names]


# ------------------------------------------------------------------------------------------- graph


@torch.no_grad()
def circuit_graph(model: SparseGPT, circuit, answer_tokens: list[int] | None = None, tok=None,
                  include_embed: bool = True) -> dict:  # fmt: skip
    """The layered graph of a circuit, from the actual nonzero weights between its kept nodes.

    Returns ``{"nodes": {label: info}, "edges": [Edge], "n_layer", "d_head", "answer_tokens"}``; nodes are in
    forward order, info has index (flat, -1 for embed/logit), layer (-1 embed, n_layer logits), site,
    channel, head (q/k/v only) and kind ("node", "embed", "logit"). Edge kinds are those of
    ``circuit.count_edges`` (weights W_Q..W_out, qk pairs with weight 1, residual with the reading norm's
    weight, unembed with W_U[token, c] * ln_final.weight[c]) plus "embed" (embedding channel c read by a
    kept reader at c; the embedding is not a node, so these are not counted there).
    """
    nl = NodeLayout(model)
    L, E = model.cfg.n_layer, model.cfg.d_head
    kept = circuit.nodes.bool().cpu()
    if kept.numel() != nl.n_nodes:
        raise ValueError(f"circuit has {kept.numel()} nodes, model has {nl.n_nodes}: wrong model?")
    km = {(s.layer, s.site): kept[s.start : s.stop] for s in nl.slices}  # [width] bool per site
    nodes: dict[str, dict] = {}
    for s in nl.slices:  # labels for kept nodes only
        for c in km[(s.layer, s.site)].nonzero().flatten().tolist():
            head = c // E if s.site in ("q", "k", "v") else None
            nodes[node_label(s.layer, s.site, c, E)] = {"index": s.start + c, "layer": s.layer, "site": s.site,
                                                        "channel": c, "head": head, "kind": "node"}  # fmt: skip
    edges: list[Edge] = []

    def add(src: tuple[int, str], dst: tuple[int, str], cs: list[int], cd: list[int], w: list[float], kind: str):
        edges.extend(Edge(node_label(*src, a, E), node_label(*dst, b, E), v, kind) for a, b, v in zip(cs, cd, w))

    for layer, b in enumerate(model.blocks):
        for src, dst, kind, get in MAPS:
            ci, co = km[(layer, src)].nonzero().flatten(), km[(layer, dst)].nonzero().flatten()
            sub = get(b).detach().cpu()[co][:, ci]
            r, c = sub.nonzero(as_tuple=True)
            add((layer, src), (layer, dst), ci[c].tolist(), co[r].tolist(), sub[r, c].tolist(), kind)
        pair = (km[(layer, "q")] & km[(layer, "k")]).nonzero().flatten().tolist()
        add((layer, "k"), (layer, "q"), pair, pair, [1.0] * len(pair), "qk")
    embed_nz = (model.embed.weight.detach().cpu() != 0).any(0)
    embed_nodes: dict[str, dict] = {}
    for rl, rs in _sites(L, READERS):
        g = _norm(model, rl, rs)
        readable = km[(rl, rs)] & (g != 0)  # a zero norm weight cuts the read
        for wl, ws in _sites(L, WRITERS):
            if _row(wl, ws) < _row(rl, rs):
                c = (km[(wl, ws)] & readable).nonzero().flatten()
                add((wl, ws), (rl, rs), c.tolist(), c.tolist(), g[c].tolist(), "residual")
        if include_embed:
            for c in (embed_nz & readable).nonzero().flatten().tolist():
                embed_nodes.setdefault(f"embed.{c}", {"index": -1, "layer": -1, "site": "embed", "channel": c,
                                                      "head": None, "kind": "embed"})  # fmt: skip
                edges.append(Edge(f"embed.{c}", node_label(rl, rs, c, E), float(g[c]), "embed"))
    answer_tokens = sorted({int(t) for t in answer_tokens or []})
    logit_nodes: dict[str, dict] = {}
    if answer_tokens:
        wu = model.unembed.weight.detach().cpu()[answer_tokens] * model.ln_final.weight.detach().cpu()  # [A, D]
        names = [f"logit.{token_str(tok, t)}" for t in answer_tokens]
        for a, t in enumerate(answer_tokens):
            logit_nodes[names[a]] = {"index": -1, "layer": L, "site": "logits", "channel": t, "head": None,
                                     "kind": "logit"}  # fmt: skip
        for wl, ws in _sites(L, WRITERS):
            ci = km[(wl, ws)].nonzero().flatten()
            sub = wu[:, ci]
            a, c = sub.nonzero(as_tuple=True)
            edges.extend(Edge(node_label(wl, ws, int(ci[j]), E), names[i], v, "unembed")
                         for i, j, v in zip(a.tolist(), c.tolist(), sub[a, c].tolist()))  # fmt: skip
    return {"nodes": {**dict(sorted(embed_nodes.items(), key=lambda kv: kv[1]["channel"])), **nodes, **logit_nodes},
            "edges": edges, "n_layer": L, "d_head": E, "answer_tokens": answer_tokens}  # fmt: skip


def edge_counts(graph: dict) -> dict[str, int]:
    """Edges by the kinds of ``circuit.count_edges`` (embedding edges are not counted there)."""
    kinds = [e.kind for e in graph["edges"]]
    e = {"weights": sum(k in WEIGHT_KINDS for k in kinds), "qk_pairs": kinds.count("qk"),
         "residual": kinds.count("residual"), "unembed": kinds.count("unembed")}  # fmt: skip
    e["total"] = sum(e.values())
    return e


def row_of(info: dict, n_layer: int) -> int:
    """Row of a node in the layered view: 0 embed, 1 + 6 * layer + site row, last the logits."""
    if info["kind"] == "embed":
        return 0
    if info["kind"] == "logit":
        return 1 + 6 * n_layer
    return _row(info["layer"], info["site"])


def row_names(n_layer: int) -> list[str]:
    return ["embed", *(f"L{layer} {name}" for layer in range(n_layer) for name in ROW_NAMES), "logits"]


def layout(graph: dict) -> dict[str, tuple[float, float]]:
    """label -> (x, y): y the forward row (embed 0 ... logits), x in (0, 1) spread evenly within a row.

    In the q/k/v row nodes are grouped by head, then q, k, v, then channel, so a head's nodes sit together.
    """
    order = {"q": 0, "k": 1, "v": 2}
    rows: dict[int, list[tuple]] = {}
    for label, info in graph["nodes"].items():
        key = (info["head"] if info["head"] is not None else -1, order.get(info["site"], 0), info["channel"])
        rows.setdefault(row_of(info, graph["n_layer"]), []).append((key, label))
    pos = {}
    for y, members in rows.items():
        members.sort()
        for i, (_, label) in enumerate(members):
            pos[label] = ((i + 0.5) / len(members), float(y))
    return pos


def flow_edges(graph: dict) -> list[tuple[str, str]]:
    """Edges along which values flow: the graph's edges except q-k pairs, plus head links (a head's kept q
    and k nodes shape its pattern, so they reach every attn_out node its kept v nodes write to)."""
    out = [(e.src, e.dst) for e in graph["edges"] if e.kind not in NON_FLOW_KINDS]
    nodes = graph["nodes"]
    targets: dict[tuple[int, int], set[str]] = {}
    for e in graph["edges"]:
        if e.kind == "W_O":
            info = nodes[e.src]
            targets.setdefault((info["layer"], info["head"]), set()).add(e.dst)
    for label, info in nodes.items():
        if info["site"] in ("q", "k"):
            out.extend((label, t) for t in sorted(targets.get((info["layer"], info["head"]), ())))
    return out


def adjacency(graph: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(successors, predecessors) along ``flow_edges``."""
    succ: dict[str, list[str]] = {n: [] for n in graph["nodes"]}
    pred: dict[str, list[str]] = {n: [] for n in graph["nodes"]}
    for s, d in flow_edges(graph):
        succ[s].append(d)
        pred[d].append(s)
    return succ, pred


def _closure(adj: dict[str, list[str]], node: str) -> set[str]:
    seen, todo = set(), deque([node])
    while todo:
        for nxt in adj[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(node)
    return seen


def upstream(graph: dict, node: str, adj: tuple | None = None) -> set[str]:
    """Every node with a path to ``node`` (pass ``adj=adjacency(graph)`` to reuse it)."""
    return _closure((adj or adjacency(graph))[1], node)


def downstream(graph: dict, node: str, adj: tuple | None = None) -> set[str]:
    """Every node ``node`` has a path to."""
    return _closure((adj or adjacency(graph))[0], node)


def bias_like_nodes(graph: dict) -> set[str]:
    """Circuit nodes with no kept inputs (see ``is_bias_like``), all at once."""
    fed = {e.dst for e in graph["edges"] if e.kind not in NON_FLOW_KINDS}
    return {k for k, v in graph["nodes"].items() if v["kind"] == "node" and k not in fed}


def is_bias_like(graph: dict, node: str) -> bool:
    """True when a circuit node has no kept inputs: in the pruned model its value is then constant (up to
    the norms' scaling and attention mixing), whatever the prompt. Embedding inputs count as inputs."""
    if graph["nodes"][node]["kind"] != "node":
        return False
    return not any(e.dst == node and e.kind not in NON_FLOW_KINDS for e in graph["edges"])


# ------------------------------------------------------------------------------- running the model


def resolve_ablation(model: SparseGPT, tok, kind: str, data: TaskData, means: dict | None = None,
                     corpus: CorpusConfig | None = None) -> dict[str, torch.Tensor] | None:  # fmt: skip
    """Ablation values for a circuit's recorded ablation kind on these prompts (None means zero)."""
    from ..circuits.ablation import Resampler, check_ablation, node_means

    check_ablation(kind)
    if kind == "zero":
        return None
    if kind == "mean":
        return means if means is not None else node_means(model, NodeLayout(model), tok, corpus)
    return Resampler(model, NodeLayout(model), tok, corpus).values([0], len(data), data.tokens.shape[1], -1)


def _frozen(circuit, frozen_ln: bool | None) -> bool:
    return bool(circuit.meta.get("frozen_ln", False)) if frozen_ln is None else frozen_ln


@torch.no_grad()
def run_pair(model: SparseGPT, circuit, tokens: torch.Tensor, names, ablation=None,
             frozen_ln: bool | None = None) -> tuple[dict, dict]:  # fmt: skip
    """(original cache, pruned cache) of the hooks ``names`` on ``tokens``, on the CPU. The pruned pass is
    ``circuit.run`` (with frozen norms when the circuit was pruned with them); both keep the model's AbsTopK."""
    tokens = tokens.to(next(model.parameters()).device)
    _, orig = model.run_with_cache(tokens, names_filter=names)
    with circuit.run(model, ablation, frozen_ln_tokens=tokens if _frozen(circuit, frozen_ln) else None):
        _, pruned = model.run_with_cache(tokens, names_filter=names)
    return {k: v.cpu() for k, v in orig.items()}, {k: v.cpu() for k, v in pruned.items()}


def _node_values(cache: dict, nl: NodeLayout, index: int) -> torch.Tensor:
    """[B, T] values of one node from a cache of node hooks."""
    layer, site, c = nl.describe(index)
    x = cache[nl.by_key[(layer, site)].hook]
    return x.reshape(x.shape[0], x.shape[1], -1)[..., c].float()


def prompt_tokens(tok, data: TaskData) -> list[list[str]]:
    """Each prompt's token strings up to its answer position."""
    return [[token_str(tok, t) for t in row[: int(last) + 1].tolist()] for row, last in zip(data.tokens, data.last)]


def activation_table(model: SparseGPT, circuit, data: TaskData, node: str | int, ablation=None, tok=None,
                     frozen_ln: bool | None = None) -> dict:  # fmt: skip
    """One node's per-token activations on task prompts in the original and in the pruned model.

    Returns original and pruned [n_prompts, T] (padding after each prompt's ``last`` position), ``last``
    and the token strings (``#id`` without a tokenizer).
    """
    nl = NodeLayout(model)
    index = _index(model, node)
    hook = nl.by_key[nl.describe(index)[:2]].hook
    orig, pruned = run_pair(model, circuit, data.tokens, [hook], ablation, frozen_ln)
    return {"label": nl.label(index), "original": _node_values(orig, nl, index),
            "pruned": _node_values(pruned, nl, index), "last": data.last.cpu(), "tokens": prompt_tokens(tok, data)}  # fmt: skip


@dataclass
class CorpusActivations:
    """Node activations on held-out corpus rows, for top- and bottom-activating snippets."""

    tokens: torch.Tensor  # [R, T]
    acts: dict[str, torch.Tensor]  # node hook -> [R, T, width]

    @classmethod
    @torch.no_grad()
    def compute(cls, model: SparseGPT, tok, n_batches: int = 2, batch_size: int = 16,
                corpus: CorpusConfig | None = None) -> CorpusActivations:  # fmt: skip
        from ..data.batches import BatchStream

        stream = BatchStream(corpus or CorpusConfig(), tok, model.cfg.n_ctx, batch_size, "val")
        names = [s.hook for s in NodeLayout(model).slices]
        device = next(model.parameters()).device
        rows, acts = [], {n: [] for n in names}
        for i in range(n_batches):  # the first batches of the held-out stream: cheap for real datasets too
            x = stream.batch(i)[:, :-1]
            _, cache = model.run_with_cache(x.to(device), names_filter=names)
            rows.append(x)
            for n in names:
                acts[n].append(cache[n].reshape(x.shape[0], x.shape[1], -1).cpu())
        return cls(torch.cat(rows), {n: torch.cat(v) for n, v in acts.items()})

    def snippets(self, model: SparseGPT, tok, node: str | int, n: int = 5, before: int = 10, after: int = 3) -> dict:
        """{"top": [...], "bottom": [...]}: the n highest and lowest activations, each a snippet of tokens
        around it with their activations, ``at`` (its index in the snippet) and ``value``."""
        nl = NodeLayout(model)
        layer, site, c = nl.describe(_index(model, node))
        vals = self.acts[nl.by_key[(layer, site)].hook][..., c].float()  # [R, T]
        T = vals.shape[1]
        flat = vals.flatten()
        out = {}
        for name, sign in (("top", 1.0), ("bottom", -1.0)):
            idx = (sign * flat).topk(min(n, flat.numel())).indices.tolist()
            snips = []
            for i in idx:
                r, p = divmod(i, T)
                lo, hi = max(0, p - before), min(T, p + after + 1)
                snips.append({"tokens": [token_str(tok, t) for t in self.tokens[r, lo:hi].tolist()],
                              "acts": vals[r, lo:hi].tolist(), "at": p - lo, "value": float(vals[r, p])})  # fmt: skip
            out[name] = snips
        return out


def top_activating_snippets(model: SparseGPT, tok, node: str | int, n: int = 5, n_batches: int = 2,
                            batch_size: int = 16, corpus: CorpusConfig | None = None) -> dict:  # fmt: skip
    """Top- and bottom-activating held-out corpus snippets of one node (in the original model)."""
    return CorpusActivations.compute(model, tok, n_batches, batch_size, corpus).snippets(model, tok, node, n)


@torch.no_grad()
def node_weights(model: SparseGPT, circuit, node: str | int, answer_tokens: list[int] | None = None,
                 tok=None) -> dict:  # fmt: skip
    """Every nonzero weight into and out of a node, to kept nodes and to all nodes.

    Returns {"incoming": [...], "outgoing": [...]}, each entry {"node", "weight", "kind", "kept"}, sorted by
    |weight|. Residual entries carry the reading norm's weight at the channel; embed and logit endpoints
    (answer tokens only) count as kept.
    """
    nl = NodeLayout(model)
    E, L = model.cfg.d_head, model.cfg.n_layer
    index = _index(model, node)
    layer, site, c = nl.describe(index)
    kept = circuit.nodes.bool().cpu()
    inc: list[dict] = []
    out: list[dict] = []

    def add(lst: list, other: tuple[int, str], chans: torch.Tensor, vals: torch.Tensor, kind: str) -> None:
        start = nl.sl(*other).start
        lst.extend({"node": node_label(*other, ch, E), "weight": v, "kind": kind, "kept": bool(kept[start + ch])}
                   for ch, v in zip(chans.tolist(), vals.tolist()))  # fmt: skip

    b = model.blocks[layer]
    for src, dst, kind, get in MAPS:
        w = get(b).detach().cpu()
        if dst == site:
            nz = w[c].nonzero().flatten()
            add(inc, (layer, src), nz, w[c, nz], kind)
        if src == site:
            nz = w[:, c].nonzero().flatten()
            add(out, (layer, dst), nz, w[nz, c], kind)
    if site in ("q", "k"):
        add(out, (layer, "k" if site == "q" else "q"), torch.tensor([c]), torch.tensor([1.0]), "qk")
    ch = torch.tensor([c])
    if site in READERS:
        g = _norm(model, layer, site)[c]
        if g != 0:
            for wl, ws in _sites(L, WRITERS):
                if _row(wl, ws) < _row(layer, site):
                    add(inc, (wl, ws), ch, g[None], "residual")
            if (model.embed.weight[:, c] != 0).any():
                inc.append({"node": f"embed.{c}", "weight": float(g), "kind": "embed", "kept": True})
    if site in WRITERS:
        for rl, rs in _sites(L, READERS):
            g = _norm(model, rl, rs)[c]
            if _row(rl, rs) > _row(layer, site) and g != 0:
                add(out, (rl, rs), ch, g[None], "residual")
        gf = model.ln_final.weight.detach().cpu()[c]
        for t in sorted({int(t) for t in answer_tokens or []}):
            v = float(model.unembed.weight[t, c].cpu() * gf)
            if v != 0:
                out.append({"node": f"logit.{token_str(tok, t)}", "weight": v, "kind": "unembed", "kept": True})
    key = lambda d: -abs(d["weight"])  # noqa: E731
    return {"label": nl.label(index), "incoming": sorted(inc, key=key), "outgoing": sorted(out, key=key)}


@torch.no_grad()
def ablation_effects(model: SparseGPT, circuit, data: TaskData, nodes: list[str | int], loss: str = "full",
                     ablation=None, frozen_ln: bool | None = None, rows_per_pass: int = 1024) -> dict:  # fmt: skip
    """Task loss of the circuit, and of the circuit with each node toggled alone (a kept node ablated, an
    ablated node restored), several masks per forward pass. Returns {"circuit_loss", "toggled_loss" [M],
    "delta" [M] (toggled minus circuit), "removed" [M] (True where the node was kept)}. Ablation values are
    per prompt ([n, T, width] for resample) or per node ([width]), as for ``circuit.run``."""
    nl = NodeLayout(model)
    device = next(model.parameters()).device
    idx = [_index(model, n) for n in nodes]
    base = circuit.nodes.float().to(device)
    masks = base.repeat(len(idx) + 1, 1)
    for m, i in enumerate(idx, start=1):
        masks[m, i] = 1.0 - masks[m, i]
    data = data.to(device)
    losses = []
    chunk = max(1, rows_per_pass // len(data))  # masks per forward pass
    for s in range(0, len(masks), chunk):
        mk = masks[s : s + chunk]
        S = mk.shape[0]
        rep = TaskData.cat([data] * S)
        abl = {k: (v.repeat(S, *[1] * (v.dim() - 1)) if v.dim() > 1 else v) for k, v in (ablation or {}).items()}
        scales = record_norm_scales(model, rep.tokens) if _frozen(circuit, frozen_ln) else None
        with masked(model, nl, mk, abl, scales):
            # The full forward (not ``at=``): per-position ablation values and norm scales then fit every hook.
            per = per_example_loss(answer_logits(model(rep.tokens), rep), rep, loss)
        losses.append(per.view(S, -1).mean(1).cpu())
    losses = torch.cat(losses)
    return {"circuit_loss": float(losses[0]), "toggled_loss": losses[1:], "delta": losses[1:] - losses[0],
            "removed": circuit.nodes.bool()[idx]}  # fmt: skip


def ablation_effect(model: SparseGPT, circuit, data: TaskData, node: str | int, loss: str = "full",
                    ablation=None, frozen_ln: bool | None = None) -> dict:  # fmt: skip
    """Task-loss change when this node alone is ablated from the circuit (or, if not in it, added)."""
    r = ablation_effects(model, circuit, data, [node], loss, ablation, frozen_ln)
    return {"circuit_loss": r["circuit_loss"], "toggled_loss": float(r["toggled_loss"][0]),
            "delta": float(r["delta"][0]), "removed": bool(r["removed"][0])}  # fmt: skip


def _patterns_at_answer(cache: dict, layer: int, head: int, last: torch.Tensor) -> torch.Tensor:
    pat = cache[f"blocks.{layer}.attn.hook_pattern"][:, head]  # [B, T, 1 + T]
    return pat[torch.arange(pat.shape[0]), last.cpu()].float()  # [B, 1 + T]


def _pattern_summary(orig: torch.Tensor, pruned: torch.Tensor, layer: int, head: int, keys) -> dict:
    tv = 0.5 * (orig - pruned).abs().sum(-1)
    ent = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1)  # noqa: E731
    return {"layer": layer, "head": head, "original": orig, "pruned": pruned, "tv": tv, "tv_mean": float(tv.mean()),
            "entropy_original": ent(orig), "entropy_pruned": ent(pruned), "keys": keys}  # fmt: skip


def head_patterns(model: SparseGPT, circuit, data: TaskData, layer: int, head: int, ablation=None, tok=None,
                  frozen_ln: bool | None = None) -> dict:  # fmt: skip
    """Attention from each prompt's answer position in the original and the pruned model, sink included.

    original / pruned are [n_prompts, 1 + T] (column 0 the sink, column j + 1 token j); tv [n] is the
    total-variation distance between them, tv_mean its mean; keys are the column names per prompt.
    """
    hook = f"blocks.{layer}.attn.hook_pattern"
    orig, pruned = run_pair(model, circuit, data.tokens, [hook], ablation, frozen_ln)
    keys = [["<sink>", *t] for t in prompt_tokens(tok, data)]
    return _pattern_summary(_patterns_at_answer(orig, layer, head, data.last),
                            _patterns_at_answer(pruned, layer, head, data.last), layer, head, keys)  # fmt: skip


# ------------------------------------------------------------------------- precomputed view data


@dataclass
class InspectorData:
    """Everything a view of one circuit needs, computed once: graph, layout, and both models' caches on
    the prompts. Selecting a node (``panel``) then costs slicing plus one small forward pass (its ablation
    effect, cached)."""

    model: SparseGPT
    tok: object
    circuit: object
    data: TaskData
    loss: str
    ablation: dict | None
    frozen_ln: bool
    graph: dict
    positions: dict
    adj: tuple
    original: dict
    pruned: dict
    corpus: CorpusActivations | None = None
    _effects: dict = field(default_factory=dict)

    @classmethod
    def build(cls, model: SparseGPT, tok, circuit, data: TaskData, loss: str | None = None,
              ablation: dict | str | None = "auto", means: dict | None = None,
              corpus: CorpusActivations | None = None, frozen_ln: bool | None = None) -> InspectorData:  # fmt: skip
        """``ablation="auto"`` uses the circuit's recorded ablation (means computed unless ``means`` given);
        a dict or None (zero) is used as given."""
        if isinstance(ablation, str):
            kind = circuit.meta.get("ablation", "zero") if ablation == "auto" else ablation
            ablation = resolve_ablation(model, tok, kind, data, means)
        answers = sorted(set(data.correct.tolist()) | set(data.incorrect.tolist()))
        graph = circuit_graph(model, circuit, answers, tok)
        names = [s.hook for s in NodeLayout(model).slices] + ["*attn.hook_pattern"]
        orig, pruned = run_pair(model, circuit, data.tokens, names, ablation, frozen_ln)
        return cls(model, tok, circuit, data, loss or circuit.meta.get("task_loss_kind", "full"), ablation,
                   _frozen(circuit, frozen_ln), graph, layout(graph), adjacency(graph), orig, pruned, corpus)  # fmt: skip

    @property
    def node_labels(self) -> list[str]:
        return [k for k, v in self.graph["nodes"].items() if v["kind"] == "node"]

    @property
    def tokens(self) -> list[list[str]]:
        return prompt_tokens(self.tok, self.data)

    def activations(self, label: str) -> dict:
        nl, i = NodeLayout(self.model), parse_label(label, self.model)
        return {"label": label, "original": _node_values(self.original, nl, i),
                "pruned": _node_values(self.pruned, nl, i), "last": self.data.last.cpu(), "tokens": self.tokens}  # fmt: skip

    def head_patterns(self, layer: int, head: int) -> dict:
        keys = [["<sink>", *t] for t in self.tokens]
        return _pattern_summary(_patterns_at_answer(self.original, layer, head, self.data.last),
                                _patterns_at_answer(self.pruned, layer, head, self.data.last), layer, head, keys)  # fmt: skip

    def effects(self, labels: list[str]) -> dict[str, dict]:
        """Ablation effects of several nodes (batched, cached)."""
        todo = [x for x in labels if x not in self._effects]
        if todo:
            r = ablation_effects(self.model, self.circuit, self.data, todo, self.loss, self.ablation, self.frozen_ln)
            for j, x in enumerate(todo):
                self._effects[x] = {"circuit_loss": r["circuit_loss"], "toggled_loss": float(r["toggled_loss"][j]),
                                    "delta": float(r["delta"][j]), "removed": bool(r["removed"][j])}  # fmt: skip
        return {x: self._effects[x] for x in labels}

    def panel(self, label: str, snippets: bool = True) -> dict:
        """All that the node view shows for one node."""
        info = self.graph["nodes"].get(label)
        if info is None or info["kind"] != "node":
            return {"label": label, "info": info, "in_circuit": False}
        out = {
            "label": label, "info": info, "in_circuit": True,
            "bias_like": is_bias_like(self.graph, label),
            "n_upstream": len(upstream(self.graph, label, self.adj)),
            "n_downstream": len(downstream(self.graph, label, self.adj)),
            "activations": self.activations(label),
            "weights": node_weights(self.model, self.circuit, label, self.graph["answer_tokens"], self.tok),
            "effect": self.effects([label])[label],
        }  # fmt: skip
        if info["head"] is not None:
            out["head"] = self.head_patterns(info["layer"], info["head"])
        if snippets and self.corpus is not None:
            out["snippets"] = self.corpus.snippets(self.model, self.tok, label)
        return out


# --------------------------------------------------------------------------------- static export


def circuit_to_html(model: SparseGPT, tok, circuit, path: str | Path, data: TaskData | None = None, *,
                    split: str = "test", n_prompts: int = 8, ablation: dict | str | None = "auto",
                    means: dict | None = None, title: str | None = None, max_edges: int | None = 15000) -> Path:  # fmt: skip
    """Write one self-contained, offline HTML file: the circuit's graph (inline SVG, click a node) and a
    panel per node (activations in the original and pruned model as coloured tokens, weights, ablation
    effect, bias-like flag, attention patterns of its head). ``data`` defaults to ``n_prompts`` prompts
    of the circuit's task on ``split``; beyond ``max_edges`` only the strongest edges are drawn."""
    from .graph_plot import export_page

    if data is None:
        from ..tasks import get_task

        if "task" not in circuit.meta:
            raise ValueError("the circuit records no task: pass data=task.data(split, tok)")
        data = get_task(circuit.meta["task"]).data(split, tok, n_prompts)
    view = InspectorData.build(model, tok, circuit, data, ablation=ablation, means=means)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export_page(view, title=title, max_edges=max_edges), encoding="utf-8")
    return path


def cmd_export_html(args) -> int:
    from ..circuits.circuit import Circuit
    from ..model.inference import load

    model, tok, config = load(args.model)
    circuit = Circuit.load(args.circuit_dir)
    means = None
    if circuit.meta.get("ablation") == "mean":  # means over the model's own corpus
        from ..circuits.ablation import node_means

        means = node_means(model, NodeLayout(model), tok, CorpusConfig(**config.get("corpus", {})))
    out = circuit_to_html(model, tok, circuit, args.out, split=args.split, n_prompts=args.n_prompts, means=means)
    print(out)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("export-html", help="write a circuit's inspector as one self-contained HTML file")
    p.add_argument("circuit_dir", help="directory written by circuit.save (circuit.json, circuit.safetensors)")
    p.add_argument("--model", required=True, help="model directory the circuit was pruned from")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="task prompts to show")
    p.add_argument("--n-prompts", type=int, default=8)
    p.set_defaults(fn=cmd_export_html)
