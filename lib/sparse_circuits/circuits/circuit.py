"""A circuit: the nodes pruning kept, their mask logits, the edges between them, and how it was found.

Saved as a directory: ``circuit.json`` (metadata, sizes, node labels) and ``circuit.safetensors`` (node mask
and logits). ``circuit.run(model, ...)`` is a context manager that runs the model pruned to the circuit
through the same hooks pruning used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core import storage
from ..core.version import __version__
from ..model.gpt import SparseGPT
from .masking import NodeLayout, masked, record_norm_scales

CIRCUIT_JSON, CIRCUIT_TENSORS = "circuit.json", "circuit.safetensors"


def count_edges(model: SparseGPT, nodes: torch.Tensor, answer_tokens: list[int] | None = None) -> dict[str, int]:
    """Edges between kept nodes, by kind. ``nodes`` is a [N] bool mask in NodeLayout order.

    - weights: nonzero entries of W_Q, W_K, W_V (attn_in -> q/k/v), W_O (v -> attn_out), W_in (mlp_in ->
      mlp_neuron) and W_out (mlp_neuron -> mlp_out) whose input and output nodes are both kept;
    - qk_pairs: kept q and k channels of the same head and dimension (their product forms the score);
    - residual: a kept attn_out / mlp_out channel c read by a kept attn_in / mlp_in channel c downstream
      (through the residual stream and a norm whose weight at c is nonzero);
    - unembed: kept final writers c with a nonzero unembedding weight to an answer token (if given).
    """
    layout = NodeLayout(model)
    kept = lambda layer, site: nodes[layout.sl(layer, site)]  # noqa: E731
    e = {"weights": 0, "qk_pairs": 0, "residual": 0, "unembed": 0}

    def nz(w: torch.Tensor, out_kept: torch.Tensor, in_kept: torch.Tensor) -> int:
        return int(((w != 0) & out_kept[:, None] & in_kept[None, :]).sum())

    writers: list[tuple[int, str]] = []
    with torch.no_grad():
        for layer, b in enumerate(model.blocks):
            a_in = kept(layer, "attn_in")
            for site, lin in (("q", b.attn.W_Q), ("k", b.attn.W_K), ("v", b.attn.W_V)):
                e["weights"] += nz(lin.weight.cpu(), kept(layer, site), a_in)
            e["weights"] += nz(b.attn.W_O.weight.cpu(), kept(layer, "attn_out"), kept(layer, "v"))
            e["weights"] += nz(b.mlp.W_in.weight.cpu(), kept(layer, "mlp_neuron"), kept(layer, "mlp_in"))
            e["weights"] += nz(b.mlp.W_out.weight.cpu(), kept(layer, "mlp_out"), kept(layer, "mlp_neuron"))
            e["qk_pairs"] += int((kept(layer, "q") & kept(layer, "k")).sum())
            # residual reads: every earlier writer's channel c into this layer's readers
            for reader, norm in (("attn_in", b.ln1), ("mlp_in", b.ln2)):
                if reader == "mlp_in":
                    writers.append((layer, "attn_out"))
                r = kept(layer, reader) & (norm.weight.cpu() != 0)
                for wl, ws in writers:
                    e["residual"] += int((kept(wl, ws) & r).sum())
            writers.append((layer, "mlp_out"))
        if answer_tokens:
            wu = model.unembed.weight.cpu()[answer_tokens] != 0  # [A, D]
            fin = model.ln_final.weight.cpu() != 0
            for wl, ws in writers:
                e["unembed"] += int((wu & (kept(wl, ws) & fin)[None, :]).sum())
    e["total"] = sum(e.values())
    return e


@dataclass
class Circuit:
    nodes: torch.Tensor
    """[N] bool: which nodes are kept (NodeLayout order)."""
    tau: torch.Tensor
    """[N] learned mask logits; ranking them gives the circuit at any node budget."""
    meta: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.sum())

    @property
    def total_nodes(self) -> int:
        return int(self.nodes.numel())

    @property
    def n_edges(self) -> int | None:
        return self.meta.get("edges", {}).get("total")

    def with_edges(self, model: SparseGPT, answer_tokens: list[int] | None = None) -> Circuit:
        self.meta["edges"] = count_edges(model, self.nodes, answer_tokens)
        self.meta["n_nodes"], self.meta["total_nodes"] = self.n_nodes, self.total_nodes
        return self

    def at_count(self, k: int) -> Circuit:
        """The circuit of the k highest-ranked nodes (same logits and metadata, edges not recomputed)."""
        from ..pruning.pruner import topk_masks

        nodes = topk_masks(self.tau[None], torch.tensor([k]))[0].bool()
        meta = {k_: v for k_, v in self.meta.items() if k_ not in ("edges", "n_nodes", "loss")}
        return Circuit(nodes, self.tau.clone(), {**meta, "n_nodes": k})

    def node_labels(self, model: SparseGPT) -> list[str]:
        layout = NodeLayout(model)
        return [layout.label(i) for i in self.nodes.nonzero().flatten().tolist()]

    def to_html(self, path, model: SparseGPT, tok, **kw) -> Path:
        """One self-contained HTML inspector of this circuit (see inspector.circuit_to_html)."""
        from ..viz.inspector import circuit_to_html

        return circuit_to_html(model, tok, self, path, **kw)

    @contextlib.contextmanager
    def run(self, model: SparseGPT, ablation: dict[str, torch.Tensor] | None = None,
            frozen_ln_tokens: torch.Tensor | None = None):  # fmt: skip
        """Within the block, ``model`` computes with only the circuit's nodes (others ablated to ``ablation``
        values, zero if None). Pass the tokens to frozen_ln_tokens to freeze the norms at the model's scales."""
        layout = NodeLayout(model)
        if layout.n_nodes != self.total_nodes:
            raise ValueError(f"circuit has {self.total_nodes} nodes, model has {layout.n_nodes}: wrong model?")
        scales = record_norm_scales(model, frozen_ln_tokens) if frozen_ln_tokens is not None else None
        mask = self.nodes.to(next(model.parameters()).device, torch.float32)[None]
        with masked(model, layout, mask, ablation, scales):
            yield model

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, model: SparseGPT | None = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "package_version": self.meta.get("package_version", __version__),
                "n_nodes": self.n_nodes, "total_nodes": self.total_nodes}  # fmt: skip
        if model is not None:
            meta["node_labels"] = self.node_labels(model)
        storage.save_tensors(out / CIRCUIT_TENSORS, {"nodes": self.nodes.to(torch.uint8), "tau": self.tau.float()},
                          sparse_below=0.0)  # fmt: skip
        storage.write_json(out / CIRCUIT_JSON, meta)
        return out

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        path = Path(path)
        meta = storage.read_json(path / CIRCUIT_JSON)
        t = storage.load_tensors(path / CIRCUIT_TENSORS)
        if "nodes" not in t or "tau" not in t or t["nodes"].shape != t["tau"].shape:
            raise storage.CheckpointError(f"{path / CIRCUIT_TENSORS} lacks matching 'nodes' and 'tau' tensors")
        c = cls(t["nodes"].bool(), t["tau"], meta)
        if int(c.nodes.sum()) != meta.get("n_nodes", c.n_nodes):
            raise storage.CheckpointError(
                f"{path / CIRCUIT_JSON} says {meta.get('n_nodes')} nodes, tensors hold {c.n_nodes}"
            )
        return c
