"""Self-describing model directories: config.json + model.safetensors + tokenizer.json + metrics.jsonl.

Loading never unpickles (see ``core.storage``); a loaded model equals the trained one bit for bit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..core.storage import CheckpointError, git_commit, load_tensors, read_json, save_tensors, write_json
from ..core.version import __version__
from .gpt import ModelConfig, SparseGPT

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, METRICS_FILE = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "metrics.jsonl",
)


def save_model(model: SparseGPT, out_dir: str | Path, config: dict) -> None:
    """Write config.json (with model config, package version, git commit and the hash of the directory's
    tokenizer.json when it has one) and model.safetensors."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config["model"] = model.cfg.to_dict()
    config.setdefault("package_version", __version__)
    config.setdefault("git_commit", git_commit())
    if (out_dir / TOKENIZER_FILE).is_file():  # ties the tokenizer to the model: a swapped one is detected at load
        config["tokenizer_sha256"] = tokenizer_sha256(out_dir)
    save_tensors(out_dir / WEIGHTS_FILE, model.state_dict())
    write_json(out_dir / CONFIG_FILE, config)


def weights_digest(model) -> str:
    """SHA-256 of every tensor of the model's state dict (name, dtype, shape and bytes): the identity of the
    weights a cached circuit or a resumed sweep was made with."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_sha256(model_dir: str | Path) -> str:
    """SHA-256 of a model directory's tokenizer.json, as recorded in its config.json."""
    return hashlib.sha256((Path(model_dir) / TOKENIZER_FILE).read_bytes()).hexdigest()


def check_tokenizer(model_dir: str | Path, config: dict) -> None:
    """Refuse a tokenizer.json other than the one the model was saved with (when config.json records its hash;
    older model directories do not)."""
    recorded = config.get("tokenizer_sha256")
    if recorded is not None and tokenizer_sha256(model_dir) != recorded:
        raise CheckpointError(
            f"{Path(model_dir) / TOKENIZER_FILE} is not the tokenizer this model was trained with "
            f"(its SHA-256 differs from the one in {CONFIG_FILE})"
        )


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SparseGPT, dict]:
    """Load a model directory; returns (model in eval mode, config dict). Errors name the file at fault."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory not found: {model_dir}")
    config = read_json(model_dir / CONFIG_FILE)
    if "model" not in config:
        raise CheckpointError(f"{model_dir / CONFIG_FILE} has no 'model' section")
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{model_dir / CONFIG_FILE}: invalid model config: {e}") from e
    model = SparseGPT(cfg)
    expected = model.state_dict()
    state = load_tensors(model_dir / WEIGHTS_FILE, {k: tuple(t.shape) for k, t in expected.items()})
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{model_dir / WEIGHTS_FILE} does not match {CONFIG_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, t in state.items():
        if t.shape != expected[k].shape:
            raise CheckpointError(
                f"{model_dir / WEIGHTS_FILE}: {k} has shape {tuple(t.shape)}, config expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict(state)
    return model.to(device).eval(), config
