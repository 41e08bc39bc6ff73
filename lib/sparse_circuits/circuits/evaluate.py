"""The one evaluator of node masks on task prompts: S masks x n prompts -> per-prompt answer logits or losses.

Pruning (training steps, the adversary, the discretization search), faithfulness, generalization, the controls
and the inspector's node effects all score masks through ``MaskEvaluator.run``. Its options exist because those
callers were calibrated with different (equally valid) conventions, and their recorded numbers are kept exact:

- ``at_answer``: the answer-position forward (``model(tokens, at=last)``: the last block computes its queries,
  MLP and unembedding only there; pruning and the analyses) or the full forward (needed when ablation values were
  recorded per position on the full sequence, as ``resolve_ablation`` gives them; the inspector). The two agree
  up to floating-point rounding.
- ``frozen_ln`` with ``scales_once``: frozen norms divide by the unpruned model's RMS, recorded through the real
  model (AbsTopK included). By default it is recorded on the batch each pass runs (the S-fold repeated prompts,
  as pruning trains); with ``scales_once`` once on the n prompts and repeated for every mask (generalization).
  Rows do not interact, so both give the same scales up to the rounding of differently sized matmuls.
- ``chunk``: masks per forward pass (memory; ``masks_per_pass`` is the rule callers use); ``seeds``: one ablation
  seed per mask (resample draws each mask's corpus rows from its seed, so a mask's values do not depend on which
  pass it lands in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model.gpt import SparseGPT
from ..model.sparse_exec import enable_sparse_execution, sparse_execution
from ..tasks import TaskData, answer_logits, binary_p_correct, per_example_loss, run_answer_logits
from .ablation import Ablation
from .layout import NodeLayout
from .masking import masked, record_norm_scales

# measure(answer logits [C*n, V], the pass's prompts) -> [C*n, ...]
Measure = Callable[[torch.Tensor, TaskData], torch.Tensor]
MEASURES = ("loss", "p_correct", "logits")

PASS_ROWS_D2 = 2**27
"""Largest token rows per pass x d_model^2 for a model with matrices that run sparse (``masks_per_pass``).

Measured on a pruning step (2 cores, batch 64): the fastest runs per pass were at about 1.7e8 rows x d_model^2
at every width: 10k+ rows at d128, 2.5k at d256, 640 at d512 (1.8x faster than 8 runs per pass), one run (768
rows) at d1024 (1.5x). Beyond it the passes' activations leave the cache, and the CSR products most of all."""


def masks_per_pass(model: SparseGPT, execution: str, rows_per_mask: int, default: int) -> int:
    """How many masks (runs) one forward pass holds: ``default`` when every matrix of ``model`` runs dense under
    ``execution`` (the narrow models: all their results were made so), else as many as keep a pass within
    ``PASS_ROWS_D2`` (at least 1, at most ``default``). ``rows_per_mask``: token rows one mask's prompts take."""
    handle = enable_sparse_execution(model, execution)
    runs_sparse = bool(handle.swapped)
    handle.restore()
    if not runs_sparse:
        return default
    return max(1, min(default, PASS_ROWS_D2 // max(1, rows_per_mask * model.cfg.d_model**2)))


def circuit_frozen_ln(circuit, frozen_ln: bool | None = None) -> bool:
    """Whether to freeze the norms for a circuit: as given, else as recorded when it was pruned."""
    return bool(circuit.meta.get("frozen_ln", False)) if frozen_ln is None else frozen_ln


def _repeat(x: torch.Tensor, times: int) -> torch.Tensor:
    """[B, ...] -> [times * B, ...]."""
    return x.repeat(times, *[1] * (x.dim() - 1))


@dataclass
class MaskEvaluator:
    """Scores node masks [S, N] on task prompts for one model (see the module docstring for the options).

    ``ablation``: an ``Ablation`` (values drawn per pass from the masks' seeds), or fixed values (None for zero,
    hook -> [width] per node, or hook -> [n, T, width] per prompt, repeated for every mask).
    """

    model: SparseGPT
    layout: NodeLayout
    loss: str = "full"
    ablation: Ablation | dict | None = None
    frozen_ln: bool = False
    scales_once: bool = False
    at_answer: bool = True
    execution: str = "auto"
    """How weight-sparse matrices run in the masked passes: "auto", "dense" or "sparse" (``model.sparse_exec``)."""

    def values(self, seeds: list[int], data: TaskData, step: int, n_masks: int):
        """Ablation values for one pass over ``data`` (n_masks blocks of prompts, block i for seeds[i])."""
        if isinstance(self.ablation, Ablation):
            return self.ablation.values(seeds, data, step, self.at_answer)
        return {k: (_repeat(v, n_masks) if v.dim() > 1 else v) for k, v in (self.ablation or {}).items()} or None

    def _measure(self, measure: str | Measure) -> Measure:
        if callable(measure):
            return measure
        if measure == "loss":
            return lambda logits, data: per_example_loss(logits, data, self.loss)
        if measure == "p_correct":
            return binary_p_correct
        if measure == "logits":
            return lambda logits, data: logits
        raise ValueError(f"unknown measure {measure!r}; allowed: {list(MEASURES)} or a callable")

    def _norm_scales(self, part: TaskData, n_masks: int, once: dict | None) -> dict | None:
        """Frozen norm scales for one pass over ``part`` (None: the norms compute their own)."""
        if once is not None:
            return {k: _repeat(v, n_masks) for k, v in once.items()}
        if self.frozen_ln:
            return record_norm_scales(self.model, part.tokens, part.last if self.at_answer else None)
        return None

    def _answer_logits(self, data: TaskData) -> torch.Tensor:
        """[n, V] logits at the answer positions, from the answer-position or the full forward."""
        if self.at_answer:
            return run_answer_logits(self.model, data)
        return answer_logits(self.model(data.tokens), data)

    def run(
        self,
        masks: torch.Tensor,
        data: TaskData,
        measure: str | Measure = "loss",
        *,
        seeds: list[int] | None = None,
        step: int = -1,
        shared: bool = True,
        chunk: int | None = None,
        values="auto",
        mean: bool = False,
        extra_hooks=(),
    ) -> torch.Tensor:
        """Every mask of ``masks`` [S, N] on the prompts of ``data`` -> [S, n, ...] per prompt (``mean``: [S, ...],
        the mean over the prompts), on the model's device, differentiable in the masks.

        measure: "loss" (the task loss per prompt), "p_correct" (binary), "logits" ([S, n, V] at the answer) or
        ``fn(answer logits [C*n, V], prompts) -> [C*n, ...]``. shared: every mask sees the n prompts of ``data``
        (repeated per mask); False: ``data`` holds S blocks of prompts, one per mask. seeds (default 0..S-1) and
        step: what resample values are drawn from. values: ablation values to use as given for every pass
        instead of the evaluator's ``ablation`` ("auto"). extra_hooks: more hooks for the masked passes.
        """
        device = next(self.model.parameters()).device
        masks, data = masks.to(device, torch.float32), data.to(device)
        S = masks.shape[0]
        n = len(data) if shared else len(data) // S
        seeds = list(range(S)) if seeds is None else list(seeds)
        if not shared and chunk not in (None, S):
            raise ValueError("masks on their own blocks of prompts run in one pass (chunk=None)")
        chunk = chunk or S
        fn = self._measure(measure)
        with sparse_execution(self.model, self.execution):
            once = None
            if self.frozen_ln and self.scales_once:
                once = record_norm_scales(self.model, data.tokens, data.last if self.at_answer else None)
            out = []
            for lo in range(0, S, chunk):
                m = masks[lo : lo + chunk]
                C = m.shape[0]
                part = data if C == 1 or not shared else TaskData.cat([data] * C)
                abl = self.values(seeds[lo : lo + C], part, step, C) if values == "auto" else values
                with masked(self.model, self.layout, m, abl, self._norm_scales(part, C, once), extra_hooks):
                    y = fn(self._answer_logits(part), part)
                y = y.view(C, n, *y.shape[1:])
                out.append(y.mean(1) if mean else y)
        return torch.cat(out)


def toggle_masks(base: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """[N] base mask, [M] node indices -> [M, N]: row j is the base with node indices[j] toggled (1 - value)."""
    masks = base.float().repeat(len(indices), 1)
    rows = torch.arange(len(indices))
    masks[rows, indices] = 1.0 - masks[rows, indices]
    return masks


def toggled_losses(
    evaluate: Callable[[torch.Tensor], torch.Tensor],
    base: torch.Tensor,
    indices,
    base_apart: bool = False,
    chunk: int | None = None,
) -> dict:
    """The loss of a base mask [N], and of the base with each node of ``indices`` toggled alone (a kept node
    ablated, an ablated node restored).

    evaluate: [M, N] masks -> [M] losses. The toggled masks go to it ``chunk`` at a time (N x N masks would not
    fit). base_apart: score the base in a call of its own instead of in front of the toggled masks (sharing their
    forward passes): the same loss up to rounding, kept as each caller's numbers were made.
    Returns {"base_loss", "index" [M], "toggled_loss" [M], "delta" [M] (toggled minus base)}.
    """
    idx = torch.as_tensor(indices, dtype=torch.long).flatten()
    base = base.float().cpu()
    if base_apart:
        parts = [evaluate(base[None])] + [evaluate(toggle_masks(base, p)) for p in idx.split(chunk or len(idx) or 1)]
    else:
        parts = [evaluate(torch.cat([base[None], toggle_masks(base, idx)]))]
    losses = torch.cat([p.cpu() for p in parts])
    return {"base_loss": float(losses[0]), "index": idx, "toggled_loss": losses[1:], "delta": losses[1:] - losses[0]}


@torch.no_grad()
def ablation_effects(
    model: SparseGPT,
    circuit,
    data: TaskData,
    nodes: list[str | int],
    loss: str = "full",
    ablation=None,
    frozen_ln: bool | None = None,
    rows_per_pass: int = 1024,
) -> dict:
    """Task loss of the circuit, and of the circuit with each node toggled alone (a kept node ablated, an
    ablated node restored), several masks per forward pass. Returns {"circuit_loss", "toggled_loss" [M],
    "delta" [M] (toggled minus circuit), "removed" [M] (True where the node was kept)}. Ablation values are
    per prompt ([n, T, width] for resample) or per node ([width]), as for ``circuit.run``: the full forward runs
    (not ``at=``), so that per-position values and norm scales fit every hook."""
    layout = NodeLayout(model)
    idx = [layout.index(n) for n in nodes]
    evaluator = MaskEvaluator(model, layout, loss, ablation, circuit_frozen_ln(circuit, frozen_ln), at_answer=False)
    chunk = max(1, rows_per_pass // len(data))  # masks per forward pass
    r = toggled_losses(lambda m: evaluator.run(m, data, chunk=chunk, mean=True).cpu(), circuit.nodes, idx)
    return {
        "circuit_loss": r["base_loss"],
        "toggled_loss": r["toggled_loss"],
        "delta": r["delta"],
        "removed": circuit.nodes.bool()[idx],
    }


def ablation_effect(
    model: SparseGPT,
    circuit,
    data: TaskData,
    node: str | int,
    loss: str = "full",
    ablation=None,
    frozen_ln: bool | None = None,
) -> dict:
    """Task-loss change when this node alone is ablated from the circuit (or, if not in it, added)."""
    r = ablation_effects(model, circuit, data, [node], loss, ablation, frozen_ln)
    return {
        "circuit_loss": r["circuit_loss"],
        "toggled_loss": float(r["toggled_loss"][0]),
        "delta": float(r["delta"][0]),
        "removed": bool(r["removed"][0]),
    }
