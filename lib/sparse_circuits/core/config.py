"""One home for run settings: the config dataclasses (model, training, pruning, task specs) are the only place
that names a setting, its type, default and meaning.

- ``strict_from_dict`` builds any of them from a dict (a YAML file, a saved config.json), refusing unknown
  fields, so that a typo is an error and not a silently ignored setting.
- ``add_config_arguments`` turns a dataclass into command-line options (one ``--kebab-name`` per field, type
  and default from the field, help from the string under it), so the CLI never restates a default.

A field marked with ``metadata=PYTHON_ONLY`` (e.g. a callable) is set only from Python: it is neither read from
a dict nor offered as an option.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import numbers
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping

PYTHON_ONLY = {"python_only": True}
UNKNOWN_FIELDS = "unknown {what} fields {unknown}; allowed: {allowed}"


def config_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config dataclass that a dict or the command line may set."""
    return [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("python_only")]


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@functools.cache
def _hints(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def strict_from_dict(
    cls,
    d: Mapping,
    *,
    what: str | None = None,
    error: type[Exception] = ValueError,
    unknown_message: str = UNKNOWN_FIELDS,
):
    """``cls(**d)`` for a config dataclass, after refusing a non-mapping, unknown fields and missing required ones.

    A field whose type is itself a dataclass (e.g. ``RunConfig.train``) is built the same way from its sub-dict,
    named "<field> config" in messages. ``what`` names the thing in messages (default: the class name); ``error``
    is the exception raised; ``unknown_message`` formats the unknown-fields message from ``what``, ``unknown`` and
    ``allowed``.
    """
    what = what or cls.__name__
    if not isinstance(d, Mapping):
        raise error(f"a {what} must be a mapping, got {type(d).__name__}")
    allowed = [f.name for f in config_fields(cls)]
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise error(unknown_message.format(what=what, unknown=unknown, allowed=allowed))
    for f in config_fields(cls):
        if _is_required(f) and f.name not in d:
            raise error(f"{what} is missing the required field {f.name!r}")
    values = dict(d)
    for name, value in d.items():
        sub = _hints(cls)[name]
        if dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            values[name] = strict_from_dict(sub, value, what=f"{name} config", error=error)
    return cls(**values)


def check_numbers(
    config,
    *,
    counts: Iterable[str] = (),
    integers: Iterable[str] = (),
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    fractions: Iterable[str] = (),
    error: type[Exception] = ValueError,
) -> None:
    """Validate numeric fields of a config dataclass where they enter (its ``__post_init__``).

    ``counts``: integers >= 1 (2.5 or True is refused); ``integers``: integers >= 0; ``positive``: finite reals > 0; ``non_negative``: finite
    reals >= 0; ``fractions``: finite reals in [0, 1]. The message names the class and field."""
    what = type(config).__name__
    rules = [
        (counts, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        (integers, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
        (positive, lambda v: _is_real(v) and v > 0, "a finite number > 0"),
        (non_negative, lambda v: _is_real(v) and v >= 0, "a finite number >= 0"),
        (fractions, lambda v: _is_real(v) and 0 <= v <= 1, "a finite number in [0, 1]"),
    ]
    for names, ok, wanted in rules:
        for name in names:
            value = getattr(config, name)
            if isinstance(value, bool) or not ok(value):
                raise error(f"{what}.{name} must be {wanted}, got {value!r}")


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


# ------------------------------------------------------------------------------------ command line


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body (the attribute-docstring convention)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (e.g. a class made at run time): no help text
        return {}
    body = tree.body[0].body
    docs = {}
    for stmt, nxt in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def _option_type(annotation) -> tuple[type, str | None]:
    """(element type, nargs) of a field's annotation; ``X | None`` is taken as X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        if len(args) != 1:
            raise TypeError(f"no command-line option for a field of type {annotation}")
        return _option_type(args[0])
    if typing.get_origin(annotation) in (tuple, list):
        return args[0], "*"
    if annotation in (int, float, str, bool):
        return annotation, None
    raise TypeError(f"no command-line option for a field of type {annotation}")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    overrides: Mapping[str, dict] | None = None,
    keep_unset: bool = False,
) -> list[str]:
    """Add one ``--kebab-name`` option per field of the dataclass ``cls``; returns the field names added.

    Type from the annotation (bools become ``--x/--no-x``, tuples and lists take several values), default from
    the dataclass, help from the field's docstring. ``include`` / ``exclude`` select fields; ``overrides`` maps a
    field name to extra ``add_argument`` keywords (e.g. ``choices``). With ``keep_unset`` an option that is not
    given leaves no attribute on the parsed namespace, so the values come from elsewhere (a config file).
    """
    docs, overrides = field_docs(cls), overrides or {}
    exclude = set(exclude)
    chosen = [f for f in config_fields(cls) if (include is None or f.name in include) and f.name not in exclude]
    for f in chosen:
        kind, nargs = _option_type(_hints(cls)[f.name])
        kwargs: dict = {"help": docs.get(f.name, "").replace("%", "%%")}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=kind, nargs=nargs)
        if keep_unset:
            kwargs["default"] = argparse.SUPPRESS
        elif _is_required(f):
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            kwargs["help"] += " (default: %(default)s)"
        kwargs.update(overrides.get(f.name, {}))
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return [f.name for f in chosen]


def given_arguments(args: argparse.Namespace, cls) -> dict:
    """Field name -> parsed value for the options ``add_config_arguments`` added for ``cls`` (with ``keep_unset``:
    only those given on the command line)."""
    return {f.name: getattr(args, f.name) for f in config_fields(cls) if hasattr(args, f.name)}
