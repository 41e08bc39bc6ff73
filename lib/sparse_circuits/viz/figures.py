"""Static matplotlib figures for notebooks and papers (written to figures/ with fixed names, no timestamps).

Shared conventions: a loss-vs-size frontier is drawn as its running minimum (``plot_frontier``: the best loss
reached with at most n nodes, the raw points faint behind it), every threshold line carries its name on the
plot (``threshold_line``), and legends sit outside the data area (``legend_outside``).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..analysis.generalization import BAD_THRESHOLD
from ..circuits.layout import NodeLayout
from ..core.paths import figures_dir
from ..model.gpt import NODE_SITES


def savefig(fig, name: str, profile: str = "full") -> Path:
    """Save as <figures dir>/<name>.png (PNG metadata without dates, so reruns give identical files)."""
    path = figures_dir(profile) / f"{name}.png"
    fig.savefig(path, dpi=130, bbox_inches="tight", metadata={"Software": None})
    return path


def running_min(xs, ys) -> tuple[list[float], list[float]]:
    """(x sorted ascending, the lowest y at or below each x): the best loss reached with at most x nodes.

    Non-finite y values never lower the minimum (they stay infinite until a finite one comes)."""
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    x = np.asarray(xs, dtype=float)[order]
    y = np.asarray(ys, dtype=float)[order]
    y = np.where(np.isfinite(y), y, np.inf)
    return x.tolist(), np.minimum.accumulate(y).tolist()


def plot_frontier(ax, xs, ys, label: str | None = None, color=None, floor: float | None = None, **kw):
    """A loss-vs-size frontier on ``ax``: the raw points (x, y) faint, their running minimum as a step line
    (``running_min``). ``floor`` lifts values below it (for log axes: a loss of 0 cannot be drawn). Extra keywords
    go to the step line. Returns the step line (its colour is the frontier's)."""
    x, best = running_min(xs, ys)
    y_raw = np.asarray(ys, dtype=float)
    if floor is not None:
        best, y_raw = np.maximum(best, floor).tolist(), np.maximum(y_raw, floor)
    (line,) = ax.step(x, best, where="post", color=color, lw=1.4, label=label, **kw)
    ax.plot(xs, y_raw, "o", ms=3, color=line.get_color(), alpha=0.25, zorder=line.get_zorder() - 0.1)
    return line


def threshold_line(ax, y: float, label: str, ls: str = "--", color: str = "gray") -> None:
    """A horizontal threshold with its name written on it at the left edge (e.g. "target loss 0.15"), on a
    half-transparent white box so that it stays readable over data points."""
    ax.axhline(y, ls=ls, c=color, lw=0.8)
    ax.annotate(
        label,
        (0.01, y),
        xycoords=("axes fraction", "data"),
        xytext=(0, 2),
        textcoords="offset points",
        fontsize=7,
        color=color,
        va="bottom",
        bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 0.5},  # readable over dense points
    )


def legend_outside(fig, axes=None, where: str = "right", **kw):
    """One legend for the figure outside its panels (``where``: "right" or "below"), from the labelled artists of
    ``axes`` (default: every axes of the figure), each label once. Returns the legend, or None without labels."""
    handles, labels = {}, []
    for ax in axes if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if not labels:
        return None
    kw = {"frameon": False, "fontsize": 8, **kw}
    if where == "right":
        return fig.legend([handles[k] for k in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5), **kw)
    if where == "below":
        kw.setdefault("ncol", min(len(labels), 4))
        return fig.legend([handles[k] for k in labels], labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), **kw)
    raise ValueError(f"legend_outside: where must be 'right' or 'below', not {where!r}")


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
    fig.tight_layout()
    legend_outside(fig)
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
    fig.tight_layout()
    legend_outside(fig, axes[:1])
    return fig


def plot_residual_rms(groups: dict[str, dict]):
    """Boxes of the residual RMS before the final norm, per group (x label: the dict key): the model's, the
    free-norm circuits' and the frozen-norm circuits' (values: tensors of any shape, e.g. [circuits, prompts];
    an empty one draws no box). Drori's App. C: pruning shrinks it, the final norm scales it back up."""
    if not groups:
        raise ValueError("plot_residual_rms: no group to draw")
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(groups)), 3.6))
    data_box, pos, colors = [], [], []
    for g, r in enumerate(groups.values()):
        for o, (name, col) in enumerate((("model", "0.5"), ("free", "C0"), ("frozen", "C1"))):
            v = r[name].flatten()
            if v.numel():
                data_box.append(v.numpy())
                pos.append(4 * g + o)
                colors.append(col)
    bp = ax.boxplot(
        data_box, positions=pos, widths=0.8, showfliers=False, patch_artist=True, medianprops={"color": "k"}
    )
    for patch, col in zip(bp["boxes"], colors):
        patch.set_facecolor(col)
    ax.set_xticks([4 * g + 1 for g in range(len(groups))], list(groups), fontsize=8)
    ax.set(ylabel="residual RMS before the final norm", title="answer position, held-out prompts")
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c) for c in ("0.5", "C0", "C1")]
    labels = ["model", "free-norm circuits", "frozen-norm circuits"]
    ax.legend(handles, labels, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_same_gender_by_mode(ax, by_mode: dict[str, dict], title: str) -> None:
    """Histograms of held-out same-gender IOI P_correct over the seeds reaching the target, one per norm mode
    (``by_mode``: "free" / "frozen" -> ``generalization.summarize`` output), with the model's P_correct (from the
    first mode's study) and the bad-circuit threshold as vertical lines (D5: frozen against free norms)."""
    for (mode, s), col in zip(by_mode.items(), ("C0", "C1")):
        vals = [p for p, r in zip(s["eval"]["ioi_same"]["p_correct"], s["reached"]) if r]
        ax.hist(vals, bins=np.linspace(0, 1, 21), alpha=0.6, color=col, label=f"{mode} norms ({len(vals)} seeds)")
    first = next(iter(by_mode.values()))
    ax.axvline(first["model_rates"]["ioi_same"]["p_correct"], ls="--", c="k", lw=1, label="model")
    ax.axvline(BAD_THRESHOLD, ls=":", c="gray", lw=1, label=f"bad below {BAD_THRESHOLD}")
    ax.set(title=title, xlabel="mean P_correct", ylabel="seeds")


def plot_sweep_trials(sweeps: dict[str, dict[str, dict | None]], models: list[str], tasks: list[str]):
    """One panel per task that some model has a sweep for: every trial of each model's hyperparameter sweep as
    circuit nodes against its k_coef (filled: reached the target loss; hollow: missed it), the legend naming each
    model's best circuit. ``sweeps``: ``app.regime.tuned_sweeps``'s {model: {task: sweep or None}}."""
    shown = [t for t in tasks if any(sweeps[m][t] for m in models)]
    if not shown:
        raise ValueError(f"plot_sweep_trials: no sweep for any of {models} on {tasks}")
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 3.6), squeeze=False)
    for ax, t in zip(axes[0], shown):
        for i, m in enumerate(models):
            s = sweeps[m][t]
            if s is None:
                continue
            for reached in (True, False):
                trials = [tr for tr in s["trials"] if tr["reached"] == reached]
                style = (
                    dict(color=f"C{i}", label=f"{m} (best {s['best_nodes']})")
                    if reached
                    else dict(facecolors="none", edgecolors=f"C{i}")
                )
                ax.scatter([tr["k_coef"] for tr in trials], [tr["nodes"] for tr in trials], s=18, **style)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="k_coef (penalty per kept node)",
            ylabel="circuit nodes",
            title=f"{t}: sweep trials (filled: reached the target loss)",
        )
    legend_outside(fig, axes[0][:1])
    return fig


def plot_size_records(records: list[dict], models: list[str], tasks: list[str], title: str = ""):
    """Circuit nodes and edges per (task, model), one dot per seed reaching the target loss and a bar at their
    geometric mean (C1 over seeds). ``records``: ``app.regime.size_records`` rows."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key in zip(axes, ("nodes", "edges")):
        for j, t in enumerate(tasks):
            for i, m in enumerate(models):
                ys = [r[key] for r in records if r["model"] == m and r["task"] == t and r["reached"]]
                at = j + (i - (len(models) - 1) / 2) * 0.25
                xs = at + np.linspace(-0.06, 0.06, max(len(ys), 1))[: len(ys)]
                ax.scatter(xs, ys, s=14, color=f"C{i}", label=m if j == 0 else None)
                if ys:
                    ax.hlines(np.exp(np.mean(np.log(ys))), at - 0.1, at + 0.1, color=f"C{i}")
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set(yscale="log", ylabel=f"circuit {key} (seeds reaching the target)",
               title=f"{key}: dots seeds, bars geometric means")  # fmt: skip
    if title:
        fig.suptitle(title)
    legend_outside(fig, axes[:1])
    return fig


def plot_search_twins(twins: dict[str, dict], far_ratio: float):
    """Two panels for ``app.regime.search_twins``: each circuit's nodes under the standard search against the
    trained-count search (one colour per group; hollow: missed the target under either), and both searches' node
    counts against the nodes training kept, with the line where a circuit has ``far_ratio`` times as many."""
    rows = [r for t in twins.values() for r in t["rows"]]
    if not rows:
        raise ValueError("plot_search_twins: no circuits")
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.4))
    for i, (group, t) in enumerate(twins.items()):
        col = plt.cm.tab20(i % 20)  # more groups than the ten default colours
        x, y = [r["standard_nodes"] for r in t["rows"]], [r["trained_nodes"] for r in t["rows"]]
        both = [r["standard_reached"] and r["trained_reached"] for r in t["rows"]]
        a.scatter([v for v, k in zip(x, both) if k], [v for v, k in zip(y, both) if k], s=22, color=col, label=group)
        a.scatter([v for v, k in zip(x, both) if not k], [v for v, k in zip(y, both) if not k], s=22,
                  facecolors="none", edgecolors=col)  # fmt: skip
    kept = [max(r["kept_in_training"] or 0, 1) for r in rows]
    b.scatter(kept, [r["standard_nodes"] for r in rows], s=26, marker="x", color="C3", label="standard search")
    b.scatter(kept, [r["trained_nodes"] for r in rows], s=16, color="C0", label="trained-count search")
    lo = 1
    hi = max(max(r["standard_nodes"], r["trained_nodes"], k) for r, k in zip(rows, kept)) * 1.5
    a.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    b.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="as many as training kept")
    b.plot([lo, hi / far_ratio], [far_ratio * lo, hi], color="gray", lw=1, ls=":", label=f"{far_ratio:g}x as many")
    a.set(xscale="log", yscale="log", xlabel="nodes, standard search", ylabel="nodes, trained-count search",
          title="the same logits discretized by both searches")  # fmt: skip
    b.set(xscale="log", yscale="log", xlabel="nodes with a positive logit at the last step (at least 1)",
          ylabel="circuit nodes", title="circuit size against what training kept")  # fmt: skip
    b.legend(fontsize=8, loc="lower right")
    legend_outside(fig, [a], where="below", ncol=3, fontsize=8)
    return fig


def plot_suite_passes(rows: dict[str, dict], measures: tuple[str, ...], title: str):
    """The faithfulness suite as a grid: one row per circuit ({label: {"nodes", "metrics", "passes"}}, as
    ``app.faithful_study.score_case`` returns them), one column per measure; each cell shows the measured value,
    green when it passes its threshold, red when it fails, yellow when the measure is undefined."""
    labels = list(rows)
    status = np.array([[{True: 1.0, False: 0.0, None: 0.5}[rows[k]["passes"][n]] for n in measures] for k in labels])
    fig, ax = plt.subplots(figsize=(1.0 * len(measures) + 3, 0.42 * len(labels) + 1.5))
    ax.imshow(status, cmap="RdYlGn", vmin=-0.2, vmax=1.2, aspect="auto")
    for i, k in enumerate(labels):
        for j, n in enumerate(measures):
            v = rows[k]["metrics"][n]
            ax.text(j, i, "n/a" if v is None else f"{v:.2g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(measures)), measures, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), [f"{k} ({rows[k]['nodes']} nodes)" for k in labels], fontsize=8)
    ax.set_title(f"{title}: green passes, red fails, yellow n/a")
    fig.tight_layout()
    return fig
