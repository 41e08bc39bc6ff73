"""Files that survive a kill and never unpickle: atomic text/JSON writes and safetensors with a sparse format.

Sparse matrices are stored as (flat int32 indices, values), which is exact, so a save/load round trip is
bitwise. Every file is written to a temporary name and renamed into place, so a kill mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

SPARSE_SUFFIX_IDX, SPARSE_SUFFIX_VAL = "::indices", "::values"


class CheckpointError(ValueError):
    """A model directory, checkpoint or saved file is missing, truncated or does not match its config."""


class OutputBusyError(FileExistsError):
    """Another process is writing to the same output directory."""


LOCK_FILE = ".lock"


@contextmanager
def output_lock(out_dir: str | Path, fresh: bool = False) -> Iterator[Path]:
    """Hold the one-writer lock of ``out_dir`` (created if needed) while the block runs; ``OutputBusyError`` at
    once if another writer holds it, so that a second run is refused before any compute. With ``fresh`` a
    directory that already holds files is refused too (``FileExistsError``).

    The lock file stays afterwards: deleting it while another process waits on it would let two writers in."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output {out_dir} is a file, not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(f"{out_dir} is in use by another process (locked by {out_dir / LOCK_FILE})") from None
    try:
        held = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_FILE)
        if fresh and held:
            raise FileExistsError(f"{out_dir} already holds {held[:3]}; choose another output directory")
        yield out_dir
    finally:
        lock.release()


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A unique temporary name beside ``path`` that is renamed onto it on success and removed on any failure.

    The file gets the permissions of a newly created file (0666 less the umask), not the 0600 of a temp file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a kill leaves either the old file or the new one."""
    with _atomic_target(Path(path)) as tmp:
        tmp.write_text(text)


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
    with _atomic_target(path) as tmp:
        save_file(out, str(tmp), metadata={"sparse_shapes": json.dumps(shapes)})


def load_tensors(
    path: str | Path, expected_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Inverse of save_tensors; a missing, corrupt or inconsistent file raises CheckpointError naming it.

    Nothing in the file is trusted: a sparse tensor's shape must be non-negative integers (and equal to
    ``expected_shapes[name]`` when given, checked before its dense form is allocated), its indices in range and
    as many as its values; every floating-point tensor must be finite."""
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
    if not isinstance(shapes, dict):
        raise CheckpointError(f"{path}: sparse_shapes metadata is not a mapping")
    out: dict[str, torch.Tensor] = {}
    for name, t in raw.items():
        if name.endswith(SPARSE_SUFFIX_VAL):
            continue
        if name.endswith(SPARSE_SUFFIX_IDX):
            base = name[: -len(SPARSE_SUFFIX_IDX)]
            if base not in shapes or base + SPARSE_SUFFIX_VAL not in raw:
                raise CheckpointError(f"{path}: sparse tensor {base!r} lacks its shape or values")
            shape = _checked_shape(path, base, shapes[base], expected_shapes)
            vals = raw[base + SPARSE_SUFFIX_VAL]
            _check_sparse_parts(path, base, t, vals, math.prod(shape))
            dense = torch.zeros(math.prod(shape), dtype=vals.dtype)
            dense[t.long()] = vals
            t = dense.view(shape)
            name = base
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
        out[name] = t
    return out


def _checked_shape(path: Path, name: str, shape, expected: Mapping[str, tuple[int, ...]] | None) -> tuple[int, ...]:
    """A sparse tensor's recorded shape, refused unless it is a list of non-negative ints (and the expected one)."""
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise CheckpointError(f"{path}: sparse tensor {name!r} has an invalid shape {shape!r}")
    if expected is not None and name in expected and tuple(shape) != tuple(expected[name]):
        raise CheckpointError(f"{path}: {name} has shape {tuple(shape)}, expected {tuple(expected[name])}")
    return tuple(shape)


def _check_sparse_parts(path: Path, name: str, indices: torch.Tensor, values: torch.Tensor, numel: int) -> None:
    """Indices: 1-D integers in [0, numel), one per value."""
    if indices.ndim != 1 or values.shape != indices.shape or indices.is_floating_point():
        raise CheckpointError(f"{path}: sparse tensor {name!r} needs 1-D integer indices, one per value")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= numel):
        raise CheckpointError(f"{path}: sparse tensor {name!r} has indices outside [0, {numel})")


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
