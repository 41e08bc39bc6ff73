"""Node masks applied through hook points (SPEC section 5): value = a + m * (x - a).

A *node* is one scalar channel at one of the 8 sites of a layer (``NODE_SITES``); a layer has 11 * d_model
of them. ``NodeLayout`` gives every node a flat index, so that a mask over all nodes is one tensor
``[S, N]`` (S independent masks, e.g. seeds, sharing one forward pass: the batch is S blocks of B rows).
``masked(...)`` runs the model with such masks, any ablation values, and optionally frozen norm scales.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..model.gpt import NODE_SITES, SparseGPT

NORM_SCALE_HOOKS = "*hook_scale"


@dataclass(frozen=True)
class SiteSlice:
    layer: int
    site: str
    hook: str
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


class NodeLayout:
    """Flat indexing of every node of a model: layer-major, then NODE_SITES order, then channel."""

    def __init__(self, model: SparseGPT) -> None:
        self.slices: list[SiteSlice] = []
        start = 0
        for layer in range(model.cfg.n_layer):
            hooks = model.node_hook_names(layer)
            for site in NODE_SITES:
                w = model.site_width(site)
                self.slices.append(SiteSlice(layer, site, hooks[site], start, w))
                start += w
        self.n_nodes = start
        self.n_head, self.d_head = model.cfg.n_head, model.cfg.d_head
        self.by_key = {(s.layer, s.site): s for s in self.slices}

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[..., N] -> {hook name: [..., width]}."""
        return {s.hook: flat[..., s.start : s.stop] for s in self.slices}

    def sl(self, layer: int, site: str) -> slice:
        s = self.by_key[(layer, site)]
        return slice(s.start, s.stop)

    def describe(self, index: int) -> tuple[int, str, int]:
        """(layer, site, channel) of a flat node index."""
        for s in self.slices:
            if s.start <= index < s.stop:
                return s.layer, s.site, index - s.start
        raise IndexError(f"node index {index} out of range (model has {self.n_nodes} nodes)")

    def label(self, index: int) -> str:
        layer, site, ch = self.describe(index)
        if site in ("q", "k", "v"):
            return f"L{layer}.{site}.h{ch // self.d_head}.{ch % self.d_head}"
        return f"L{layer}.{site}.{ch}"

    def site_of_all(self) -> list[tuple[int, str]]:
        return [(s.layer, s.site) for s in self.slices for _ in range(s.width)]


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
    _, cache = model.run_with_cache(tokens, names_filter=NORM_SCALE_HOOKS, at=at)
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
