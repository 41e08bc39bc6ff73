"""Weight sparsity (docs/method.md, Weight-sparse training): top-k projection of weight matrices and the L0 / learning-rate schedules."""

from __future__ import annotations

import math

import torch

MIN_PER_NEURON = 4
L0_SCHEDULES = ("linear", "exponential")


def n_keep(numel: int, l0: float, n_neurons: int = 0, min_per_neuron: int = MIN_PER_NEURON) -> int:
    """Nonzeros kept in a matrix: ceil(l0 * numel), never fewer than the per-neuron minimum requires."""
    return min(numel, max(math.ceil(l0 * numel), n_neurons * min_per_neuron))


# Above this fraction kept, a plain top-k over all entries is as cheap as pre-selecting candidates.
_CANDIDATE_MAX_FRAC = 0.25
# Entries in the strided sample that estimates the candidate threshold.
_SAMPLE = 8192


def _top_indices(score: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k largest entries of the 1-D ``score``: the same set as ``score.topk(k)`` when the
    k-th largest value is not tied.

    For small k a full top-k is wasteful: a strided sample (no random numbers, so training's RNG is untouched)
    gives a threshold that about 1.25 k entries pass; the top k among those candidates are the top k of all,
    because at least k entries pass it. If fewer than k pass, the plain top-k runs.
    """
    n = score.numel()
    if k > _CANDIDATE_MAX_FRAC * n or n < 4 * _SAMPLE:
        return score.topk(k, sorted=False).indices
    sample = score[:: n // _SAMPLE]
    frac = min(1.0, 1.25 * k / n + 32 / sample.numel())  # margin: well above the sample's own noise
    rank = max(1, sample.numel() - int(frac * sample.numel()))
    cut = sample.kthvalue(rank).values
    cand = (score >= cut).nonzero().squeeze(1)
    if cand.numel() < k:
        return score.topk(k, sorted=False).indices
    return cand[score[cand].topk(k, sorted=False).indices]


def _kept_indices(w: torch.Tensor, l0: float, neuron_axis: str | None, min_per_neuron: int) -> torch.Tensor:
    """Flat indices of the entries the projection keeps (see ``topk_mask``)."""
    score = w.detach().abs().float()  # a fresh tensor, so the in-place scatter below leaves w alone
    n_neurons = 0
    if neuron_axis is not None:
        dim = {"row": 1, "col": 0}[neuron_axis]
        n_neurons = w.shape[1 - dim]
        m = min(min_per_neuron, w.shape[dim])
        idx = score.topk(m, dim=dim).indices
        score.scatter_(dim, idx, float("inf"))  # guaranteed entries outrank every other
    k = n_keep(w.numel(), l0, n_neurons, min_per_neuron)
    return _top_indices(score.view(-1), k)


@torch.no_grad()
def topk_mask(
    w: torch.Tensor, l0: float, neuron_axis: str | None, min_per_neuron: int = MIN_PER_NEURON
) -> torch.Tensor:
    """Boolean mask of the entries kept by the projection of ``w`` onto its top-k entries by |w|.

    Each neuron's own top ``min_per_neuron`` entries are kept first ("row": per row, "col": per column),
    then the largest remaining entries fill the budget k, so the mask has exactly ``n_keep(...)`` entries.
    """
    if l0 >= 1.0:
        return torch.ones_like(w, dtype=torch.bool)
    mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    mask[_kept_indices(w, l0, neuron_axis, min_per_neuron)] = True
    return mask.view_as(w)


@torch.no_grad()
def project_(w: torch.Tensor, l0: float, neuron_axis: str | None, min_per_neuron: int = MIN_PER_NEURON) -> torch.Tensor:
    """Zero every entry outside the top-k mask, in place (with +0.0, so checkpoints round-trip bitwise)."""
    if l0 < 1.0:
        flat = w.view(-1)
        idx = _kept_indices(w, l0, neuron_axis, min_per_neuron)
        kept = flat[idx]
        flat.zero_()  # writes +0.0 everywhere
        flat[idx] = kept
    return w


def l0_at(progress: float, target: float, schedule: str = "linear", start: float = 0.01, end: float = 0.5) -> float:
    """L0 (fraction of nonzero weights) at a point of training: 1 before ``start``, ``target`` after ``end``.

    ``progress`` is step / total_steps. Between start and end it anneals linearly from 1 to the target, or
    exponentially as target ** p (p the fraction of the annealing done). Unknown schedule names are errors.
    """
    if schedule not in L0_SCHEDULES:
        raise ValueError(f"unknown l0_schedule {schedule!r}; allowed: {list(L0_SCHEDULES)}")
    if target >= 1.0:
        return 1.0
    p = min(1.0, max(0.0, (progress - start) / (end - start)))
    if schedule == "linear":
        return 1.0 + (target - 1.0) * p
    return target**p


def lr_at(step: int, total_steps: int, base_lr: float, l0: float, warmup_frac: float = 0.01) -> float:
    """Warmup over the first ``warmup_frac`` of steps, then linear decay to 0, times the sharkfin 1/sqrt(L0)."""
    warmup = max(1, round(warmup_frac * total_steps))
    shape = (step + 1) / warmup if step < warmup else max(0.0, (total_steps - step) / (total_steps - warmup))
    return base_lr * shape / math.sqrt(l0)


@torch.no_grad()
def normalize_grad_rms_(params) -> float:
    """Rescale all gradients together so that their RMS over every parameter is 1; returns the old RMS."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    sq = torch.stack([g.float().pow(2).sum() for g in grads]).sum()
    rms = (sq / sum(g.numel() for g in grads)).sqrt()
    if rms > 0:
        for g in grads:
            g.div_(rms.to(g.dtype))
    return float(rms)
