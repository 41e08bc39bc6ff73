"""Figures of a circuit walkthrough (notebooks 04-06): prompts coloured by a node's activation, a head's attention
from the answer position, and direct logit effects; model and pruned model side by side.

The numbers come from ``analysis.walkthrough`` and ``analysis.inspection``; nothing here computes them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..analysis.compare import prompt_tokens
from ..analysis.walkthrough import valid_mask
from ..tasks import TaskData


def _token_grid(ax, values: torch.Tensor, tokens: list[list[str]], scale: float, title: str, cmap: str = "RdBu"):
    """Prompts as rows of coloured token cells (blue positive, red negative), the value scale shared."""
    n, T = values.shape
    grid = torch.full((n, T), float("nan"))
    for i, toks in enumerate(tokens):
        grid[i, : len(toks)] = values[i, : len(toks)]
    ax.imshow(grid.numpy(), cmap=cmap, vmin=-scale, vmax=scale, aspect="auto")
    for i, toks in enumerate(tokens):
        for j, t in enumerate(toks):
            ax.text(j, i, t, ha="center", va="center", fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def table_panels(table: dict) -> dict[str, torch.Tensor]:
    """An ``inspection.activation_table`` as two ``plot_activations`` panels: "<label> model", "<label> pruned"."""
    return {f"{table['label']} model": table["original"], f"{table['label']} pruned": table["pruned"]}


def plot_activations(
    values_by_title: dict[str, torch.Tensor],
    data: TaskData,
    tok,
    n_prompts: int = 8,
    ncols: int = 2,
    scale: float | None = None,
):
    """One panel per entry (e.g. {"L1.v.h5.8 model": ..., "L1.v.h5.8 pruned": ...}), ``ncols`` to a row: the
    first ``n_prompts`` prompts as rows of tokens coloured by the node's activation (blue positive, red
    negative), on one shared scale. Returns the figure."""
    tokens = prompt_tokens(tok, data)[:n_prompts]
    vals = {k: v[:n_prompts].float() for k, v in values_by_title.items()}
    valid = valid_mask(data, include_eos=True)[:n_prompts]
    if scale is None:
        scale = max(float(v[valid].abs().max()) for v in vals.values()) or 1.0
    ncols = min(ncols, len(vals))
    nrows = -(-len(vals) // ncols)
    width = 0.55 * data.tokens.shape[1] + 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, (0.28 * len(tokens) + 0.6) * nrows), squeeze=False)
    for ax, (title, v) in zip(axes.flatten(), vals.items()):
        _token_grid(ax, v, tokens, scale, f"{title} (|max| {scale:.2g})")
    for ax in axes.flatten()[len(vals) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_patterns(pat: dict, n_prompts: int = 6, axes=None):
    """Attention from the answer position of one head (``compare.head_patterns``): model and pruned model side
    by side, prompts as rows, the sink as the first cell of each row. Returns the figure."""
    keys = [k for k in pat["keys"][:n_prompts]]
    panels = {"model": pat["original"][:n_prompts], "pruned": pat["pruned"][:n_prompts]}
    if axes is None:
        width = 0.55 * max(map(len, keys)) + 0.5
        _, axes = plt.subplots(1, 2, figsize=(2 * width, 0.28 * len(keys) + 0.6), squeeze=False)
        axes = axes[0]
    for ax, (name, p) in zip(axes, panels.items()):
        n, K = len(keys), max(map(len, keys))
        grid = torch.full((n, K), float("nan"))
        for i, row in enumerate(keys):
            grid[i, : len(row)] = p[i, : len(row)].float()
        ax.imshow(grid.numpy(), cmap="Greys", vmin=0, vmax=1, aspect="auto")
        for i, row in enumerate(keys):
            for j, t in enumerate(row):
                w = float(grid[i, j])
                ax.text(
                    j, i, f"{t}\n{w:.2f}", ha="center", va="center", fontsize=5, color="white" if w > 0.5 else "black"
                )
        ax.set_xticks([])
        ax.set_yticks([])
        ent = pat["entropy_original" if name == "model" else "entropy_pruned"][:n].mean()
        ax.set_title(
            f"L{pat['layer']} head {pat['head']}, {name}: entropy {float(ent):.2f}"
            + (f", TV to model {pat['tv_mean']:.2f}" if name == "pruned" else ""),
            fontsize=8,
        )
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_logit_effects(effects: dict[str, dict[str, float]], title: str = "", ax=None):
    """Grouped horizontal bars of mean direct logit effects, ``{group: {label: value}}`` (every group the same
    labels), in the order given (top to bottom). Returns the figure."""
    groups = list(effects)
    labels = list(effects[groups[0]])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.3 * len(labels) * max(1, len(groups)) / 1.5 + 1.0))
    h = 0.8 / len(groups)
    ys = torch.arange(len(labels), dtype=torch.float32).flip(0)
    for i, gname in enumerate(groups):
        ax.barh((ys + 0.4 - h * (i + 0.5)).tolist(), [effects[gname][k] for k in labels], height=h, label=gname)
    ax.set_yticks(ys.tolist(), labels, fontsize=7)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
    ax.figure.tight_layout()
    return ax.figure
