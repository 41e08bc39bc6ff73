"""Self-describing model directories: config.json + model.safetensors + tokenizer.json + metrics.jsonl.

Loading never unpickles (see ``core.storage``); a loaded model equals the trained one bit for bit.
"""

from __future__ import annotations

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
    """Write config.json (with model config, package version and git commit) and model.safetensors."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config["model"] = model.cfg.to_dict()
    config.setdefault("package_version", __version__)
    config.setdefault("git_commit", git_commit())
    save_tensors(out_dir / WEIGHTS_FILE, model.state_dict())
    write_json(out_dir / CONFIG_FILE, config)


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
    state = load_tensors(model_dir / WEIGHTS_FILE)
    expected = model.state_dict()
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
