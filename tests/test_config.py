"""Config helpers: the one strict from_dict and the command-line options generated from a config dataclass."""

import argparse
from dataclasses import dataclass, field

import pytest
from sparse_circuits.core.config import PYTHON_ONLY, add_config_arguments, given_arguments, strict_from_dict


@dataclass
class Inner:
    depth: int = 1
    """How deep."""


@dataclass
class Settings:
    kind: str
    """Which kind (required)."""
    rate: float = 0.5
    """A rate in 50% steps."""
    verbose: bool = False
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)
    hook: object = field(default=None, metadata=PYTHON_ONLY)


def test_strict_from_dict_builds_nested_configs():
    s = strict_from_dict(Settings, {"kind": "a", "rate": 0.1, "inner": {"depth": 3}})
    assert s == Settings(kind="a", rate=0.1, inner=Inner(depth=3))


@pytest.mark.parametrize(
    "d, match",
    [
        ({"kind": "a", "rat": 1}, r"unknown Settings fields \['rat'\]; allowed: \['kind', 'rate'"),
        ({"kind": "a", "hook": 1}, r"unknown Settings fields \['hook'\]"),  # Python-only fields are not read
        ({"rate": 1.0}, "Settings is missing the required field 'kind'"),
        ({"kind": "a", "inner": {"deep": 2}}, r"unknown inner config fields \['deep'\]"),
        (["kind"], "a Settings must be a mapping, got list"),
    ],
)
def test_strict_from_dict_names_the_field_at_fault(d, match):
    with pytest.raises(ValueError, match=match):
        strict_from_dict(Settings, d)


def test_strict_from_dict_error_type_and_wording_are_parameters():
    class SpecError(ValueError):
        pass

    message = "{what} has unknown fields {unknown}"
    with pytest.raises(SpecError, match=r"^spec has unknown fields \['x'\]$"):
        strict_from_dict(Settings, {"x": 1}, what="spec", error=SpecError, unknown_message=message)


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p, Settings, exclude=("inner",), **kw)
    return p


def test_options_take_type_default_and_help_from_the_dataclass():
    p = _parser()
    args = p.parse_args(["--kind", "b"])
    assert given_arguments(args, Settings) == dict(kind="b", rate=0.5, verbose=False, sizes=(1, 2), limit=None)
    args = p.parse_args(["--kind", "b", "--rate", "0.25", "--verbose", "--sizes", "3", "4", "--limit", "7"])
    assert Settings(**given_arguments(args, Settings)) == Settings("b", 0.25, True, [3, 4], 7)
    assert p.parse_args(["--kind", "b", "--no-verbose"]).verbose is False
    text = p.format_help()
    assert "Which kind (required)." in text and "A rate in 50% steps. (default: 0.5)" in text
    assert "--hook" not in text and "--inner" not in text
    with pytest.raises(SystemExit):
        p.parse_args([])  # --kind is required, as the field has no default


def test_options_can_be_selected_overridden_or_left_unset():
    p = _parser(include=("kind", "rate"), overrides={"kind": {"choices": ["a", "b"]}})
    assert "--verbose" not in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--kind", "c"])
    unset = _parser(keep_unset=True)
    assert given_arguments(unset.parse_args(["--rate", "2"]), Settings) == {"rate": 2.0}
