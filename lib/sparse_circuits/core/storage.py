"""Files that survive a kill and never unpickle: atomic text/JSON writes and safetensors with a sparse format.

Sparse matrices are stored as (flat int32 indices, values), which is exact, so a save/load round trip is
bitwise. Every file is written to a temporary name and renamed into place, so a kill mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

SPARSE_SUFFIX_IDX, SPARSE_SUFFIX_VAL = "::indices", "::values"


class CheckpointError(ValueError):
    """A model directory, checkpoint or saved file is missing, truncated or does not match its config."""


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = _atomic_path(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON (truncated or corrupted?): {e}") from e


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], sparse_below: float = 0.5) -> None:
    """Write tensors to safetensors atomically; 2-D tensors with density < ``sparse_below`` are stored sparse."""
    path = Path(path)
    out: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.ndim == 2 and t.is_floating_point() and t.numel() and (t != 0).float().mean() < sparse_below:
            flat = t.flatten()
            idx = flat.nonzero().flatten()
            out[name + SPARSE_SUFFIX_IDX] = idx.to(torch.int32)
            out[name + SPARSE_SUFFIX_VAL] = flat[idx].clone()
            shapes[name] = list(t.shape)
        else:
            out[name] = t
    tmp = _atomic_path(path)
    save_file(out, str(tmp), metadata={"sparse_shapes": json.dumps(shapes)})
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Inverse of save_tensors; a missing or corrupt file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        raw = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        shapes = json.loads(meta.get("sparse_shapes", "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError, RuntimeError) as e:
        raise CheckpointError(f"{path} could not be read as safetensors (truncated or corrupted?): {e}") from e
    out: dict[str, torch.Tensor] = {}
    for name, t in raw.items():
        if name.endswith(SPARSE_SUFFIX_VAL):
            continue
        if name.endswith(SPARSE_SUFFIX_IDX):
            base = name[: -len(SPARSE_SUFFIX_IDX)]
            if base not in shapes or base + SPARSE_SUFFIX_VAL not in raw:
                raise CheckpointError(f"{path}: sparse tensor {base!r} lacks its shape or values")
            vals = raw[base + SPARSE_SUFFIX_VAL]
            dense = torch.zeros(int(torch.tensor(shapes[base]).prod()), dtype=vals.dtype)
            dense[t.long()] = vals
            out[base] = dense.view(shapes[base])
        else:
            out[name] = t
    return out


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
