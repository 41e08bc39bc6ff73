"""A task's prompts: its slot values divided into train / val / test, the seeded prompt pool of each split,
and the prompts as padded token tensors (``TaskData``)."""

from __future__ import annotations

import dataclasses
import random
import warnings
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..core.seeds import derived_seed
from ..data.tokenizer import UNK, answer_token_id, encode, encode_batch, eos_id, is_word_level, unk_id
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


def divide(values: list[str], seed: int) -> tuple[list[str], list[str], list[str]]:
    """Train, val and test parts of ``values``: sorted, shuffled with ``seed`` and divided 50/25/25; fewer than three
    values are not divided (every split gets them all)."""
    if len(values) < 3:
        return values, values, values
    vals = sorted(values)
    random.Random(seed).shuffle(vals)
    n_train = max(1, round(SPLIT_FRACTIONS[0] * len(vals)))
    n_val = max(1, round(SPLIT_FRACTIONS[1] * len(vals)))
    return vals[:n_train], vals[n_train : n_train + n_val], vals[n_train + n_val :]


class Task:
    """A TaskSpec with its splits and prompt pools."""

    def __init__(self, spec: TaskSpec, pool_size: int = 4096) -> None:
        self.spec, self.pool_size = spec, pool_size

    name = property(lambda self: self.spec.name)
    loss = property(lambda self: self.spec.loss)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, loss={self.loss!r})"

    def with_names_split(self) -> Task:
        """This task with its names divided into train/val/test too (``TaskSpec.split_names``)."""
        return Task(dataclasses.replace(self.spec, split_names=True), self.pool_size)

    @cached_property
    def name_split(self) -> dict[str, set[str]]:
        """split -> its names (with ``split_names``): the values of every name slot, divided 50/25/25 within each
        answer when a name slot is the target slot, so every split has every answer. The seed is the family's and the
        group's, so tasks of a family whose answers group the names alike (pronoun, nonsense) share the split."""
        spec = self.spec
        names = sorted({v for s in spec.name_slots for v in spec.slots[s]})
        answer_of = spec.target["map"] if spec.target.get("slot") in spec.name_slots else {}
        out = {s: set() for s in SPLITS}
        for answer in sorted({answer_of.get(n, "") for n in names}):
            group = [n for n in names if answer_of.get(n, "") == answer]
            seed = derived_seed("split", spec.family, "names", *group)  # tasks dividing names alike share a split
            for split, part in zip(SPLITS, divide(group, seed)):
                out[split].update(part)
        return out

    @cached_property
    def split_values(self) -> dict[str, dict[str, list[str]]]:
        """split -> slot -> values. Split slots are shuffled with a seed of the family and divided 50/25/25; with
        ``split_names`` the name slots take their split's names (``name_split``)."""
        out = {s: {} for s in SPLITS}
        for slot, values in self.spec.slots.items():
            values = list(dict.fromkeys(values))
            if self.spec.split_names and slot in self.spec.name_slots:
                parts = tuple([v for v in values if v in self.name_split[split]] for split in SPLITS)
            elif slot in self.spec.split_slots:
                parts = divide(values, derived_seed("split", self.spec.family, slot))
            else:
                parts = (values, values, values)
            for split, part in zip(SPLITS, parts):
                out[split][slot] = part
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

    def check_vocabulary(self, tokenizer) -> dict[str, list[str]]:
        """Check the spec's words against the tokenizer; returns the slot values left out (slot -> values).

        Word-level: every slot word and answer must be a known single token (nothing is left out). Subword:
        prompt words may span several tokens but not contain unknown ones; answers must be single tokens, and a
        slot value whose answer is not is left out, with a warning naming it.
        """
        if is_word_level(tokenizer):
            self._check_word_level(tokenizer)
            return {}
        unk = unk_id(tokenizer)
        for slot, values in self.spec.slots.items():
            for v in values:
                if unk is not None and unk in encode(tokenizer, v):
                    raise TaskSpecError(
                        f"task {self.name!r}: slots.{slot} word {v!r} has a token outside the vocabulary"
                    )
        left_out: dict[str, list[str]] = {}
        rules = [("target", self.spec.target), ("incorrect", self.spec.incorrect)]
        for fld, rule in rules if self.spec.incorrect else rules[:1]:
            if "slot" in rule and self.spec.incorrect is not None:
                for value, answer in rule["map"].items():
                    if not self._single_token(tokenizer, answer):
                        left_out.setdefault(rule["slot"], []).append(value)
                continue
            # A constant answer, or a label that is every other prompt's incorrect answer: must be one token.
            for answer in TaskSpec._rule_tokens(rule):
                if not self._single_token(tokenizer, answer):
                    raise TaskSpecError(f"task {self.name!r}: {fld} token {answer!r} is not a single token")
        if left_out:
            warnings.warn(
                f"task {self.name!r}: left out slot values whose answer is not a single token: {left_out}",
                stacklevel=2,
            )
        return left_out

    @staticmethod
    def _single_token(tokenizer, word: str) -> bool:
        try:
            answer_token_id(tokenizer, word)
        except ValueError:
            return False
        return True

    def _check_word_level(self, tokenizer) -> None:
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
        left_out = self.check_vocabulary(tokenizer)
        assigns = [a for a in self.assignments(split) if not any(a[s] in v for s, v in left_out.items())][:n]
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
    eos = eos_id(tokenizer)
    rows = [[eos, *ids] for ids in encode_batch(tokenizer, texts)]
    T = max(map(len, rows))
    tokens = torch.full((len(rows), T), eos, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    # a pool has thousands of prompts but few answer words; looking each up reads the whole vocabulary
    answer_ids = {w: answer_token_id(tokenizer, w) for w in {*correct, *incorrect}}
    return TaskData(
        tokens,
        torch.tensor([len(r) - 1 for r in rows]),
        torch.tensor([answer_ids[c] for c in correct]),
        torch.tensor([answer_ids[c] for c in incorrect]),
        list(texts),
        list(assigns),
    )
