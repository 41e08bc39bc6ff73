"""Token batches for language-model training, reproducible step by step.

Every row starts at a story boundary with <eos> (the same context a task prompt gets) and is filled with
whole stories, the last one cut at n_ctx + 1 tokens. For the synthetic corpus batch ``i`` is generated
from its own seed, so a resumed run sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..core.seeds import derived_seed
from .generator import StoryGenerator
from .sources import CorpusConfig, iter_texts
from .tokenizer import encode_batch, eos_id


def pack_rows(texts: Iterator[str], tokenizer, n_rows: int, row_len: int, chunk: int = 64) -> torch.Tensor:
    """[n_rows, row_len] int64: each row <eos> story <eos> story ..., stopping at row_len tokens."""
    eos = eos_id(tokenizer)
    rows: list[list[int]] = []
    current: list[int] = []
    while len(rows) < n_rows:
        batch = [next(texts) for _ in range(chunk)]
        for ids in encode_batch(tokenizer, batch):
            current.extend([eos, *ids])
            if len(current) >= row_len:
                rows.append(current[:row_len])
                current = []  # the cut story's tail is dropped so the next row starts at a boundary
                if len(rows) == n_rows:
                    break
    return torch.tensor(rows, dtype=torch.long)


class BatchStream:
    """``batch(step)`` -> [batch_size, n_ctx + 1] token rows; inputs are [:, :-1], targets [:, 1:]."""

    def __init__(self, corpus: CorpusConfig, tokenizer, n_ctx: int, batch_size: int, stream: str = "train") -> None:
        if stream not in ("train", "val"):
            raise ValueError(f"stream must be 'train' or 'val', got {stream!r}")
        self.corpus, self.tokenizer = corpus, tokenizer
        self.n_ctx, self.batch_size, self.stream = n_ctx, batch_size, stream
        self._texts: Iterator[str] | None = None
        self._next_step = 0

    def batch(self, step: int) -> torch.Tensor:
        if self.corpus.source == "synthetic":
            seed = derived_seed(self.corpus.seed, self.stream, step)
            texts = iter(StoryGenerator(seed, variant=self.corpus.variant))
        else:
            # A finite real dataset is read in order; to reach step i, read (and drop) the batches before it.
            if self._texts is None or step < self._next_step:
                self._texts, self._next_step = iter_texts(self.corpus, self.stream), 0
            while self._next_step < step:
                pack_rows(self._texts, self.tokenizer, self.batch_size, self.n_ctx + 1)
                self._next_step += 1
            texts = self._texts
            self._next_step = step + 1
        return pack_rows(texts, self.tokenizer, self.batch_size, self.n_ctx + 1)
