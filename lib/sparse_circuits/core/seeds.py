"""Stable seeds derived from names and numbers, so every random draw is reproducible and independent."""

from __future__ import annotations

import hashlib


def derived_seed(*parts) -> int:
    """A stable 63-bit seed from any parts (never Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1
