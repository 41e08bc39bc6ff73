"""Ablation values for pruned nodes (docs/method.md, Pruning): zero, mean, or resample.

Means and resampled activations come from held-out text of the model's own pretraining corpus (``model.corpus``,
recorded when the model is loaded), run through the actual model, AbsTopK included (computing them without it
would describe a different network).
"""

from __future__ import annotations

import torch

from ..core.seeds import derived_seed
from ..data.batches import BatchStream
from ..data.sources import CorpusConfig
from ..model.gpt import SparseGPT
from ..model.inference import model_corpus
from ..tasks import TaskData
from .layout import NodeLayout

ABLATIONS = ("zero", "mean", "resample")
# Held-out rows read once from a real (finite) corpus, from which keyed draws pick their rows.
POOL_ROWS = 1024


def check_ablation(name: str) -> str:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; allowed: {list(ABLATIONS)}")
    return name


class HeldOutRows:
    """Held-out corpus rows drawn by a key, reproducibly.

    The synthetic corpus generates the val batch numbered ``key`` (any key is cheap to make). A real corpus is
    read in order, so reaching batch ``key`` would mean reading every batch before it: instead its first
    ``pool_rows`` (default ``POOL_ROWS``) held-out rows are read once and each draw picks its rows from them with a generator seeded by
    the key.
    """

    def __init__(self, corpus: CorpusConfig, tokenizer, n_ctx: int, pool_rows: int | None = None) -> None:
        self.corpus, self.tokenizer, self.n_ctx = corpus, tokenizer, n_ctx
        self.pool_rows = pool_rows or POOL_ROWS
        self._pool: torch.Tensor | None = None  # [pool_rows, n_ctx + 1], read on the first draw

    def rows(self, key: int, n: int) -> torch.Tensor:
        """[n, n_ctx + 1] token rows for ``key``."""
        if self.corpus.source == "synthetic":
            return BatchStream(self.corpus, self.tokenizer, self.n_ctx, n, "val").batch(key)
        if self._pool is None:
            self._pool = BatchStream(self.corpus, self.tokenizer, self.n_ctx, self.pool_rows, "val").batch(0)
        pick = torch.randint(len(self._pool), (n,), generator=torch.Generator().manual_seed(key))
        return self._pool[pick]


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> [B, T, width]."""
    return x.reshape(x.shape[0], x.shape[1], -1)


@torch.no_grad()
def node_means(
    model: SparseGPT,
    layout: NodeLayout,
    tokenizer,
    corpus: CorpusConfig | None = None,
    n_batches: int = 16,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Mean activation of every node over held-out pretraining tokens: hook name -> [width]."""
    device = next(model.parameters()).device
    held_out = HeldOutRows(model_corpus(model, corpus), tokenizer, model.cfg.n_ctx)
    names = [s.hook for s in layout.slices]
    sums = {n: 0.0 for n in names}
    count = 0
    for i in range(n_batches):
        rows = held_out.rows(derived_seed("means", i) % 10**9, batch_size).to(device)[:, :-1]
        _, cache = model.run_with_cache(rows, names_filter=names)
        for n in names:
            sums[n] = sums[n] + _flat(cache[n]).double().sum((0, 1))
        count += rows.shape[0] * rows.shape[1]
    return {n: (s / count).float() for n, s in sums.items()}


class Resampler:
    """Activations of held-out corpus rows (cut to the prompt length) to stand in for ablated nodes."""

    def __init__(self, model: SparseGPT, layout: NodeLayout, tokenizer, corpus: CorpusConfig | None = None) -> None:
        self.model, self.layout = model, layout
        self.held_out = HeldOutRows(model_corpus(model, corpus), tokenizer, model.cfg.n_ctx)
        self.names = [s.hook for s in layout.slices]

    def rows(self, seeds: list[int], n_per_seed: int, length: int, step: int) -> torch.Tensor:
        """[len(seeds) * n_per_seed, length] corpus rows, reproducible per (seed, step)."""
        keys = [derived_seed("resample", s, step) % 10**9 for s in seeds]
        return torch.cat([self.held_out.rows(key, n_per_seed)[:, :length] for key in keys])

    @torch.no_grad()
    def values(
        self, seeds: list[int], n_per_seed: int, length: int, step: int, at: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Node activations on corpus rows; pass the ``at`` the masked forward pass uses, so shapes match."""
        device = next(self.model.parameters()).device
        rows = self.rows(seeds, n_per_seed, length, step).to(device)
        if rows.shape[1] < length:
            raise ValueError(f"prompts of {length} tokens are longer than the corpus rows ({rows.shape[1]})")
        _, cache = self.model.run_with_cache(rows, names_filter=self.names, at=at)
        return {n: _flat(cache[n]) for n in self.names}


class Ablation:
    """Where one model's ablated nodes take their values from: zero, held-out means, or resampled activations.

    ``means``: node means of this model computed earlier (mean ablation), to skip recomputing them.
    """

    def __init__(
        self,
        model: SparseGPT,
        layout: NodeLayout,
        tokenizer,
        kind: str,
        corpus: CorpusConfig | None = None,
        means: dict | None = None,
    ) -> None:
        self.kind = check_ablation(kind)
        self.means = None
        if kind == "mean":
            self.means = means if means is not None else node_means(model, layout, tokenizer, corpus)
        self.resampler = Resampler(model, layout, tokenizer, corpus) if kind == "resample" else None

    def values(self, seeds: list[int], data: TaskData, step: int, at_answer: bool = True):
        """Values for a masked pass over ``data``, which holds one block of prompts per seed (resample draws block
        i's corpus rows from (seeds[i], step)); shaped for the answer-position forward (``at=``) or, with
        ``at_answer=False``, the full forward. None means zero ablation."""
        if self.kind == "mean":
            return self.means
        if self.kind == "resample":
            at = data.last if at_answer else None
            return self.resampler.values(seeds, len(data) // len(seeds), data.tokens.shape[1], step, at=at)
        return None


def resolve_ablation(
    model: SparseGPT, tok, kind: str, data: TaskData, means: dict | None = None, corpus: CorpusConfig | None = None
) -> dict[str, torch.Tensor] | None:
    """Ablation values of one kind on these prompts, for a full forward pass (None means zero)."""
    return Ablation(model, NodeLayout(model), tok, kind, corpus, means).values([0], data, -1, at_answer=False)
