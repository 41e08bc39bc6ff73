"""Where things live in the repository, independent of the working directory (notebooks run from notebooks/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .storage import write_json

REPO_ROOT = Path(os.environ.get("SPARSE_CIRCUITS_ROOT", Path(__file__).resolve().parents[3]))
MODELS_DIR = REPO_ROOT / "data" / "models"
CONFIGS_DIR = REPO_ROOT / "configs"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
FIGURES_DIR = REPO_ROOT / "figures"
RUNS_DIR = REPO_ROOT / "runs"
PROFILES = ("full", "smoke")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {list(PROFILES)}")
    return profile


def figures_dir(profile: str = "full") -> Path:
    """figures/ for full runs; smoke runs write under runs/smoke/figures so committed figures stay intact."""
    d = FIGURES_DIR if check_profile(profile) == "full" else RUNS_DIR / "smoke" / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir(profile: str = "full") -> Path:
    d = figures_dir(profile) / "results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_dir(name: str) -> Path:
    d = MODELS_DIR / name
    if not (d / "config.json").exists():
        known = (
            sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").exists()) if MODELS_DIR.exists() else []
        )
        raise FileNotFoundError(
            f"no shipped model {name!r} in {MODELS_DIR}; available: {known} (make models trains them)"
        )
    return d


def shipped_models() -> list[str]:
    if not MODELS_DIR.exists():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model.safetensors").exists())


def save_results(notebook: str, results: dict, profile: str = "full") -> Path:
    """Write a notebook's key numbers to <results dir>/<notebook>.json (sorted keys, no timestamps)."""
    path = results_dir(profile) / f"{notebook}.json"
    write_json(path, json.loads(json.dumps(results, default=float)))
    return path
