"""Renders the README's performance section from the benchmarks' result files.

Reads bench/results/{corpus,sparse,train,prune}.json (whichever exist) and, when a CUDA run left them,
bench/results/cuda/*.json, and prints the Markdown; ``--write`` replaces the text between the markers
``<!-- perf:start -->`` and ``<!-- perf:end -->`` of README.md with it instead. Every number of the section comes
from the JSON, rounded to 3 significant digits, so the README cannot drift from the measurements.

    python bench/report.py [--write] [--results bench/results] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- perf:start -->", "<!-- perf:end -->"
CPU_BENCHMARKS = ("corpus", "train", "sparse", "prune")
CUDA_BENCHMARKS = ("train", "sparse", "prune")  # the corpus benchmark has no device
GOAL_TEXT = {
    "sparse_not_slower_than_dense_at_l0_le_1_32": "sparse step not slower than dense at L0 <= 1/32",
    "sparse_1.5x_baseline_at_d256_and_d512": "sparse step 1.5x faster than the baseline at d256 and d512",
}


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits: 879647.9 -> '880k', 3889.6 -> '3890', 1.3067 -> '1.31'."""
    x = float(x)
    if x != x or abs(x) == float("inf"):
        return str(x)
    r = float(f"{x:.{digits}g}")
    if abs(r) >= 1e6:
        return f"{r / 1e6:g}M"
    if abs(r) >= 1e4:
        return f"{r / 1e3:g}k"
    if abs(r) >= 1e3:
        return str(int(r))
    return f"{r:g}"


def fraction(p: float) -> str:
    """A density or L0 as 1/n when it is one (0.015625 -> '1/64'), else 3 significant digits."""
    inv = 1 / p if p else 0
    return f"1/{round(inv)}" if p and abs(inv - round(inv)) < 1e-6 else sig(p)


def mb(x: float) -> str:
    return f"{sig(x)} MB"


def minutes(x: float) -> str:
    return f"{sig(x)} min" + (f" (~{sig(x / 60)} h)" if x >= 120 else "")


def load(results: Path, names: tuple[str, ...]) -> dict[str, dict | None]:
    return {
        n: json.loads((results / f"{n}.json").read_text()) if (results / f"{n}.json").exists() else None for n in names
    }


def machine_note(data: dict) -> str:
    m = data.get("machine")
    if isinstance(m, dict):
        parts = [f"torch {m.get('torch', '?')}", f"{m.get('threads', '?')} threads", m.get("processor", "?")]
        if m.get("device"):
            parts.append(m["device"])
        return ", ".join(parts)
    # bench_corpus.py records the platform's machine name and the CPU count (it does not use torch)
    return ", ".join(str(p) for p in (m, f"{data['cpu_count']} CPUs" if "cpu_count" in data else None) if p)


def not_measured(title: str, script: str, make: str) -> list[str]:
    return [f"- **{title}** (`{script}`): not measured yet (run make {make})."]


def corpus_lines(c: dict) -> list[str]:
    gen, tok = c["generation"], c["tokenization_encode_batch"]
    when = f", measured {c['time']}" if c.get("time") else ""
    return [
        f"- **Corpus** (`bench_corpus.py`{when}): {sig(gen['tokens_per_s'])} tokens/s generated "
        f"({sig(gen['stories_per_s'])} stories/s), {sig(tok['tokens_per_s'])} tokens/s tokenized "
        f"(`encode_batch`, chunks of {tok['chunk']})."
    ]


def goal_lines(goals: dict) -> list[str]:
    lines = []
    for key, per_width in goals.items():
        verdicts = ", ".join(f"d{d} {'met' if ok else 'not met'}" for d, ok in per_width.items()) or "no width measured"
        lines.append(f"{GOAL_TEXT.get(key, key.replace('_', ' '))}: {verdicts}")
    return ["Goals: " + "; ".join(lines) + "."] if lines else []


def train_lines(t: dict) -> list[str]:
    rev = t.get("baseline_revision")
    widths = t["widths"]
    has_base = any("speedup_over_baseline" in row for row in widths.values())
    against = f"; this code against revision `{rev}` in the same run" if rev and has_base else ""
    lines = [
        f"- **Training** (`bench_train.py`, ctx {t['n_ctx']}, batch {t['batch_size']}, vocab {t['vocab_size']}"
        f"{against}); matmul peak {sig(t['matmul_peak_gflops'])} GFLOP/s in the same run:",
        "",
    ]
    on_cuda = t.get("device", "cpu") != "cpu"
    mem_key, mem_name = ("peak_cuda_mb", "peak CUDA memory") if on_cuda else ("peak_rss_mb", "peak RSS")
    head = "| width | L0 | dense tok/s | sparse tok/s | sparse/dense step time |"
    rule = "|---|---:|---:|---:|---:|"
    if has_base:
        head += f" speedup vs `{rev}` dense / sparse |"
        rule += "---:|"
    head += f" {mem_name} dense / sparse |"
    rule += "---:|"
    lines += [f"  {head}", f"  {rule}"]
    for d, row in widths.items():
        cells = [
            f"d{d}",
            fraction(row["l0"]),
            sig(row["dense"]["tokens_per_s"]),
            sig(row["sparse"]["tokens_per_s"]),
            sig(row["sparse_over_dense_step_time"]),
        ]
        if has_base:
            s = row.get("speedup_over_baseline")
            cells.append(f"{sig(s['dense'])}x / {sig(s['sparse'])}x" if s else "-")
        cells.append(f"{mb(row['dense'].get(mem_key, float('nan')))} / {mb(row['sparse'].get(mem_key, float('nan')))}")
        lines.append("  | " + " | ".join(cells) + " |")
    goals = goal_lines(t.get("goals", {}))
    return lines + (["", "  " + goals[0]] if goals else [])


def sparse_lines(s: dict) -> list[str]:
    cells = s["cells"]
    densities = sorted({c["density"] for c in cells}, reverse=True)
    dims = sorted({c["d"] for c in cells})
    rows = sorted({c["rows"] for c in cells})
    lines = [
        f"- **Sparse execution** (`bench_sparse.py`, `model/sparse_exec.py`): forward plus input gradient of an MLP "
        f"W_in [4d, d], CSR against dense, speedup over {' and '.join(map(str, rows))} input rows; **bold**: the "
        f"automatic rule, as it stood in that run, picks sparse (at every row count, else the row counts where it "
        f"does). Dense matmul peak "
        f"{sig(s['matmul_peak_gflops'])} GFLOP/s in the same run.",
        "",
        "  | width | " + " | ".join(f"density {fraction(p)}" for p in densities) + " |",
        "  |---|" + "---:|" * len(densities),
    ]
    for d in dims:
        out = []
        for p in densities:
            here = [c for c in cells if c["d"] == d and c["density"] == p]
            if not here:
                out.append("-")
                continue
            speed = [c["fwd_plus_dx_speedup"] for c in here]
            lo, hi = sig(min(speed)), sig(max(speed))
            text = f"{lo}x" if lo == hi else f"{lo}-{hi}x"
            picks = [c["rows"] for c in here if c["rule_picks_sparse"]]
            if picks and len(picks) == len(here):
                text = f"**{text}**"
            elif picks:
                text += f" (**sparse** at {', '.join(map(str, sorted(picks)))} rows)"
            out.append(text)
        lines.append(f"  | d{d} | " + " | ".join(out) + " |")
    return lines


def prune_lines(p: dict) -> list[str]:
    goal = p["goal"]
    goal_text = f"{goal['seeds']} seeds x {goal['steps']} steps x {goal['batch_size']} prompts"
    on_cuda = p.get("device", "cpu") != "cpu"
    mem_key, mem_name = ("peak_cuda_mb", "peak CUDA memory") if on_cuda else ("peak_rss_mb", "peak RSS")
    lines = [f"- **Pruning** (`bench_prune.py`, batch {p['batch_size']}; goal run {goal_text}):"]
    models = p.get("models", {})
    if models:
        seeds = p["seeds"]
        lines += [
            "",
            f"  | model | nodes | steps/s, 1 seed | steps/s, {seeds} seeds | seed-steps/s | batched / single "
            f"| goal run projected | sparse layers (auto) | {mem_name} |",
            "  |---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in models.items():
            lines.append(
                f"  | `{name}` | {row['nodes']} | {sig(row['steps_per_s_1_seed'])} | "
                f"{sig(row[f'steps_per_s_{seeds}_seeds'])} | {sig(row['seed_steps_per_s'])} | "
                f"{sig(row['seed_steps_per_s_batched_over_single'])}x | {minutes(row['projected_goal_minutes'])} | "
                f"{row['sparse_layers']} | {mb(row[mem_key])} |"
            )
    big = p.get("random_sparse") or {}
    rows = big.get("rows", {})
    if "dense" in rows and "auto" in rows:
        dense, auto = rows["dense"], rows["auto"]
        lines += [
            "",
            f"  Random d{big['d']} L0 {fraction(big['l0'])} model ({big['seeds']} seeds, {big['steps']} timed steps): "
            f"dense {sig(dense['seed_steps_per_s'])} vs auto {sig(auto['seed_steps_per_s'])} seed-steps/s "
            f"({auto['sparse_layers']} Linear layers sparse under auto) = {sig(big['auto_over_dense'])}x; goal run "
            f"projected {minutes(dense['projected_goal_minutes'])} dense, {minutes(auto['projected_goal_minutes'])} "
            f"auto; {mem_name} {mb(dense[mem_key])} dense, {mb(auto[mem_key])} auto.",
        ]
        if "memory" in big:  # one step with the goal run's seeds: its peak memory
            mem = big["memory"]
            lines[-1] += f" {mem['seeds']} seeds x {p['batch_size']} prompts at once (auto): {mb(mem[mem_key])}."
        if "dense_1" in rows:  # the dense path at one run per pass (its own fastest at this width)
            lines[-1] += (
                f" Dense at one run per pass: {sig(rows['dense_1']['seed_steps_per_s'])} seed-steps/s; auto over the "
                f"faster dense row: {sig(big['auto_over_best_dense'])}x."
            )
    return lines


def machines_line(data: dict[str, dict | None]) -> str:
    notes: dict[str, list[str]] = {}
    for name, d in data.items():
        if d is not None:
            notes.setdefault(machine_note(d), []).append(name)
    if not notes:
        return "Machine: no results yet."
    return "Machine: " + "; ".join(f"{note} ({', '.join(names)})" for note, names in notes.items()) + "."


def section(data: dict[str, dict | None], make: str) -> list[str]:
    renderers = {
        "corpus": ("Corpus", "bench_corpus.py", corpus_lines),
        "train": ("Training", "bench_train.py", train_lines),
        "sparse": ("Sparse execution", "bench_sparse.py", sparse_lines),
        "prune": ("Pruning", "bench_prune.py", prune_lines),
    }
    lines = [machines_line(data), ""]
    for name, d in data.items():
        title, script, fn = renderers[name]
        lines += [*(fn(d) if d is not None else not_measured(title, script, make)), ""]
    return lines[:-1]


def render(results: Path = RESULTS) -> str:
    """The Markdown between the markers (no trailing newline)."""
    lines = [
        "Generated by `python bench/report.py --write` from `bench/results/*.json`. Ratios (sparse/dense, "
        "against the baseline revision, auto/dense) are measured side by side in one run, so they hold while "
        "absolute numbers move with the machine's load. Where torch sees a GPU, `make gpu-check` runs the exactness "
        "tests and the training, sparse-execution and pruning benchmarks on CUDA and adds their numbers as a "
        "subsection (results in `bench/results/cuda/`); nothing requires a GPU.",
        "",
        *section(load(results, CPU_BENCHMARKS), "bench"),
    ]
    cuda_dir = results / "cuda"
    if cuda_dir.is_dir() and any(cuda_dir.glob("*.json")):
        lines += ["", "### On CUDA (`make gpu-check`)", "", *section(load(cuda_dir, CUDA_BENCHMARKS), "gpu-check")]
    return "\n".join(lines)


def replace_section(text: str, body: str) -> str:
    """``text`` with everything between the markers replaced by ``body``; the rest byte for byte unchanged."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the README needs exactly one {START} followed by one {END} around its performance section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body}\n{END}{tail}"


def current_section(text: str) -> str:
    """The body between the markers as ``replace_section`` writes it."""
    if START not in text or END not in text:
        raise ValueError(f"the README lacks the markers {START} ... {END}")
    return text.split(START, 1)[1].split(END, 1)[0].removeprefix("\n").removesuffix("\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="rewrite the README's section instead of printing it")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    body = render(args.results)
    if not args.write:
        print(body)
        return
    try:  # bytes, so that line endings outside the markers stay as they are
        new = replace_section(args.readme.read_bytes().decode("utf-8"), body)
    except ValueError as e:
        sys.exit(f"{args.readme}: {e}")
    args.readme.write_bytes(new.encode("utf-8"))
    print(f"wrote the performance section of {args.readme}")


if __name__ == "__main__":
    main()
