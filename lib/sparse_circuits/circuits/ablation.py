"""Ablation values for pruned nodes (SPEC section 5): zero, mean, or resample.

Means and resampled activations come from pretraining-corpus text run through the actual model, AbsTopK
included (computing them without it would describe a different network).
"""

from __future__ import annotations

import torch

from ..core.seeds import derived_seed
from ..data.batches import BatchStream
from ..data.corpus import CorpusConfig
from ..model.gpt import SparseGPT
from .masking import NodeLayout

ABLATIONS = ("zero", "mean", "resample")


def check_ablation(name: str) -> str:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; allowed: {list(ABLATIONS)}")
    return name


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> [B, T, width]."""
    return x.reshape(x.shape[0], x.shape[1], -1)


@torch.no_grad()
def node_means(model: SparseGPT, layout: NodeLayout, tokenizer, corpus: CorpusConfig | None = None,
               n_batches: int = 16, batch_size: int = 32) -> dict[str, torch.Tensor]:  # fmt: skip
    """Mean activation of every node over held-out pretraining tokens: hook name -> [width]."""
    corpus = corpus or CorpusConfig()
    device = next(model.parameters()).device
    stream = BatchStream(corpus, tokenizer, model.cfg.n_ctx, batch_size, "val")
    names = [s.hook for s in layout.slices]
    sums = {n: 0.0 for n in names}
    count = 0
    for i in range(n_batches):
        rows = stream.batch(derived_seed("means", i) % 10**9).to(device)[:, :-1]
        _, cache = model.run_with_cache(rows, names_filter=names)
        for n in names:
            sums[n] = sums[n] + _flat(cache[n]).double().sum((0, 1))
        count += rows.shape[0] * rows.shape[1]
    return {n: (s / count).float() for n, s in sums.items()}


class Resampler:
    """Activations of corpus rows (cut to the prompt length) to stand in for ablated nodes."""

    def __init__(self, model: SparseGPT, layout: NodeLayout, tokenizer, corpus: CorpusConfig | None = None) -> None:
        self.model, self.layout = model, layout
        self.stream = BatchStream(corpus or CorpusConfig(), tokenizer, model.cfg.n_ctx, 1, "val")
        self.names = [s.hook for s in layout.slices]
        self._rows: dict[int, torch.Tensor] = {}

    def rows(self, seeds: list[int], n_per_seed: int, length: int, step: int) -> torch.Tensor:
        """[len(seeds) * n_per_seed, length] corpus rows, reproducible per (seed, step)."""
        out = []
        for s in seeds:
            key = derived_seed("resample", s, step) % 10**9
            self.stream.batch_size = n_per_seed
            out.append(self.stream.batch(key)[:, :length])
        return torch.cat(out)

    @torch.no_grad()
    def values(self, seeds: list[int], n_per_seed: int, length: int, step: int,
               at: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Node activations on corpus rows; pass the ``at`` the masked forward pass uses, so shapes match."""
        device = next(self.model.parameters()).device
        rows = self.rows(seeds, n_per_seed, length, step).to(device)
        if rows.shape[1] < length:
            raise ValueError(f"prompts of {length} tokens are longer than the corpus rows ({rows.shape[1]})")
        _, cache = self.model.run_with_cache(rows, names_filter=self.names, at=at)
        return {n: _flat(cache[n]) for n in self.names}
