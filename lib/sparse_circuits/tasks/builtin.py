"""The task registry: the built-in tasks of the method (docs/method.md) (pronoun, IOI in three gender variants, questions, the
nonsense task and two controls), user-registered tasks, and lookup by name, alias, spec or YAML file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from ..data.generator import question_statement_pairs
from ..data.words import IOI_SITUATIONS, IOI_VERBS, PRONOUN_ACTIONS, TASK_FEMALE_NAMES, TASK_MALE_NAMES, gender_of
from .prompts import Task
from .spec import TaskSpec, TaskSpecError

_M, _F = list(TASK_MALE_NAMES), list(TASK_FEMALE_NAMES)
_NAMES = _M + _F
_G = {n: gender_of(n) for n in _NAMES}


def _by_gender(male: str, female: str, names=None) -> dict:
    return {"slot": "name", "map": {n: male if _G[n] == "male" else female for n in (names or _NAMES)}}


def _pronoun_spec(name: str, target: dict, incorrect: dict | None = None, description: str = "") -> TaskSpec:
    return TaskSpec(
        name=name,
        template="when {name} {action},",
        family="pronoun",
        slots={"name": _NAMES, "action": list(PRONOUN_ACTIONS)},
        target=target,
        incorrect=incorrect,
        loss="full",
        split_slots=["action"],
        name_slots=["name"],
        description=description,
    )


def _ioi_spec(variant: str) -> TaskSpec:
    relation = {
        "opposite": lambda c: _G[c["name_1"]] != _G[c["name_2"]],
        "same": lambda c: _G[c["name_1"]] == _G[c["name_2"]],
        "mixed": None,
    }[variant]
    return TaskSpec(
        name="ioi" if variant == "opposite" else f"ioi_{variant}",
        template="when {name_1} {situation}, {name_2} {verb}",
        slots={"name_1": _NAMES, "name_2": _NAMES, "situation": list(IOI_SITUATIONS), "verb": list(IOI_VERBS)},
        target={"slot": "name_1", "map": {n: "him" if _G[n] == "male" else "her" for n in _NAMES}},
        loss="binary",
        split_slots=["situation"],
        name_slots=["name_1", "name_2"],
        distinct=[["name_1", "name_2"]],
        family="ioi",
        constraint=relation,
        description=f"object pronoun for name_1, {variant}-gender name pairs",
    )


def _questions_spec(n_pairs: int = 400) -> TaskSpec:
    pairs = question_statement_pairs(seed=0, n=n_pairs)
    sentences: dict[str, str] = {}
    for q, s in pairs:
        for sent, end in ((q, "?"), (s, ".")):
            stem = sent[:-1].rstrip()
            # a stem seen with both endings is ambiguous: drop it
            sentences[stem] = end if sentences.get(stem, end) == end else "ambiguous"
    sentences = {k: v for k, v in sentences.items() if v != "ambiguous"}
    return TaskSpec(
        name="questions",
        template="{sentence}",
        slots={"sentence": sorted(sentences)},
        target={"slot": "sentence", "map": sentences},
        loss="binary",
        split_slots=["sentence"],
        description="does the sentence end in '?' or '.'",
    )


BUILTIN_TASKS: dict[str, Callable[[], TaskSpec]] = {
    "pronoun": lambda: _pronoun_spec("pronoun", _by_gender("he", "she"), description="subject pronoun for the name"),
    "ioi": lambda: _ioi_spec("opposite"),
    "ioi_same": lambda: _ioi_spec("same"),
    "ioi_mixed": lambda: _ioi_spec("mixed"),
    "questions": _questions_spec,
    "nonsense": lambda: _pronoun_spec(
        "nonsense", _by_gender("is", "when"), description="Drori's nonsense task: male -> 'is', female -> 'when'"
    ),
    "pronoun_swapped": lambda: _pronoun_spec(
        "pronoun_swapped", _by_gender("she", "he"), description="control: pronoun labels swapped"
    ),
    "pronoun_constant": lambda: _pronoun_spec(
        "pronoun_constant", {"constant": "he"}, {"constant": "she"}, description="control: always 'he'"
    ),
}
ALIASES = {"ioi_opposite": "ioi", "ioi:opposite": "ioi", "ioi:same": "ioi_same", "ioi:mixed": "ioi_mixed"}
_CUSTOM: dict[str, TaskSpec] = {}
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def register_task(spec: TaskSpec | dict) -> Task:
    """Add a user-defined task (a TaskSpec or its dict form) to the registry under its name."""
    spec = spec if isinstance(spec, TaskSpec) else TaskSpec.from_dict(spec)
    _CUSTOM[spec.name] = spec
    return Task(spec)


def task_names() -> list[str]:
    return [*BUILTIN_TASKS, *_CUSTOM]


def get_task(name: str | Path | TaskSpec | dict) -> Task:
    """A task by registry name (or alias), a TaskSpec, a spec dict, or the path of a spec file (YAML or JSON,
    any file name); registry names come before files of the same name."""
    if isinstance(name, TaskSpec | dict):
        return Task(name if isinstance(name, TaskSpec) else TaskSpec.from_dict(name))
    key = ALIASES.get(str(name), str(name))
    if key in _CUSTOM:
        return Task(_CUSTOM[key])
    if key in BUILTIN_TASKS:
        return Task(BUILTIN_TASKS[key]())
    path = Path(name)
    if path.exists() or path.suffix in SPEC_SUFFIXES:
        return Task(_spec_from_file(path))
    raise KeyError(f"unknown task {key!r}; known: {task_names()} (or the path of a task spec file)")


def _spec_from_file(path: Path) -> TaskSpec:
    """A spec file read as YAML (JSON is YAML too); a file that is not a spec gets a TaskSpecError naming it."""
    if path.exists() and not path.is_file():
        raise TaskSpecError(f"{path}: not a file (a task spec is a YAML or JSON file)")
    try:
        return TaskSpec.from_yaml(path)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split())  # the parser's multi-line message on one line
        raise TaskSpecError(f"{path}: not a valid task spec (YAML or JSON): {reason}") from e
