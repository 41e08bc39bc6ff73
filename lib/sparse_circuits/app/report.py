"""Regenerates the README's results section from figures/results/*.json and the shipped models.

Each notebook's results file may hold a ``claims`` list of objects with ``id``, ``claim``, ``ours``,
``paper``, ``holds`` ("yes", "no", "partly" or "n/a") and ``figure`` (a path under figures/); the README
table lists them all, next to the model family and the notebooks' wall times.
"""

from __future__ import annotations

import json
import re

from ..core.paths import FIGURES_DIR, MODELS_DIR, REPO_ROOT
from .verdicts import NARROW_REGIME

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _fmt(x, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def training_cost(model_path) -> tuple[float | None, float | None]:
    """(wall seconds, tokens per second) of a model's training run, from the last training row of its
    metrics.jsonl (None when it records no time)."""
    path = model_path / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    last = next((r for r in reversed(rows) if "time_s" in r and "tokens" in r), None)
    if not last or not last["time_s"]:
        return None, None
    return last["time_s"], last["tokens"] / last["time_s"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def model_table() -> list[str]:
    rows = [
        "| model | d_model | L0 target | nonzero weights | held-out loss | training tokens | training time | tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in sorted(MODELS_DIR.glob("*/config.json")):
        c = json.loads(d.read_text())
        r = c.get("results", {})
        wall, rate = training_cost(d.parent)
        rows.append(
            f"| `{c['name']}` | {c['model']['d_model']} | {c['train']['l0_target']:.4g} | "
            f"{r.get('n_nonzero_sparsified', '?'):,} ({_fmt(r.get('nonzero_fraction', float('nan')))}) | "
            f"{_fmt(r.get('val_loss', float('nan')))} | {r.get('train_tokens', 0):,} | {_duration(wall)} | "
            f"{'?' if rate is None else f'{rate:,.0f}'} |"
        )
    return [
        *rows,
        "",
        "Training time and throughput as logged by each run on 2 CPU cores (machines shared with other jobs run "
        "slower); learning curves: [figures/01_training_curves.png](figures/01_training_curves.png).",
    ]


def samples_block() -> list[str]:
    """Greedy samples recorded by the training notebook (prompt || continuation)."""
    path = FIGURES_DIR / "results" / "01_training.json"
    samples = json.loads(path.read_text()).get("samples", {}) if path.exists() else {}
    if not samples:
        return []
    lines = ["", "Greedy samples (prompt `||` continuation):", "", "```"]
    for name, texts in samples.items():
        lines += [f"{name}:", *(f"  {t}" for t in texts)]
    return [*lines, "```"]


def rule_note(c: dict) -> str:
    """The verdict's rule, shown under it in the table when the notebook stated one."""
    return f"<br><sub>rule: {c['rule']}</sub>" if c.get("rule") else ""


def claims_table() -> list[str]:
    """All claims rows, each with the regime it was tested in; a row of another regime than the narrow models
    also says whether the verdict changed against the narrow models' row of the same id."""
    claims = []
    for path in sorted((FIGURES_DIR / "results").glob("*.json")):
        if path.name in ("timings.json", "figures_run.json"):
            continue
        claims += json.loads(path.read_text()).get("claims", [])
    if not claims:
        return ["No notebook results yet: run `make figures`."]
    narrow = [c for c in claims if not c.get("regime")]
    rows = ["| id | claim | ours | paper | holds here | regime | figure |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        fig = f"[figure]({c['figure']})" if c.get("figure") else ""
        rows.append(
            f"| {c.get('id', '')} | {c.get('claim', '')} | {c.get('ours', '')} | {c.get('paper', '')} | "
            f"{c.get('holds', '')}{rule_note(c)} | {regime_note(c, narrow)} | {fig} |"
        )
    return rows


def _claim_core(text: str) -> str:
    """A claim's text without a trailing parenthesis such as "(tuned pruning)"."""
    return re.sub(r"\s*\([^()]*\)$", "", text or "")


def regime_note(c: dict, narrow: list[dict]) -> str:
    """The regime of a claims row; for a wide-regime row, the verdicts of the narrow models' rows of the same
    claim (same id and text, but for a trailing parenthesis), or of every narrow row of its id if none matches
    (one id can name several claims, e.g. D5's circuit size, residual RMS and generalization flip)."""
    if not c.get("regime"):
        return NARROW_REGIME
    same_id = [n for n in narrow if n.get("id", "") == c.get("id", "")]
    same_text = [n for n in same_id if _claim_core(n.get("claim", "")) == _claim_core(c.get("claim", ""))]
    before = [n.get("holds", "") for n in same_text or same_id]
    if not before:
        return f"{c['regime']} (not tested on the narrow models)"
    same = all(v == c.get("holds") for v in before)
    return f"{c['regime']} ({'same as' if same else 'changed from'} narrow: {', '.join(before)})"


def timings_table() -> list[str]:
    path = FIGURES_DIR / "results" / "timings.json"
    if not path.exists():
        return []
    t = json.loads(path.read_text())
    line = (
        "Notebook wall times at full scale (2 CPU cores): "
        + ", ".join(f"`{k}` {v:.0f} s" for k, v in sorted(t.items()))
        + f"; total {sum(t.values()) / 60:.1f} min. Each is the notebook's last full run as it ran: a run that finds its"
        " circuits saved in `runs/full/circuits` (notebooks 08-11, 14 and 15 keep theirs, or some of them, there) prunes less than a fresh"
        " clone's first run."
    )
    run_path = FIGURES_DIR / "results" / "figures_run.json"
    if run_path.exists():
        run = json.loads(run_path.read_text())
        line += (
            f" The last full run of {len(run['notebooks'])} notebooks, {run['jobs']} at a time (each timed beside"
            f" another), took {run['wall_s'] / 60:.1f} min of wall time."
        )
    return ["", line]


def results_markdown() -> str:
    lines = [
        "### Shipped models",
        "",
        *model_table(),
        *samples_block(),
        "",
        "### Claims",
        "",
        *claims_table(),
        *timings_table(),
    ]
    return "\n".join(lines)


def update_readme(readme=None) -> bool:
    """Replace the text between the results markers of README.md; returns True if it changed."""
    readme = readme or REPO_ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} lacks the markers {START} ... {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{results_markdown()}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text
