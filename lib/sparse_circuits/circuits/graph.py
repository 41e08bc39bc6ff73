"""The edges of a circuit, from the actual nonzero weights between nodes, and walks along them.

One rule says what an edge is (``edge_blocks``); the edge counts stored with a circuit (``count_edges``), the
layered graph the inspector draws (``circuit_graph``) and one node's weights (``node_weights``) all come from it:

- weights: nonzero entries of W_Q, W_K, W_V (attn_in -> q/k/v), W_O (v -> attn_out), W_in (mlp_in ->
  mlp_neuron) and W_out (mlp_neuron -> mlp_out);
- qk: the q and k channels of one head and dimension (their product forms the score; weight 1);
- residual: an attn_out / mlp_out channel c read by an attn_in / mlp_in channel c later in the forward pass,
  through the residual stream and a norm whose weight at c is nonzero (weight: that norm weight);
- unembed: a writer channel c to an answer token's logit (weight W_U[token, c] * ln_final.weight[c]);
- embed: embedding channel c read by a reader at c (the embedding is not a node: these are never counted).

The edge count of a circuit (one convention everywhere: stored circuits, pages, widget, figures) is its edges
between nodes, weights + qk + residual; edges to answer logits (unembed) depend on which answers a view picks, so
they are listed beside it, never added in: ``edge_summary`` writes "N edges (a weights, b q-k pairs, c residual)
+ u to the answer logits".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import torch

from ..model.gpt import SparseGPT
from .layout import NodeLayout, embed_label, logit_label, node_label

# Forward order of the sites within a layer: q, k and v are computed side by side, so a layer has six steps.
SITE_ROW = {"attn_in": 0, "q": 1, "k": 1, "v": 1, "attn_out": 2, "mlp_in": 3, "mlp_neuron": 4, "mlp_out": 5}
READERS, WRITERS = ("attn_in", "mlp_in"), ("attn_out", "mlp_out")
EMBED, LOGITS = "embed", "logits"
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


def site_row(layer: int, site: str) -> int:
    """Forward position of a node site (1 + 6 * layer + its step; 0 is the embedding)."""
    return 1 + 6 * layer + SITE_ROW[site]


class Edge(NamedTuple):
    src: str
    dst: str
    weight: float
    kind: str  # W_Q W_K W_V W_O W_in W_out qk residual embed unembed


class EdgeBlock(NamedTuple):
    """The edges of one kind between two node sites. Sites are (layer, site); the embedding is (-1, "embed")
    and the logits (n_layer, "logits"), whose channels are token ids."""

    src: tuple[int, str]
    dst: tuple[int, str]
    kind: str
    src_channels: torch.Tensor  # [K] int64
    dst_channels: torch.Tensor  # [K] int64
    weights: torch.Tensor  # [K] float


def _reader_norm(model: SparseGPT, layer: int, reader: str) -> torch.Tensor:
    """[D] weight of the norm a reader site reads the residual stream through."""
    b = model.blocks[layer]
    return (b.ln1 if reader == "attn_in" else b.ln2).weight.detach().cpu()


def _sites(n_layer: int, names: tuple[str, ...]) -> list[tuple[int, str]]:
    return [(layer, s) for layer in range(n_layer) for s in names]


def _same_channel(src, dst, kind: str, channels: torch.Tensor, weights: torch.Tensor) -> EdgeBlock:
    return EdgeBlock(src, dst, kind, channels, channels, weights)


@torch.no_grad()
def edge_blocks(
    model: SparseGPT,
    sources: torch.Tensor,
    targets: torch.Tensor,
    answer_tokens: list[int] | None = None,
    embed: bool = False,
) -> Iterator[EdgeBlock]:
    """Every edge (see the module docstring) from a node in ``sources`` to a node in ``targets`` ([N] bool masks
    in NodeLayout order), plus edges to the answer tokens' logits (given) and from the embedding (``embed``).

    Blocks come in forward order: per layer the weight maps then q-k pairs; per reader the residual reads, then
    its embedding reads; last the unembedding.
    """
    nl = NodeLayout(model)
    sources, targets = sources.bool().cpu(), targets.bool().cpu()
    src_of = lambda layer, site: sources[nl.sl(layer, site)]  # noqa: E731
    dst_of = lambda layer, site: targets[nl.sl(layer, site)]  # noqa: E731
    L = model.cfg.n_layer
    for layer, b in enumerate(model.blocks):
        for src, dst, kind, get in MAPS:
            ci, co = src_of(layer, src).nonzero().flatten(), dst_of(layer, dst).nonzero().flatten()
            if len(ci) and len(co):
                sub = get(b).detach().cpu()[co][:, ci]  # [out, in]
                r, c = sub.nonzero(as_tuple=True)
                yield EdgeBlock((layer, src), (layer, dst), kind, ci[c], co[r], sub[r, c])
        pair = (src_of(layer, "k") & dst_of(layer, "q")).nonzero().flatten()
        yield _same_channel((layer, "k"), (layer, "q"), "qk", pair, torch.ones(len(pair)))
    embed_nonzero = None
    for rl, rs in _sites(L, READERS):
        g = _reader_norm(model, rl, rs)
        readable = dst_of(rl, rs) & (g != 0)  # a zero norm weight cuts the read
        for wl, ws in _sites(L, WRITERS):
            if site_row(wl, ws) < site_row(rl, rs):
                c = (src_of(wl, ws) & readable).nonzero().flatten()
                yield _same_channel((wl, ws), (rl, rs), "residual", c, g[c])
        if embed and readable.any():
            if embed_nonzero is None:
                embed_nonzero = (model.embed.weight.detach().cpu() != 0).any(0)  # [D]
            c = (embed_nonzero & readable).nonzero().flatten()
            yield _same_channel((-1, EMBED), (rl, rs), "embed", c, g[c])
    tokens = sorted({int(t) for t in answer_tokens or []})
    if tokens:
        wu = model.unembed.weight.detach().cpu()[tokens] * model.ln_final.weight.detach().cpu()  # [A, D]
        for wl, ws in _sites(L, WRITERS):
            ci = src_of(wl, ws).nonzero().flatten()
            sub = wu[:, ci]  # [A, kept]
            a, c = sub.nonzero(as_tuple=True)
            yield EdgeBlock((wl, ws), (L, LOGITS), "unembed", ci[c], torch.tensor(tokens)[a], sub[a, c])


# The kinds summed into a circuit's edge count (see the module docstring); "unembed" is counted beside them.
COUNTED_KINDS = ("weights", "qk_pairs", "residual")


def _tally(counts: dict[str, int]) -> dict[str, int]:
    """Edge counts by kind -> the totals stored with a circuit: "total" sums ``COUNTED_KINDS``; unembedding
    edges are kept apart and embedding edges are not counted."""
    e = {
        "weights": sum(counts.get(k, 0) for k in WEIGHT_KINDS),
        "qk_pairs": counts.get("qk", 0),
        "residual": counts.get("residual", 0),
        "unembed": counts.get("unembed", 0),
    }
    e["total"] = sum(e[k] for k in COUNTED_KINDS)
    return e


def edge_summary(counts: dict[str, int], answers: str = "the answer logits") -> str:
    """The one way to print an edge count: "N edges (a weights, b q-k pairs, c residual) + u to ``answers``"
    (the last part only when there are unembedding edges)."""
    text = (
        f"{counts['total']} edges ({counts['weights']} weights, {counts['qk_pairs']} q-k pairs, "
        f"{counts['residual']} residual)"
    )
    return text + (f" + {counts['unembed']} to {answers}" if counts.get("unembed") else "")


def count_edges(model: SparseGPT, nodes: torch.Tensor, answer_tokens: list[int] | None = None) -> dict[str, int]:
    """Edges between kept nodes (``nodes``: [N] bool in NodeLayout order), by kind: weights, qk_pairs, residual
    and unembed (to the answer tokens, if given), and "total", the circuit's edge count (unembed not included)."""
    counts: dict[str, int] = {}
    for block in edge_blocks(model, nodes, nodes, answer_tokens):
        counts[block.kind] = counts.get(block.kind, 0) + len(block.weights)
    return _tally(counts)


def edge_counts(graph: dict) -> dict[str, int]:
    """``count_edges`` of a graph from ``circuit_graph`` (its embedding edges are not counted)."""
    counts: dict[str, int] = {}
    for e in graph["edges"]:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return _tally(counts)


class _Labeller:
    """Labels of the endpoints of edge blocks."""

    def __init__(self, model: SparseGPT, tok) -> None:
        self.tok, self.d_head = tok, model.cfg.d_head

    def __call__(self, site: tuple[int, str], channel: int) -> str:
        layer, name = site
        if name == EMBED:
            return embed_label(channel)
        if name == LOGITS:
            return logit_label(self.tok, channel)
        return node_label(layer, name, channel, self.d_head)


def _kept(circuit, model: SparseGPT) -> torch.Tensor:
    kept = circuit.nodes.bool().cpu()
    n = NodeLayout(model).n_nodes
    if kept.numel() != n:
        raise ValueError(f"circuit has {kept.numel()} nodes, model has {n}: wrong model?")
    return kept


@torch.no_grad()
def circuit_graph(
    model: SparseGPT, circuit, answer_tokens: list[int] | None = None, tok=None, include_embed: bool = True
) -> dict:
    """The layered graph of a circuit: every edge (``edge_blocks``) between its kept nodes.

    Returns ``{"nodes": {label: info}, "edges": [Edge], "n_layer", "d_head", "answer_tokens"}``; nodes are in
    forward order, info has index (flat, -1 for embed/logit), layer (-1 embed, n_layer logits), site,
    channel, head (q/k/v only) and kind ("node", "embed", "logit"). Embedding channels appear as nodes when a
    kept reader reads them (``include_embed``), answer tokens' logits when given.
    """
    nl = NodeLayout(model)
    L, E = model.cfg.n_layer, model.cfg.d_head
    kept = _kept(circuit, model)
    label = _Labeller(model, tok)
    nodes: dict[str, dict] = {}
    for s in nl.slices:  # labels for kept nodes only
        for c in kept[s.start : s.stop].nonzero().flatten().tolist():
            head = c // E if s.site in ("q", "k", "v") else None
            nodes[node_label(s.layer, s.site, c, E)] = {
                "index": s.start + c,
                "layer": s.layer,
                "site": s.site,
                "channel": c,
                "head": head,
                "kind": "node",
            }
    answer_tokens = sorted({int(t) for t in answer_tokens or []})
    endpoint = lambda site, c: {
        "index": -1,
        "layer": site[0],
        "site": site[1],
        "channel": c,
        "head": None,  # noqa: E731
        "kind": "embed" if site[1] == EMBED else "logit",
    }
    embed_nodes: dict[str, dict] = {}
    logit_nodes = {label((L, LOGITS), t): endpoint((L, LOGITS), t) for t in answer_tokens}
    edges: list[Edge] = []
    for b in edge_blocks(model, kept, kept, answer_tokens, embed=include_embed):
        for cs, cd, w in zip(b.src_channels.tolist(), b.dst_channels.tolist(), b.weights.tolist()):
            edges.append(Edge(label(b.src, cs), label(b.dst, cd), w, b.kind))
            if b.kind == "embed":
                embed_nodes.setdefault(edges[-1].src, endpoint(b.src, cs))
    return {
        "nodes": {**dict(sorted(embed_nodes.items(), key=lambda kv: kv[1]["channel"])), **nodes, **logit_nodes},
        "edges": edges,
        "n_layer": L,
        "d_head": E,
        "answer_tokens": answer_tokens,
    }


@torch.no_grad()
def node_weights(model: SparseGPT, circuit, node: str | int, answer_tokens: list[int] | None = None, tok=None) -> dict:
    """Every edge (``edge_blocks``) into and out of a node, to kept and to non-kept nodes.

    Returns {"label", "incoming": [...], "outgoing": [...]}, each entry {"node", "weight", "kind", "kept"}, sorted
    by |weight|. Embed and logit endpoints (answer tokens only) count as kept. A q-k pair is listed as outgoing
    for both its q and its k node (it forms a score, neither feeds the other).
    """
    nl = NodeLayout(model)
    index = nl.index(node)
    kept = _kept(circuit, model)
    label = _Labeller(model, tok)
    one = torch.zeros(nl.n_nodes, dtype=torch.bool)
    one[index] = True
    every = torch.ones(nl.n_nodes, dtype=torch.bool)
    inc: list[dict] = []
    out: list[dict] = []

    def entry(site: tuple[int, str], channel: int, weight: float, kind: str) -> dict:
        in_circuit = site[1] in (EMBED, LOGITS) or bool(kept[nl.sl(*site).start + channel])
        return {"node": label(site, channel), "weight": weight, "kind": kind, "kept": in_circuit}

    for b in edge_blocks(model, every, one, embed=True):
        for c, w in zip(b.src_channels.tolist(), b.weights.tolist()):
            (out if b.kind == "qk" else inc).append(entry(b.src, c, w, b.kind))
    for b in edge_blocks(model, one, every, answer_tokens):
        out.extend(entry(b.dst, c, w, b.kind) for c, w in zip(b.dst_channels.tolist(), b.weights.tolist()))
    key = lambda d: -abs(d["weight"])  # noqa: E731
    return {"label": nl.label(index), "incoming": sorted(inc, key=key), "outgoing": sorted(out, key=key)}


# ---------------------------------------------------------------------------------- walking the graph


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
