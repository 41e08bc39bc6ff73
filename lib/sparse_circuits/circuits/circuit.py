"""A circuit: the nodes pruning kept, their mask logits, the edges between them (``graph.count_edges``), and how
it was found.

Saved as a directory: ``circuit.json`` (metadata, sizes, node labels, the task's name and, where it can be
written as data, its spec: ``task_record``) and ``circuit.safetensors`` (node mask and logits).
``circuit.task()`` gives the task back, so a circuit of a user task needs no registry entry once saved.
``circuit.run(model, ...)`` is a context manager that runs the model pruned to the circuit through the same
hooks pruning used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core import storage
from ..core.config import config_fields
from ..core.version import __version__
from ..model.gpt import SparseGPT
from ..tasks import Task, TaskSpec, get_task
from .graph import count_edges
from .layout import NodeLayout
from .masking import masked, record_norm_scales, topk_masks

CIRCUIT_JSON, CIRCUIT_TENSORS = "circuit.json", "circuit.safetensors"


def task_record(task: Task) -> dict:
    """What a circuit's metadata records of its task: ``task`` (the name) and ``task_spec`` (every field of the
    spec as data). A spec with a Python ``constraint`` (the IOI variants) cannot be written as data: it is
    recorded by name only and found in the task registry again."""
    record = {"task": task.name}
    if task.spec.constraint is None:
        record["task_spec"] = {f.name: getattr(task.spec, f.name) for f in config_fields(TaskSpec)}
    return record


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
        nodes = topk_masks(self.tau[None], torch.tensor([k]))[0].bool()
        meta = {k_: v for k_, v in self.meta.items() if k_ not in ("edges", "n_nodes", "loss")}
        return Circuit(nodes, self.tau.clone(), {**meta, "n_nodes": k})

    def task(self) -> Task:
        """The task the circuit was pruned on: its recorded spec, else the registry's task of its name."""
        if "task_spec" in self.meta:
            return Task(TaskSpec.from_dict(self.meta["task_spec"]))
        if "task" not in self.meta:
            raise ValueError("the circuit records no task: pass the task (or its prompts) explicitly")
        return get_task(self.meta["task"])

    def node_labels(self, model: SparseGPT) -> list[str]:
        layout = NodeLayout(model)
        return [layout.label(i) for i in self.nodes.nonzero().flatten().tolist()]

    @contextlib.contextmanager
    def run(
        self,
        model: SparseGPT,
        ablation: dict[str, torch.Tensor] | None = None,
        frozen_ln_tokens: torch.Tensor | None = None,
    ):
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
        meta = {
            **self.meta,
            "package_version": self.meta.get("package_version", __version__),
            "n_nodes": self.n_nodes,
            "total_nodes": self.total_nodes,
        }
        if model is not None:
            meta["node_labels"] = self.node_labels(model)
        storage.save_tensors(
            out / CIRCUIT_TENSORS, {"nodes": self.nodes.to(torch.uint8), "tau": self.tau.float()}, sparse_below=0.0
        )
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
