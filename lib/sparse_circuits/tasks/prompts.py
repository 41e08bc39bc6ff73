"""A task's prompts: its slot values divided into train / val / test, the seeded prompt pool of each split,
and the prompts as padded token tensors (``TaskData``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..core.seeds import derived_seed
from ..data.tokenizer import EOS, UNK
from .spec import TaskSpec, TaskSpecError

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)


@dataclass
class TaskData:
    """Prompts as tensors: tokens [N, T] (<eos> + prompt, right-padded), ``last`` [N] the answer position."""

    tokens: torch.Tensor
    last: torch.Tensor
    correct: torch.Tensor
    incorrect: torch.Tensor
    texts: list[str]
    assignments: list[dict]

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device) -> TaskData:
        return TaskData(
            self.tokens.to(device),
            self.last.to(device),
            self.correct.to(device),
            self.incorrect.to(device),
            self.texts,
            self.assignments,
        )

    def index(self, idx) -> TaskData:
        idx = torch.as_tensor(idx, dtype=torch.long)
        ids = idx.tolist()
        t = self.tokens[idx]
        width = int(self.last[idx].max()) + 1 if len(ids) else 1
        return TaskData(
            t[:, :width],
            self.last[idx],
            self.correct[idx],
            self.incorrect[idx],
            [self.texts[i] for i in ids],
            [self.assignments[i] for i in ids],
        )

    @staticmethod
    def cat(parts: list[TaskData]) -> TaskData:
        T = max(p.tokens.shape[1] for p in parts)
        toks = torch.cat([F.pad(p.tokens, (0, T - p.tokens.shape[1])) for p in parts])
        return TaskData(
            toks,
            torch.cat([p.last for p in parts]),
            torch.cat([p.correct for p in parts]),
            torch.cat([p.incorrect for p in parts]),
            sum((p.texts for p in parts), []),
            sum((p.assignments for p in parts), []),
        )


class Task:
    """A TaskSpec with its splits and prompt pools."""

    def __init__(self, spec: TaskSpec, pool_size: int = 4096) -> None:
        self.spec, self.pool_size = spec, pool_size

    name = property(lambda self: self.spec.name)
    loss = property(lambda self: self.spec.loss)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, loss={self.loss!r})"

    @cached_property
    def split_values(self) -> dict[str, dict[str, list[str]]]:
        """split -> slot -> values. Split slots are shuffled with a seed of the family and divided 50/25/25."""
        out = {s: {} for s in SPLITS}
        for slot, values in self.spec.slots.items():
            values = list(dict.fromkeys(values))
            if slot in self.spec.split_slots and len(values) >= 3:
                vals = sorted(values)
                random.Random(derived_seed("split", self.spec.family, slot)).shuffle(vals)
                n_train = max(1, round(SPLIT_FRACTIONS[0] * len(vals)))
                n_val = max(1, round(SPLIT_FRACTIONS[1] * len(vals)))
                parts = (vals[:n_train], vals[n_train : n_train + n_val], vals[n_train + n_val :])
                for split, part in zip(SPLITS, parts):
                    out[split][slot] = part
            else:
                for split in SPLITS:
                    out[split][slot] = values
        return out

    def assignments(self, split: str) -> list[dict]:
        """The prompt pool of a split: every slot combination, or a seeded sample of pool_size of them."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        values = self.split_values[split]
        slots = list(values)
        total = 1
        for s in slots:
            total *= len(values[s])
        rng = random.Random(derived_seed("pool", self.name, split))
        if total <= self.pool_size * 2:
            combos = [{}]
            for s in slots:
                combos = [{**c, s: v} for c in combos for v in values[s]]
            combos = [c for c in combos if self._ok(c)]
            rng.shuffle(combos)
            return combos[: self.pool_size]
        seen, out = set(), []
        for _ in range(self.pool_size * 50):
            c = {s: rng.choice(values[s]) for s in slots}
            key = tuple(c[s] for s in slots)
            if key not in seen and self._ok(c):
                seen.add(key)
                out.append(c)
                if len(out) == self.pool_size:
                    break
        return out

    def _ok(self, c: dict) -> bool:
        if any(len({c[s] for s in group}) < len(group) for group in self.spec.distinct):
            return False
        return self.spec.constraint is None or self.spec.constraint(c)

    def prompt_text(self, assignment: dict) -> str:
        return self.spec.template.format(**assignment)

    def check_vocabulary(self, tokenizer) -> None:
        """Every slot word and target token must be known single tokens of the tokenizer."""
        vocab = tokenizer.get_vocab()
        for slot, values in self.spec.slots.items():
            for v in values:
                for w in tokenizer.encode(v).tokens:
                    if w not in vocab or w == UNK:
                        raise TaskSpecError(f"task {self.name!r}: slots.{slot} word {v!r} is outside the vocabulary")
        for fld, rule in (("target", self.spec.target), ("incorrect", self.spec.incorrect)):
            for tok in TaskSpec._rule_tokens(rule) if rule else []:
                if tok not in vocab:
                    raise TaskSpecError(
                        f"task {self.name!r}: {fld} token {tok!r} is not a single token of the vocabulary"
                    )

    def data(self, split: str, tokenizer, n: int | None = None) -> TaskData:
        """The first ``n`` prompts of a split's (fixed, seeded) pool as tensors."""
        self.check_vocabulary(tokenizer)
        assigns = self.assignments(split)[:n]
        if not assigns:
            raise ValueError(f"task {self.name!r} has no prompts in split {split!r}")
        return encode_prompts(
            tokenizer,
            [self.prompt_text(a) for a in assigns],
            assigns,
            [self.spec.correct_of(a) for a in assigns],
            [self.spec.incorrect_of(a) for a in assigns],
        )


def encode_prompts(tokenizer, texts, assigns, correct, incorrect) -> TaskData:
    """Prompt texts (with their slot assignments and correct / incorrect answer words) as a ``TaskData``."""
    eos = tokenizer.token_to_id(EOS)
    rows = [[eos, *e.ids] for e in tokenizer.encode_batch(texts)]
    T = max(map(len, rows))
    tokens = torch.full((len(rows), T), eos, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    vocab = tokenizer.get_vocab()
    return TaskData(
        tokens,
        torch.tensor([len(r) - 1 for r in rows]),
        torch.tensor([vocab[c] for c in correct]),
        torch.tensor([vocab[c] for c in incorrect]),
        list(texts),
        list(assigns),
    )
