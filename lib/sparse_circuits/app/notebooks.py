"""Run every notebook as a papermill template: ``python -m sparse_circuits.app.notebooks {smoke,full} [NAME ...]``.

- smoke: each notebook with ``profile="smoke"`` into runs/smoke/, then nbval (lax) re-executes the executed
  copies and compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``. Used by ``make test``.
- full: each notebook with ``profile="full"`` into runs/full/; figures and numbers land in figures/; wall
  times are recorded in figures/results/timings.json and the README's results section is regenerated.

Kernels run with ``core.progress.TEXT_PROGRESS_ENV`` set, so progress bars are saved as text in the executed
notebooks (a widget bar would be saved empty).
"""

from __future__ import annotations

import argparse
import json
import os
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


def execute(profile: str, names: list[str] | None = None) -> dict[str, float]:
    import papermill

    check_profile(profile)
    out_dir = RUNS_DIR / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    os.environ.update(kernel_env())  # papermill starts each kernel with this process's environment
    for nb in notebook_paths(names):
        print(f"[{profile}] {nb.name}", flush=True)
        t0 = time.perf_counter()
        papermill.execute_notebook(
            str(nb),
            str(out_dir / nb.name),
            parameters={"profile": profile},
            kernel_name=KERNEL,
            cwd=str(NOTEBOOKS_DIR),
            progress_bar=False,
        )
        timings[nb.stem] = round(time.perf_counter() - t0, 1)
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
    args = p.parse_args(argv)
    if not notebook_paths(args.names):
        print(f"no notebooks in {NOTEBOOKS_DIR}")
        return 0
    timings = execute(args.profile, args.names)
    if args.profile == "full":
        path = results_dir("full") / "timings.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(timings)
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
        update_readme()
        return 0
    if args.no_nbval:
        return 0
    return nbval(args.profile, args.names)


if __name__ == "__main__":
    sys.exit(main())
