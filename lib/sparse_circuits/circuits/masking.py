"""Node masks applied through hook points (docs/method.md, Pruning): value = a + m * (x - a).

A mask over all nodes (``layout.NodeLayout`` order) is one tensor ``[S, N]``: S independent masks, e.g. seeds,
share one forward pass, the batch being S blocks of B rows.
``masked(...)`` runs the model with such masks, any ablation values, and optionally frozen norm scales.
"""

from __future__ import annotations

import contextlib

import torch

from ..model.gpt import SparseGPT
from ..model.names import NORM_SCALES
from .layout import NodeLayout


def topk_masks(tau: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[S, N] logits, [S] counts -> [S, N] 0/1 masks keeping each row's k highest logits (ties by index)."""
    order = tau.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(tau.shape[1], device=tau.device).expand_as(order))
    return (ranks < k[:, None].to(tau.device)).to(tau.dtype)


def _blocked(x: torch.Tensor, n_masks: int) -> torch.Tensor:
    """[S*B, T, *site] -> [S, B, T, width] (q/k/v heads flattened)."""
    return x.reshape(n_masks, x.shape[0] // n_masks, x.shape[1], -1)


def mask_hook(mask: torch.Tensor, ablation: torch.Tensor | None):
    """Hook computing a + m (x - a) with m [S, width]; ablation None (zero), [width] (mean) or like x (resample)."""

    def hook(x: torch.Tensor, _hook) -> torch.Tensor:
        S = mask.shape[0]
        if x.shape[0] % S:
            raise ValueError(f"batch of {x.shape[0]} rows is not a multiple of the {S} masks")
        xb = _blocked(x, S)
        m = mask[:, None, None, :].to(x.dtype)
        if ablation is None:
            out = xb * m
        else:
            a = ablation.to(x.dtype)
            if a.dim() > 1 and a.shape[:2] != x.shape[:2]:
                raise ValueError(
                    f"ablation values for {_hook.name} have shape {tuple(a.shape)} but the activation is "
                    f"{tuple(x.shape)}: per-position (resample) values must come from a forward pass of the same "
                    f"shape (use the same at= in Resampler.values as in the masked pass, or run the full forward)"
                )
            a = _blocked(a, S) if a.dim() > 1 else a
            out = a + m * (xb - a)
        return out.reshape(x.shape)

    return hook


def frozen_scale_hooks(scales: dict[str, torch.Tensor]):
    """Hooks replacing every norm's RMS by the one recorded in the unpruned model (frozen layernorm)."""

    def replace_with(scale: torch.Tensor):
        return lambda x, hook: scale.to(x.dtype)

    return [(name, replace_with(scale)) for name, scale in scales.items()]


@torch.no_grad()
def record_norm_scales(
    model: SparseGPT, tokens: torch.Tensor, at: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The RMS every norm divides by, in the unpruned model on these tokens (AbsTopK included).

    Pass the same ``at`` as the pruned forward pass will get, so the final norm's scales match its positions.
    """
    _, cache = model.run_with_cache(tokens, names_filter=NORM_SCALES, at=at)
    return cache


@contextlib.contextmanager
def masked(
    model: SparseGPT,
    layout: NodeLayout,
    mask: torch.Tensor,
    ablation: dict[str, torch.Tensor] | None = None,
    norm_scales: dict[str, torch.Tensor] | None = None,
    extra_hooks=(),
):
    """Run ``model`` with node mask ``[S, N]`` (1 keeps, 0 ablates, in between mixes).

    ablation: hook name -> value ([width] mean, or activations shaped like the hook's input); None or a
    missing name means zero ablation. norm_scales: frozen norm RMS values (see record_norm_scales).
    """
    if mask.dim() != 2 or mask.shape[1] != layout.n_nodes:
        raise ValueError(f"mask must be [n_masks, {layout.n_nodes}], got {tuple(mask.shape)}")
    ablation = ablation or {}
    hooks = [(name, mask_hook(m, ablation.get(name))) for name, m in layout.split(mask).items()]
    if norm_scales:
        hooks += frozen_scale_hooks(norm_scales)
    with model.hooks([*hooks, *extra_hooks]):
        yield model


@contextlib.contextmanager
def weights_frozen(model: SparseGPT):
    """Within the block no model parameter requires gradients (only masks are learned); on exit each parameter's
    ``requires_grad`` is what it was before."""
    before = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in before:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in before:
            p.requires_grad_(flag)
