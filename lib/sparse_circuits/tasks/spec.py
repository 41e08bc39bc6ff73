"""Declaring a binary next-token task: ``TaskSpec`` (a template, slot word lists, the rule for the correct and
incorrect token, the loss) and the checks that reject a malformed spec with a message naming the field."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter

from ..core.config import PYTHON_ONLY, strict_from_dict

LOSSES = ("full", "binary")
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
    """The task's name: how circuits, results and the registry refer to it."""
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
    name_slots: list[str] = field(default_factory=list)
    """Slots whose values are people's names (e.g. [name_1, name_2]); they share one split when ``split_names``."""
    split_names: bool = False
    """Divide the values of ``name_slots`` into train/val/test too (off by default: the prompt pools stay as they
    were). One partition serves every name slot, divided within each answer where a name slot is the target slot, so
    every split keeps every answer and held-out prompts have unseen names."""
    family: str | None = None
    """Tasks of one family share their template splits (default: the task's name)."""
    description: str = ""
    """One line saying what the task asks, for listings and pages."""
    constraint: Callable[[dict], bool] | None = field(default=None, metadata=PYTHON_ONLY)
    """(Python only) keep a prompt's slot assignment only if this returns True."""

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not self.template.strip():
            raise TaskSpecError(f"task {self.name!r}: template must be a non-empty string")
        used = self._template_slots()
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
            bad = [v for v in values if not isinstance(v, str) or not v.strip()]
            if bad:
                raise TaskSpecError(f"task {self.name!r}: slots.{s} values must be non-empty strings, got {bad[:3]}")
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
        if not isinstance(self.distinct, list | tuple) or not all(isinstance(g, list | tuple) for g in self.distinct):
            raise TaskSpecError(
                f"task {self.name!r}: distinct must be a list of lists of slots, e.g. [[name_1, name_2]]"
            )
        for group in self.distinct:
            self._check_slot_names("distinct", group)
        if self.incorrect is not None:
            self._check_incorrect_differs()
        if self.split_slots is None:
            self.split_slots = [s for s in self.slots if s != self.target.get("slot")]
        if not isinstance(self.split_slots, list | tuple):
            raise TaskSpecError(f"task {self.name!r}: split_slots must be a list of slots, got {self.split_slots!r}")
        self._check_slot_names("split_slots", self.split_slots)
        for s in self.split_slots:
            if len(self.slots[s]) < 3:
                warnings.warn(
                    f"task {self.name!r}: split slot {s!r} has {len(self.slots[s])} values (fewer than 3), so train, "
                    "val and test share them: its test prompts are not held out",
                    stacklevel=3,
                )
        self._check_slot_names("name_slots", self.name_slots)
        if self.split_names and not self.name_slots:
            raise TaskSpecError(f"task {self.name!r}: split_names needs name_slots (the slots holding names)")
        self.family = self.family or self.name

    def _template_slots(self) -> list[str]:
        """The {slot} fields of the template; an empty ``{}``, a positional, indexed or formatted field, or an
        unbalanced brace is an error (``{{`` and ``}}`` stand for literal braces)."""
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in Formatter().parse(self.template) if f is not None]
        except ValueError as e:
            raise TaskSpecError(f"task {self.name!r}: template {self.template!r}: {e}") from None
        for f, spec, conv in fields:
            if not f.isidentifier() or spec or conv:
                raise TaskSpecError(
                    f"task {self.name!r}: template field {{{f}}} is not a slot name; write {{slot_name}} "
                    "(and {{{{ or }}}} for a literal brace)"
                )
        return [f for f, _, _ in fields]

    def _check_slot_names(self, fld: str, names) -> None:
        for s in names:
            if not isinstance(s, str) or s not in self.slots:
                raise TaskSpecError(f"task {self.name!r}: {fld} names unknown slot {s!r}; slots: {sorted(self.slots)}")

    def _check_incorrect_differs(self) -> None:
        """The incorrect token must differ from the correct one in every prompt; if it never does the spec is an
        error, if only in some slot combinations a warning names one."""
        read = sorted({rule["slot"] for rule in (self.target, self.incorrect) if "slot" in rule})
        combos = [dict(zip(read, values)) for values in itertools.product(*(self.slots[s] for s in read))]
        for group in self.distinct:  # combinations the spec never generates do not count
            shared = [s for s in group if s in read]
            combos = [a for a in combos if len({a[s] for s in shared}) == len(shared)]
        same = [a for a in combos if self.correct_of(a) == self.incorrect_of(a)]
        if len(same) == len(combos):
            raise TaskSpecError(f"task {self.name!r}: incorrect gives the same token as target in every prompt")
        if same:
            warnings.warn(
                f"task {self.name!r}: incorrect equals target for {len(same)} of {len(combos)} slot combinations "
                f"(e.g. {same[0]}); those prompts cannot tell the two apart",
                stacklevel=4,
            )

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
