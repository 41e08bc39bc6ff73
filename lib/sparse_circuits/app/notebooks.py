"""Run every notebook as a papermill template: ``python -m sparse_circuits.app.notebooks {smoke,full} [NAME ...]``.

- smoke: each notebook with ``profile="smoke"`` into runs/smoke/, then nbval (lax) re-executes the executed
  copies and compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``. Used by ``make test``.
- full: each notebook with ``profile="full"`` into runs/full/; figures and numbers land in figures/; wall
  times are recorded in figures/results/timings.json and the README's results section is regenerated.

``--jobs N`` runs the notebooks that use every core (00-03) one by one, then the single-threaded ones (04-14 fix
torch to one thread) up to N at once, each in its own kernel, longest first (by the recorded full-scale times). No
notebook reads another's results (the circuit cache that 08 and 09 share is keyed by everything a circuit depends
on and written atomically), so on a 2-core machine two jobs do twice the work with the same results; a full
run of every notebook with jobs > 1 also records its total wall time in figures/results/figures_run.json. Each single-threaded
notebook's own time is then measured beside another one.

Kernels run with ``core.progress.TEXT_PROGRESS_ENV`` set, so progress bars are saved as text in the executed
notebooks (a widget bar would be saved empty).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from ..core.paths import NOTEBOOKS_DIR, RUNS_DIR, check_profile, results_dir
from ..core.progress import TEXT_PROGRESS_ENV
from .report import update_readme

KERNEL = "python3"


def kernel_env() -> dict[str, str]:
    """This process's environment plus text progress bars: kernels inherit it (papermill and nbval alike)."""
    return {**os.environ, TEXT_PROGRESS_ENV: "1"}


def notebook_paths(names: list[str] | None = None):
    paths = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if names:
        wanted = set(names)
        paths = [p for p in paths if p.stem in wanted or p.stem.split("_", 1)[0] in wanted]
        missing = wanted - {p.stem for p in paths} - {p.stem.split("_", 1)[0] for p in paths}
        if missing:
            raise FileNotFoundError(f"no notebooks named {sorted(missing)} in {NOTEBOOKS_DIR}")
    return paths


def execute_one(profile: str, nb, out_dir) -> float:
    """Run one notebook through papermill into ``out_dir`` (in its own folder); returns its wall time in seconds."""
    import papermill

    os.environ.update(kernel_env())  # papermill starts the kernel with this process's environment
    t0 = time.perf_counter()
    papermill.execute_notebook(
        str(nb),
        str(out_dir / nb.name),
        parameters={"profile": profile},
        kernel_name=KERNEL,
        cwd=str(nb.parent),
        progress_bar=False,
    )
    return round(time.perf_counter() - t0, 1)


def longest_first(paths: list) -> list:
    """The notebooks by their recorded full-scale wall time, longest first (unrecorded ones first of all), so
    that a pool of jobs does not end with one long notebook running alone."""
    path = results_dir("full") / "timings.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    return sorted(paths, key=lambda nb: -recorded.get(nb.stem, float("inf")))


def single_threaded(nb) -> bool:
    """Whether the notebook pins torch to one thread (``threads = 1`` in its parameters cell): only such notebooks
    share the machine with others; one that uses every core would fight them for the cores (and its matmul threads
    would wait on each other), so it runs alone."""
    import nbformat

    cells = nbformat.read(nb, as_version=4).cells
    params = [c.source for c in cells if "parameters" in c.metadata.get("tags", [])]
    return any(re.search(r"^threads\s*=\s*1\b", src, re.MULTILINE) for src in params)


def execute(profile: str, names: list[str] | None = None, jobs: int = 1) -> dict[str, float]:
    """Run the notebooks (all, or those named), ``jobs`` at a time; returns each one's wall time in seconds.

    With jobs > 1 the notebooks that use every core run first, one by one, then the single-threaded ones
    (``single_threaded``) ``jobs`` at a time, longest first. The first failure stops the run: notebooks not yet
    started are cancelled, and its error is raised."""
    check_profile(profile)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    out_dir = RUNS_DIR / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = notebook_paths(names)
    shared = [nb for nb in paths if single_threaded(nb)] if jobs > 1 else []
    timings = {}
    for nb in paths:
        if nb not in shared:
            print(f"[{profile}] {nb.name}", flush=True)
            timings[nb.stem] = execute_one(profile, nb, out_dir)
            print(f"[{profile}] {nb.name}: {timings[nb.stem]} s", flush=True)
    if shared:
        timings.update(_execute_pool(profile, shared, jobs, out_dir))
    return {nb.stem: timings[nb.stem] for nb in paths}


def _execute_pool(profile: str, paths: list, jobs: int, out_dir) -> dict[str, float]:
    """The notebooks ``jobs`` at a time, longest first, each in a process of its own."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    timings = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        pending = {}
        for nb in longest_first(paths):
            pending[pool.submit(execute_one, profile, nb, out_dir)] = nb
        print(f"[{profile}] {len(paths)} single-threaded notebooks, {jobs} at a time", flush=True)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                nb = pending.pop(future)
                if future.exception() is not None:
                    pool.shutdown(cancel_futures=True)
                    raise future.exception()
                timings[nb.stem] = future.result()
                print(f"[{profile}] {nb.name}: {timings[nb.stem]} s", flush=True)
    return timings


def nbval(profile: str, names: list[str] | None = None) -> int:
    """Re-execute the executed copies with nbval in lax mode (checks marked cells' outputs)."""
    paths = [RUNS_DIR / profile / nb.name for nb in notebook_paths(names)]
    if not paths:
        return 0
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        f"--nbval-kernel-name={KERNEL}",
        "--nbval-cell-timeout=900",
        *map(str, paths),
    ]
    return subprocess.call(cmd, cwd=str(NOTEBOOKS_DIR), env=kernel_env())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sparse_circuits.app.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("profile", choices=["smoke", "full"])
    p.add_argument("names", nargs="*", help="notebook names or numbers (default: all)")
    p.add_argument("--no-nbval", action="store_true", help="smoke: skip the nbval re-execution")
    p.add_argument("--jobs", type=int, default=1, help="notebooks run at once (default 1)")
    args = p.parse_args(argv)
    if not notebook_paths(args.names):
        print(f"no notebooks in {NOTEBOOKS_DIR}")
        return 0
    t0 = time.perf_counter()
    timings = execute(args.profile, args.names, args.jobs)
    if args.profile == "full":
        path = results_dir("full") / "timings.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(timings)
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
        # only a run of every notebook replaces the record: the README reports it as make figures' wall time
        if args.jobs > 1 and set(timings) == {nb.stem for nb in notebook_paths()}:
            run = {"jobs": args.jobs, "notebooks": sorted(timings), "wall_s": round(time.perf_counter() - t0, 1)}
            (results_dir("full") / "figures_run.json").write_text(json.dumps(run, indent=2) + "\n")
        update_readme()
        return 0
    if args.no_nbval:
        return 0
    return nbval(args.profile, args.names)


if __name__ == "__main__":
    sys.exit(main())
