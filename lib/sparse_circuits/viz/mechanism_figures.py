"""Figures of notebooks 08 and 09: how each circuit's attention (D2) and node roles (D3) differ from its model's.

The inputs are ``analysis.mechanism`` results per circuit key ("model/task/ablation"); the thresholds drawn
(sharp, near-uniform, name focus, moved, quiet) default to that module's and are named on the plots. Heads of
different models are different heads: the TV table has one panel per model. Legends sit beside the data.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..analysis.mechanism import MOVE, NAME_FOCUS, NEAR_UNIFORM, QUIET, SHARP
from .figures import legend_outside, threshold_line
from .walkthrough_figures import plot_patterns


def _finite(x: float) -> bool:
    return x == x and not math.isinf(x)


def by_model(keys) -> dict[str, list[str]]:
    """Circuit keys "model/task/ablation" grouped by model, in their order."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(key.split("/", 1)[0], []).append(key)
    return out


def plot_tv_table(heads_by_circuit: dict[str, list[dict]], title: str = ""):
    """A table-like heatmap per model: rows are that model's heads (L.h), columns its circuits, cells the mean TV
    distance between the model's and the pruned model's attention from the answer position. A cell is marked
    "lost" when the head lost its sharp pattern, "qk" when the head keeps a q-k pair, "v/q/k" when it keeps nodes
    but no pair, and "no head" when that circuit keeps no q/k/v node of the head."""
    groups = by_model(heads_by_circuit)
    rows_of = {
        m: sorted({(h["layer"], h["head"]) for key in keys for h in heads_by_circuit[key]})
        for m, keys in groups.items()
    }
    n_rows = max((len(r) for r in rows_of.values()), default=1)
    widths = [max(1, len(keys)) for keys in groups.values()]
    fig, axes = plt.subplots(
        1,
        max(1, len(groups)),
        figsize=(1.15 * sum(widths) + 1.6 * len(widths) + 1.2, 0.32 * max(1, n_rows) + 1.9),
        squeeze=False,
        width_ratios=widths or None,
        layout="constrained",
    )
    im = None
    for ax, (model, cols) in zip(axes[0], groups.items()):
        rows = rows_of[model]
        grid = np.full((max(1, len(rows)), len(cols)), np.nan)
        for j, key in enumerate(cols):
            for h in heads_by_circuit[key]:
                i = rows.index((h["layer"], h["head"]))
                grid[i, j] = h["tv_mean"]
                tag = "lost" if h["lost"] else ("qk" if h["qk_pairs"] else "v/q/k")
                colour = "white" if h["tv_mean"] > 0.6 else "black"
                ax.text(j, i, f"{h['tv_mean']:.2f}\n{tag}", ha="center", va="center", fontsize=6, color=colour)
        for i, j in zip(*np.nonzero(np.isnan(grid))):
            ax.text(j, i, "no head", ha="center", va="center", fontsize=5.5, color="#999999")
        im = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), [c.split("/", 1)[-1].replace("/", "\n") for c in cols], fontsize=7)
        ax.set_yticks(range(len(rows)), [f"L{la}.h{h}" for la, h in rows], fontsize=7)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("circuit (task / ablation)", fontsize=8)
    axes[0][0].set_ylabel("head with kept q/k/v nodes")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="mean TV distance", shrink=0.8)
    fig.suptitle(
        (title or "TV distance of attention from the answer position, model vs pruned")
        + '\n"no head": the circuit keeps no q/k/v node of that head',
        fontsize=9,
    )
    return fig


def _scatter_by_circuit(ax, heads_by_circuit: dict[str, list[dict]], model_value, pruned_value) -> None:
    """One point per kept head, model value (x) vs pruned value (y), one marker per circuit, and the diagonal
    where the two agree."""
    markers = "osD^vP*Xhp"
    for i, (key, heads) in enumerate(heads_by_circuit.items()):
        if heads:
            ax.scatter(
                [model_value(h) for h in heads],
                [pruned_value(h) for h in heads],
                marker=markers[i % len(markers)],
                s=28,
                alpha=0.8,
                label=key,
            )
    ax.plot([0, 1], [0, 1], ls=":", c="gray", lw=0.8)


def plot_entropy_scatter(
    heads_by_circuit: dict[str, list[dict]], sharp: float = SHARP, near_uniform: float = NEAR_UNIFORM
):
    """Normalized entropy of each kept head's attention, model (x) vs pruned (y), one marker per circuit; the
    shaded corner (sharp in the model, near-uniform pruned) holds the heads that lost their pattern."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    ax.fill_between([0, sharp], near_uniform, 1.02, color="tab:red", alpha=0.12, label="lost pattern")
    _scatter_by_circuit(ax, heads_by_circuit, lambda h: h["norm_entropy_model"], lambda h: h["norm_entropy_pruned"])
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="normalized entropy, model",
        ylabel="normalized entropy, pruned",
        title="attention from the answer position (1 = uniform)",
    )
    ax.annotate(f"sharp < {sharp:g}, pruned > {near_uniform:g}", (0.01, 1.0), fontsize=6, color="tab:red", va="top")
    fig.tight_layout()
    legend_outside(fig, fontsize=6)
    return fig


def plot_name_attention(heads_by_circuit: dict[str, list[dict]], name_focus: float = NAME_FOCUS):
    """Attention from the answer position on the name token(s), model (x) vs pruned (y), one point per kept head
    and one marker per circuit; heads right of the dashed line attend to the names in the model."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    _scatter_by_circuit(ax, heads_by_circuit, lambda h: h["to_names"][0], lambda h: h["to_names"][1])
    ax.axvline(name_focus, ls="--", c="gray", lw=0.8)
    ax.annotate(
        f"name focus {name_focus:g}",
        (name_focus, 1.0),
        xytext=(2, 0),
        textcoords="offset points",
        fontsize=7,
        color="gray",
        va="top",
    )
    ax.set(
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        xlabel="attention on the name token(s), model",
        ylabel="attention on the name token(s), pruned",
        title="where the answer position looks: the names",
    )
    fig.tight_layout()
    legend_outside(fig, fontsize=6)
    return fig


def plot_head_rows(heads: list[tuple[str, dict]], n_prompts: int = 6):
    """Example attention rows of several heads, model and pruned side by side (``walkthrough_figures.plot_patterns``),
    one row of panels per (circuit key, head_attention entry)."""
    if not heads:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no head to show", ha="center", va="center")
        ax.axis("off")
        return fig
    K = max(len(k) for _, h in heads for k in h["keys"][:n_prompts])
    width = 0.55 * K + 0.5
    height = 0.28 * n_prompts + 0.9
    fig, axes = plt.subplots(len(heads), 2, figsize=(2 * width, height * len(heads)), squeeze=False)
    for (key, h), row in zip(heads, axes):
        plot_patterns(h, n_prompts, axes=row)
        row[0].set_title(f"{key}\n" + row[0].get_title(), fontsize=8)
    fig.tight_layout()
    return fig


def plot_role_scatter(roles_by_circuit: dict[str, dict], move: float = MOVE, quiet: float = QUIET):
    """Per node: correlation of its activations, model vs pruned (x), against how far its signal moves between
    position classes (y), one panel per circuit; sign flips left of 0, moved nodes above the dashed line (unless
    their signal is silenced or awakened: grey triangles)."""
    keys = list(roles_by_circuit)
    ncols = min(4, max(1, len(keys)))
    nrows = -(-max(1, len(keys)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.9 * nrows), squeeze=False)
    for ax, key in zip(axes.flatten(), keys):
        r = roles_by_circuit[key]
        c, s = torch.nan_to_num(r["correlation"], nan=0.0), torch.nan_to_num(r["shift"], nan=0.0)
        undefined = r["correlation"].isnan()
        s_m, s_p = r["signal_model"], r["signal_pruned"]
        quiet_one = (s_p < quiet * s_m) | (s_m < quiet * s_p)
        plain = ~undefined & ~quiet_one
        ax.scatter(c[plain].numpy(), s[plain].numpy(), s=9, alpha=0.6, label="nodes")
        if bool((quiet_one & ~undefined).any()):
            q = quiet_one & ~undefined
            ax.scatter(
                c[q].numpy(),
                s[q].numpy(),
                s=12,
                marker="^",
                c="tab:gray",
                alpha=0.7,
                label="signal silenced / awakened",
            )
        if bool(undefined.any()):
            ax.scatter(
                c[undefined].numpy(), s[undefined].numpy(), s=12, marker="x", c="gray", label="constant in one model"
            )
        if "gender_flip" in r and bool(r["gender_flip"].any()):
            g = r["gender_flip"]
            ax.scatter(
                c[g].numpy(), s[g].numpy(), s=40, facecolors="none", edgecolors="tab:red", label="fires on other gender"
            )
        ax.axvline(0, c="gray", lw=0.8, ls=":")
        threshold_line(ax, move, f"moved: shift >= {move:g}")
        ax.set(
            xlim=(-1.05, 1.05),
            ylim=(-0.03, 1.0),
            title=f"{key} ({len(r['labels'])} nodes)",
            xlabel="correlation model vs pruned",
            ylabel="signal shift (TV of position shares)",
        )
        ax.title.set_fontsize(8)
    for ax in axes.flatten()[len(keys) :]:
        ax.set_visible(False)
    fig.tight_layout()
    legend_outside(fig, where="below")
    return fig


def plot_role_summary(summaries: dict[str, dict]):
    """Grouped bars per circuit: median correlation, share of sign-flipped nodes, share of moved nodes."""
    keys = list(summaries)
    stats = [
        ("median_correlation", "median correlation"),
        ("sign_flipped_fraction", "sign-flipped share"),
        ("moved_fraction", "moved-signal share"),
    ]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(1.0 * len(keys) + 3, 3.4))
    for i, (k, name) in enumerate(stats):
        vals = [summaries[c][k] if _finite(summaries[c][k]) else 0.0 for c in keys]
        ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=name)
    ax.set_xticks(x, [k.replace("/", "\n") for k in keys], fontsize=7)
    ax.axhline(0, c="black", lw=0.6)
    ax.set(ylim=(min(-0.1, ax.get_ylim()[0]), 1.05), ylabel="value", title="node roles per circuit, model vs pruned")
    fig.tight_layout()
    legend_outside(fig, fontsize=7)
    return fig
