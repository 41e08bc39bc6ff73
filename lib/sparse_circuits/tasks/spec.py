"""Declaring a binary next-token task: ``TaskSpec`` (a template, slot word lists, the rule for the correct and
incorrect token, the loss) and the checks that reject a malformed spec with a message naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import PYTHON_ONLY, strict_from_dict

LOSSES = ("full", "binary")
_SLOT_RE = re.compile(r"\{(\w+)\}")
_UNKNOWN_FIELDS = "{what} has unknown fields {unknown}; allowed: {allowed}"


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
    constraint: Callable[[dict], bool] | None = field(default=None, metadata=PYTHON_ONLY)
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
        self.slots = {s: list(values) for s, values in self.slots.items()}  # YAML or Python tuples alike
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
        """A spec from its dict form (every field but ``constraint``); errors name the field at fault."""
        return strict_from_dict(cls, d, what="task spec", error=TaskSpecError, unknown_message=_UNKNOWN_FIELDS)

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
