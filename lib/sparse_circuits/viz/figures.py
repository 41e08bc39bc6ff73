"""Static matplotlib figures for notebooks and papers (written to figures/ with fixed names, no timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..circuits.layout import NodeLayout
from ..core.paths import figures_dir
from ..model.gpt import NODE_SITES


def savefig(fig, name: str, profile: str = "full") -> Path:
    """Save as <figures dir>/<name>.png (PNG metadata without dates, so reruns give identical files)."""
    path = figures_dir(profile) / f"{name}.png"
    fig.savefig(path, dpi=130, bbox_inches="tight", metadata={"Software": None})
    return path


def node_counts_by_site(nodes, model) -> dict[str, list[int]]:
    """site -> kept nodes per layer."""
    layout = NodeLayout(model)
    return {
        site: [int(nodes[layout.sl(layer, site)].sum()) for layer in range(model.cfg.n_layer)] for site in NODE_SITES
    }


def plot_site_counts(nodes, model, title: str = ""):
    counts = node_counts_by_site(nodes, model)
    fig, ax = plt.subplots(figsize=(7, 3))
    x = np.arange(len(NODE_SITES))
    width = 0.8 / model.cfg.n_layer
    for layer in range(model.cfg.n_layer):
        vals = [counts[s][layer] for s in NODE_SITES]
        bars = ax.bar(x + layer * width, vals, width, label=f"layer {layer}")
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x + width * (model.cfg.n_layer - 1) / 2, NODE_SITES)
    ax.set_ylabel("kept nodes")
    ax.set_title(title or f"circuit: {int(nodes.sum())} nodes")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def read_metrics(model_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(model_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def plot_training_curves(model_dirs: dict[str, Path]):
    """Training loss, held-out loss and the L0 / learning-rate schedules of several models."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, d in model_dirs.items():
        m = read_metrics(d)
        train = [r for r in m if "loss" in r]
        val = [r for r in m if "val_loss" in r]
        (line,) = axes[0].plot(
            [r["tokens"] / 1e6 for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.8, label=name
        )
        steps_to_tokens = train[-1]["tokens"] / train[-1]["step"]
        axes[0].plot(
            [r["step"] * steps_to_tokens / 1e6 for r in val],
            [r["val_loss"] for r in val],
            "o",
            color=line.get_color(),
            ms=3,
        )
        axes[1].plot([r["step"] for r in train], [r["l0"] for r in train], color=line.get_color(), label=name)
        axes[2].plot([r["step"] for r in train], [r["lr"] for r in train], color=line.get_color(), label=name)
    axes[0].set(xlabel="training tokens (M)", ylabel="loss (dots: held-out)", ylim=(None, 4))
    axes[1].set(xlabel="step", ylabel="L0 (nonzero fraction)", yscale="log")
    axes[2].set(xlabel="step", ylabel="learning rate (with sharkfin)")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
