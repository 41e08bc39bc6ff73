"""What one node does: its activations on task prompts (model and pruned model) and on held-out corpus text; and
how two circuits differ (``compare_graphs``).

These answer the inspector's questions; they compute and never draw (``viz.inspector``, ``viz.html`` and
``viz.widgets`` show them). Nodes are given as labels (``L1.v.h3.5``) or flat ``NodeLayout`` indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..circuits.graph import circuit_graph, edge_counts
from ..circuits.layout import NodeLayout, token_text
from ..data.batches import BatchStream
from ..data.sources import CorpusConfig
from ..model.gpt import SparseGPT
from ..model.inference import model_corpus
from ..tasks import TaskData
from .compare import prompt_tokens, run_pair


def node_values(cache: dict, layout: NodeLayout, node: str | int) -> torch.Tensor:
    """[B, T] values of one node from a cache of its site's hook (q/k/v heads flattened as in the layout)."""
    layer, site, channel = layout.describe(layout.index(node))
    x = cache[layout.by_key[(layer, site)].hook]
    return x.reshape(x.shape[0], x.shape[1], -1)[..., channel].float()


def activation_rows(
    original: dict, pruned: dict, layout: NodeLayout, node: str | int, data: TaskData, tokens: list[list[str]]
) -> dict:
    """One node's values from the two caches of ``run_pair``, as ``activation_table`` returns them."""
    return {
        "label": layout.label(layout.index(node)),
        "original": node_values(original, layout, node),
        "pruned": node_values(pruned, layout, node),
        "last": data.last.cpu(),
        "tokens": tokens,
    }


def activation_table(
    model: SparseGPT, circuit, data: TaskData, node: str | int, ablation=None, tok=None, frozen_ln: bool | None = None
) -> dict:
    """One node's per-token activations on task prompts in the original and in the pruned model.

    Returns original and pruned [n_prompts, T] (padding after each prompt's ``last`` position), ``last``
    and the token strings (``#id`` without a tokenizer).
    """
    layout = NodeLayout(model)
    orig, pruned = run_pair(model, circuit, data.tokens, [layout.hook_of(layout.index(node))], ablation, frozen_ln)
    return activation_rows(orig, pruned, layout, node, data, prompt_tokens(tok, data))


@dataclass
class CorpusActivations:
    """Node activations on held-out corpus rows, for top- and bottom-activating snippets."""

    tokens: torch.Tensor  # [R, T]
    acts: dict[str, torch.Tensor]  # node hook -> [R, T, width]

    @classmethod
    @torch.no_grad()
    def compute(
        cls, model: SparseGPT, tok, n_batches: int = 2, batch_size: int = 16, corpus: CorpusConfig | None = None
    ) -> CorpusActivations:
        """Every node's activations on the first ``n_batches`` batches of the held-out stream of ``corpus`` (default:
        the model's own corpus)."""
        stream = BatchStream(model_corpus(model, corpus), tok, model.cfg.n_ctx, batch_size, "val")
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
        vals = node_values(self.acts, NodeLayout(model), node)  # [R, T]
        T = vals.shape[1]
        flat = vals.flatten()
        out = {}
        for name, sign in (("top", 1.0), ("bottom", -1.0)):
            idx = (sign * flat).topk(min(n, flat.numel())).indices.tolist()
            snips = []
            for i in idx:
                r, p = divmod(i, T)
                lo, hi = max(0, p - before), min(T, p + after + 1)
                snips.append(
                    {
                        "tokens": [token_text(tok, t) for t in self.tokens[r, lo:hi].tolist()],
                        "acts": vals[r, lo:hi].tolist(),
                        "at": p - lo,
                        "value": float(vals[r, p]),
                    }
                )
            out[name] = snips
        return out


def top_activating_snippets(
    model: SparseGPT,
    tok,
    node: str | int,
    n: int = 5,
    n_batches: int = 2,
    batch_size: int = 16,
    corpus: CorpusConfig | None = None,
) -> dict:
    """Top- and bottom-activating held-out corpus snippets of one node (in the original model)."""
    return CorpusActivations.compute(model, tok, n_batches, batch_size, corpus).snippets(model, tok, node, n)


# ---------------------------------------------------------------------------------- two circuits


def _jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 1 for two empty sets (they agree)."""
    return len(a & b) / len(a | b) if a | b else 1.0


def compare_graphs(a: dict, b: dict) -> dict:
    """How two circuit graphs (``circuits.graph.circuit_graph`` of one model) differ.

    Nodes are circuit nodes (embedding and logit endpoints left out); edges are (src, dst, kind) triples of the
    counted kinds (``edge_counts``: weights, q-k pairs, residual), so edges to answer logits do not depend on the
    answers each view picked. Returns the node lists (``nodes_a``, ``nodes_b``, ``nodes_both``, ``nodes_only_a``,
    ``nodes_only_b``, in forward order), ``jaccard`` of the node sets, ``edges_only_a`` / ``edges_only_b``
    (triples), ``n_edges_a`` / ``n_edges_b`` (``edge_counts`` totals) and ``edge_jaccard``.
    """
    circuit_nodes = lambda g: [k for k, v in g["nodes"].items() if v["kind"] == "node"]  # noqa: E731
    counted = lambda g: {(e.src, e.dst, e.kind) for e in g["edges"] if e.kind not in ("embed", "unembed")}  # noqa: E731
    na, nb = circuit_nodes(a), circuit_nodes(b)
    sa, sb = set(na), set(nb)
    ea, eb = counted(a), counted(b)
    return {
        "nodes_a": na,
        "nodes_b": nb,
        "nodes_both": [k for k in na if k in sb],
        "nodes_only_a": [k for k in na if k not in sb],
        "nodes_only_b": [k for k in nb if k not in sa],
        "jaccard": _jaccard(sa, sb),
        "n_edges_a": edge_counts(a)["total"],
        "n_edges_b": edge_counts(b)["total"],
        "edges_only_a": sorted(ea - eb),
        "edges_only_b": sorted(eb - ea),
        "edge_jaccard": _jaccard(ea, eb),
    }


def compare_circuits(model: SparseGPT, circuit_a, circuit_b, answer_tokens: list[int] | None = None, tok=None) -> dict:
    """``compare_graphs`` of two circuits of ``model``."""
    return compare_graphs(*(circuit_graph(model, c, answer_tokens, tok) for c in (circuit_a, circuit_b)))
