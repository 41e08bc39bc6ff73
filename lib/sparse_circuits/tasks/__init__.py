"""Binary next-token tasks (SPEC section 4): a prompt, a correct next token and an incorrect one.

Every task, built in or user-defined, is a declarative ``TaskSpec``: a template with slots, word lists for
the slots, a rule for the correct (and incorrect) token, and a loss ("full": cross-entropy over the whole
vocabulary; "binary": cross-entropy over just the two candidates). Values of the ``split_slots`` (the
templates: actions, situations, sentences) are divided into train / val / test, shared by every task of a
family, so a circuit pruned on one split is judged on prompts it never saw.

    task = get_task("ioi")                  # opposite-gender IOI, the pruning set
    data = task.data("test", tokenizer)     # fixed, seeded evaluation prompts as padded tensors
    evaluate(model, data, task.loss)        # accuracy, p_correct, loss
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.seeds import derived_seed
from ..data import corpus
from ..data.tokenizer import EOS, UNK

LOSSES = ("full", "binary")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)
_SLOT_RE = re.compile(r"\{(\w+)\}")


class TaskSpecError(ValueError):
    """A task spec is malformed; the message names the field at fault."""


@dataclass
class TaskSpec:
    """A binary next-token task, declared as data (a dict or YAML file works the same way).

    Example::

        name: pronoun
        template: "when {name} {action},"
        slots: {name: [leo, mia], action: [ran to the beach, climbed the tree]}
        target: {slot: name, map: {leo: he, mia: she}}
        loss: full
    """

    name: str
    template: str
    """Prompt text with {slot} fields; the model is asked for the token after it."""
    slots: dict[str, list[str]]
    """Values of each slot."""
    target: dict
    """Correct token: {"slot": s, "map": {value: token}} or {"constant": token}."""
    incorrect: dict | None = None
    """Incorrect token, same forms as target; default: the other of exactly two target tokens."""
    loss: str = "full"
    """"full" (cross-entropy over the vocabulary) or "binary" (over the correct and incorrect tokens)."""
    split_slots: list[str] | None = None
    """Slots whose values are divided into train/val/test; default: every slot the target does not read."""
    distinct: list[list[str]] = field(default_factory=list)
    """Groups of slots that must take different values in one prompt (e.g. [[name_1, name_2]])."""
    family: str | None = None
    """Tasks of one family share their template splits (default: the task's name)."""
    description: str = ""
    constraint: Callable[[dict], bool] | None = None
    """(Python only) keep a prompt's slot assignment only if this returns True."""

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not self.template.strip():
            raise TaskSpecError(f"task {self.name!r}: template must be a non-empty string")
        used = _SLOT_RE.findall(self.template)
        if not isinstance(self.slots, dict) or not self.slots:
            raise TaskSpecError(f"task {self.name!r}: slots must be a non-empty mapping of slot name -> list of words")
        for s in used:
            if s not in self.slots:
                raise TaskSpecError(
                    f"task {self.name!r}: template uses unknown slot {{{s}}}; slots: {sorted(self.slots)}"
                )
        for s, values in self.slots.items():
            if s not in used:
                raise TaskSpecError(f"task {self.name!r}: slots.{s} is not used in the template")
            if not isinstance(values, list | tuple) or not values:
                raise TaskSpecError(f"task {self.name!r}: slots.{s} must be a non-empty list")
        if self.loss not in LOSSES:
            raise TaskSpecError(f"task {self.name!r}: unknown loss {self.loss!r}; allowed: {list(LOSSES)}")
        self._check_rule("target", self.target)
        if self.incorrect is not None:
            self._check_rule("incorrect", self.incorrect)
        elif len(self.labels) != 2:
            raise TaskSpecError(
                f"task {self.name!r}: incorrect is required unless the target has exactly two tokens (has {self.labels})"
            )
        for group in self.distinct:
            for s in group:
                if s not in self.slots:
                    raise TaskSpecError(f"task {self.name!r}: distinct names unknown slot {s!r}")
        if self.split_slots is None:
            self.split_slots = [s for s in self.slots if s != self.target.get("slot")]
        for s in self.split_slots:
            if s not in self.slots:
                raise TaskSpecError(f"task {self.name!r}: split_slots names unknown slot {s!r}")
        self.family = self.family or self.name

    def _check_rule(self, fld: str, rule) -> None:
        if not isinstance(rule, dict) or not ({"slot", "map"} <= set(rule) or "constant" in rule):
            raise TaskSpecError(f"task {self.name!r}: {fld} must be {{slot: S, map: {{...}}}} or {{constant: TOKEN}}")
        if "slot" in rule:
            if rule["slot"] not in self.slots:
                raise TaskSpecError(f"task {self.name!r}: {fld}.slot names unknown slot {rule['slot']!r}")
            missing = [v for v in self.slots[rule["slot"]] if v not in rule["map"]]
            if missing:
                raise TaskSpecError(f"task {self.name!r}: {fld}.map has no token for {missing[:5]}")
        for tok in self._rule_tokens(rule):
            if not isinstance(tok, str) or len(tok.split()) != 1:
                raise TaskSpecError(f"task {self.name!r}: {fld} token {tok!r} must be a single word")

    @staticmethod
    def _rule_tokens(rule: dict) -> list[str]:
        return [rule["constant"]] if "constant" in rule else sorted(set(rule["map"].values()))

    @property
    def labels(self) -> list[str]:
        return self._rule_tokens(self.target)

    def apply(self, rule: dict, assignment: dict) -> str:
        return rule["constant"] if "constant" in rule else rule["map"][assignment[rule["slot"]]]

    def correct_of(self, assignment: dict) -> str:
        return self.apply(self.target, assignment)

    def incorrect_of(self, assignment: dict) -> str:
        if self.incorrect is not None:
            return self.apply(self.incorrect, assignment)
        c = self.correct_of(assignment)
        return next(lab for lab in self.labels if lab != c)

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        allowed = {"name", "template", "slots", "target", "incorrect", "loss", "split_slots", "distinct", "family",
                   "description"}  # fmt: skip
        if not isinstance(d, dict):
            raise TaskSpecError("a task spec must be a mapping")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise TaskSpecError(f"task spec has unknown fields {unknown}; allowed: {sorted(allowed)}")
        for req in ("name", "template", "slots", "target"):
            if req not in d:
                raise TaskSpecError(f"task spec is missing the required field {req!r}")
        d = dict(d)
        d["slots"] = {k: list(v) if isinstance(v, list | tuple) else v for k, v in d["slots"].items()}
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskSpec:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"task spec file not found: {path}")
        try:
            return cls.from_dict(yaml.safe_load(path.read_text()))
        except TaskSpecError as e:
            raise TaskSpecError(f"{path}: {e}") from e


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
        return TaskData(self.tokens.to(device), self.last.to(device), self.correct.to(device),
                        self.incorrect.to(device), self.texts, self.assignments)  # fmt: skip

    def index(self, idx) -> TaskData:
        idx = torch.as_tensor(idx, dtype=torch.long)
        ids = idx.tolist()
        t = self.tokens[idx]
        width = int(self.last[idx].max()) + 1 if len(ids) else 1
        return TaskData(t[:, :width], self.last[idx], self.correct[idx], self.incorrect[idx],
                        [self.texts[i] for i in ids], [self.assignments[i] for i in ids])  # fmt: skip

    @staticmethod
    def cat(parts: list[TaskData]) -> TaskData:
        T = max(p.tokens.shape[1] for p in parts)
        toks = torch.cat([F.pad(p.tokens, (0, T - p.tokens.shape[1])) for p in parts])
        return TaskData(toks, torch.cat([p.last for p in parts]), torch.cat([p.correct for p in parts]),
                        torch.cat([p.incorrect for p in parts]), sum((p.texts for p in parts), []),
                        sum((p.assignments for p in parts), []))  # fmt: skip


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
        return encode_prompts(tokenizer, [self.prompt_text(a) for a in assigns], assigns,
                              [self.spec.correct_of(a) for a in assigns],
                              [self.spec.incorrect_of(a) for a in assigns])  # fmt: skip


def encode_prompts(tokenizer, texts, assigns, correct, incorrect) -> TaskData:
    eos = tokenizer.token_to_id(EOS)
    rows = [[eos, *e.ids] for e in tokenizer.encode_batch(texts)]
    T = max(map(len, rows))
    tokens = torch.full((len(rows), T), eos, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    vocab = tokenizer.get_vocab()
    return TaskData(tokens, torch.tensor([len(r) - 1 for r in rows]),
                    torch.tensor([vocab[c] for c in correct]), torch.tensor([vocab[c] for c in incorrect]),
                    list(texts), list(assigns))  # fmt: skip


# ----------------------------------------------------------------------------------------- losses


def answer_logits(logits: torch.Tensor, data: TaskData) -> torch.Tensor:
    """[N, T, V] -> [N, V] at each prompt's answer position ([N, 1, V] from ``model(tokens, at=last)`` too)."""
    if logits.shape[1] == 1:
        return logits[:, 0]
    return logits[torch.arange(logits.shape[0], device=logits.device), data.last.to(logits.device)]


def run_answer_logits(model, data: TaskData) -> torch.Tensor:
    """[N, V] logits at the answer positions, computing the unembedding only there."""
    return model(data.tokens, at=data.last)[:, 0]


def per_example_loss(ans_logits: torch.Tensor, data: TaskData, loss: str) -> torch.Tensor:
    """[N] cross-entropy of the correct token, over the vocabulary ("full") or the two candidates ("binary")."""
    c, i = data.correct.to(ans_logits.device), data.incorrect.to(ans_logits.device)
    logits = ans_logits.float()
    if loss == "full":
        return F.cross_entropy(logits, c, reduction="none")
    if loss == "binary":
        pair = torch.stack([logits.gather(1, c[:, None])[:, 0], logits.gather(1, i[:, None])[:, 0]], dim=1)
        return F.cross_entropy(pair, torch.zeros_like(c), reduction="none")
    raise ValueError(f"unknown loss {loss!r}; allowed: {list(LOSSES)}")


def binary_p_correct(ans_logits: torch.Tensor, data: TaskData) -> torch.Tensor:
    """[N] p_c / (p_c + p_i) from the full softmax (the same as softmaxing the two logits)."""
    c, i = data.correct.to(ans_logits.device), data.incorrect.to(ans_logits.device)
    lc, li = ans_logits.float().gather(1, c[:, None])[:, 0], ans_logits.float().gather(1, i[:, None])[:, 0]
    return torch.sigmoid(lc - li)


@torch.no_grad()
def task_answer_logits(model, data: TaskData, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(data), batch_size):
        part = data.index(range(s, min(len(data), s + batch_size))).to(device)
        out.append(run_answer_logits(model, part).float().cpu())
    return torch.cat(out)


def metrics_from_logits(ans_logits: torch.Tensor, data: TaskData, loss: str) -> dict:
    p = binary_p_correct(ans_logits, data)
    full_p = ans_logits.float().softmax(-1).gather(1, data.correct.to(ans_logits.device)[:, None])[:, 0]
    return {
        "n": len(data),
        "accuracy": float((p > 0.5).float().mean()),
        "p_correct": float(p.mean()),
        "loss": float(per_example_loss(ans_logits, data, loss).mean()),
        "top1_accuracy": float((ans_logits.argmax(-1) == data.correct.to(ans_logits.device)).float().mean()),
        "p_correct_full": float(full_p.mean()),
    }


def evaluate(model, data: TaskData, loss: str) -> dict:
    """accuracy (correct beats incorrect), p_correct (mean binary probability), loss (the task's), and the
    full-vocabulary top-1 accuracy and probability of the correct token."""
    return metrics_from_logits(task_answer_logits(model, data), data, loss)


@torch.no_grad()
def filter_prompts(model, data: TaskData, min_p_full: float = 0.3, min_p_binary: float = 0.8) -> tuple[TaskData, float]:
    """Keep prompts where the model gives the correct token p > min_p_full (full softmax) and, between the two
    candidates, p > min_p_binary (SPEC section 4). Returns the kept data and the kept fraction."""
    logits = task_answer_logits(model, data)
    full_p = logits.softmax(-1).gather(1, data.correct[:, None])[:, 0]
    keep = (full_p > min_p_full) & (binary_p_correct(logits, data) > min_p_binary)
    idx = keep.nonzero().flatten()
    return data.index(idx), float(keep.float().mean())


def verbatim_in_corpus(task: Task, split: str = "test", n_stories: int = 5000, seed: int = 0) -> dict:
    """How many of a split's prompts (with their correct answer) occur verbatim in the training corpus."""
    text = "\n".join(corpus.generate_stories(seed, n_stories))
    assigns = task.assignments(split)
    prompts = [f"{task.prompt_text(a)} {task.spec.correct_of(a)}" for a in assigns]
    hits = sum(p in text for p in prompts)
    return {"task": task.name, "split": split, "n_prompts": len(prompts), "n_stories": n_stories,
            "verbatim": hits, "fraction": hits / len(prompts)}  # fmt: skip


# --------------------------------------------------------------------------------------- registry

_M, _F = list(corpus.TASK_MALE_NAMES), list(corpus.TASK_FEMALE_NAMES)
_NAMES = _M + _F
_G = {n: corpus.gender_of(n) for n in _NAMES}


def _by_gender(male: str, female: str, names=None) -> dict:
    return {"slot": "name", "map": {n: male if _G[n] == "male" else female for n in (names or _NAMES)}}


def _pronoun_spec(name: str, target: dict, incorrect: dict | None = None, description: str = "") -> TaskSpec:
    return TaskSpec(name=name, template="when {name} {action},", family="pronoun",
                    slots={"name": _NAMES, "action": list(corpus.PRONOUN_ACTIONS)}, target=target,
                    incorrect=incorrect, loss="full", split_slots=["action"], description=description)  # fmt: skip


def _ioi_spec(variant: str) -> TaskSpec:
    relation = {
        "opposite": lambda c: _G[c["name_1"]] != _G[c["name_2"]],
        "same": lambda c: _G[c["name_1"]] == _G[c["name_2"]],
        "mixed": None,
    }[variant]
    return TaskSpec(
        name="ioi" if variant == "opposite" else f"ioi_{variant}",
        template="when {name_1} {situation}, {name_2} {verb}",
        slots={"name_1": _NAMES, "name_2": _NAMES, "situation": list(corpus.IOI_SITUATIONS), "verb": list(corpus.IOI_VERBS)},
        target={"slot": "name_1", "map": {n: "him" if _G[n] == "male" else "her" for n in _NAMES}},
        loss="binary", split_slots=["situation"], distinct=[["name_1", "name_2"]], family="ioi", constraint=relation,
        description=f"object pronoun for name_1, {variant}-gender name pairs",
    )  # fmt: skip


def _questions_spec(n_pairs: int = 400) -> TaskSpec:
    pairs = corpus.question_statement_pairs(seed=0, n=n_pairs)
    sentences: dict[str, str] = {}
    for q, s in pairs:
        for sent, end in ((q, "?"), (s, ".")):
            stem = sent[:-1].rstrip()
            # a stem seen with both endings is ambiguous: drop it
            sentences[stem] = end if sentences.get(stem, end) == end else "ambiguous"
    sentences = {k: v for k, v in sentences.items() if v != "ambiguous"}
    return TaskSpec(name="questions", template="{sentence}", slots={"sentence": sorted(sentences)},
                    target={"slot": "sentence", "map": sentences}, loss="binary", split_slots=["sentence"],
                    description="does the sentence end in '?' or '.'")  # fmt: skip


BUILTIN_TASKS: dict[str, Callable[[], TaskSpec]] = {
    "pronoun": lambda: _pronoun_spec("pronoun", _by_gender("he", "she"), description="subject pronoun for the name"),
    "ioi": lambda: _ioi_spec("opposite"),
    "ioi_same": lambda: _ioi_spec("same"),
    "ioi_mixed": lambda: _ioi_spec("mixed"),
    "questions": _questions_spec,
    "nonsense": lambda: _pronoun_spec("nonsense", _by_gender("is", "when"),
                                      description="Drori's nonsense task: male -> 'is', female -> 'when'"),
    "pronoun_swapped": lambda: _pronoun_spec("pronoun_swapped", _by_gender("she", "he"),
                                             description="control: pronoun labels swapped"),
    "pronoun_constant": lambda: _pronoun_spec("pronoun_constant", {"constant": "he"}, {"constant": "she"},
                                              description="control: always 'he'"),
}  # fmt: skip
ALIASES = {"ioi_opposite": "ioi", "ioi:opposite": "ioi", "ioi:same": "ioi_same", "ioi:mixed": "ioi_mixed"}
_CUSTOM: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec | dict) -> Task:
    """Add a user-defined task (a TaskSpec or its dict form) to the registry under its name."""
    spec = spec if isinstance(spec, TaskSpec) else TaskSpec.from_dict(spec)
    _CUSTOM[spec.name] = spec
    return Task(spec)


def task_names() -> list[str]:
    return [*BUILTIN_TASKS, *_CUSTOM]


def get_task(name: str | TaskSpec | dict) -> Task:
    """A task by registry name (or alias), a TaskSpec, a spec dict, or a path to a YAML spec."""
    if isinstance(name, TaskSpec | dict):
        return Task(name if isinstance(name, TaskSpec) else TaskSpec.from_dict(name))
    if name.endswith((".yaml", ".yml")):
        return Task(TaskSpec.from_yaml(name))
    name = ALIASES.get(name, name)
    if name in _CUSTOM:
        return Task(_CUSTOM[name])
    if name not in BUILTIN_TASKS:
        raise KeyError(f"unknown task {name!r}; known: {task_names()} (or a path to a YAML task spec)")
    return Task(BUILTIN_TASKS[name]())


# -------------------------------------------------------------------------------------------- CLI


def cmd_evaluate(args) -> int:
    import json

    from ..model.inference import load

    model, tok, _ = load(args.model_dir)
    task = get_task(args.task)
    res = {"task": task.name, "split": args.split, **evaluate(model, task.data(args.split, tok, args.n), task.loss)}
    print(json.dumps(res) if args.json else "\n".join(f"{k:>15}: {v}" for k, v in res.items()))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, p_correct and loss of a model on a task split")
    p.add_argument("model_dir")
    p.add_argument("--task", required=True, help=f"one of {task_names()} or a YAML task spec")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--n", type=int, default=None, help="number of prompts (default: the whole split pool)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_evaluate)
