"""Helpers shared by the config dataclasses (model, training, pruning)."""

from __future__ import annotations

from dataclasses import fields


def strict_from_dict(cls, d: dict):
    """Build a config dataclass from a dict, refusing unknown fields (a typo must not be silently ignored)."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**d)
