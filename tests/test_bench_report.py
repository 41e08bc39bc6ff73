"""bench/report.py: the README's performance section rendered from the benchmarks' JSON, and kept in step with it."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load_report()

MACHINE = {"torch": "2.13.0+cpu", "threads": 2, "python": "3.11.7", "processor": "x86_64"}


def _timing(tok_s: float, rss: float) -> dict:
    return {"step_ms": 1e3, "tokens_per_s": tok_s, "gflops": 1.0, "fraction_of_matmul_peak": 0.1, "peak_rss_mb": rss}


def _train(baseline: bool = True) -> dict:
    row = {"l0": 1 / 32, "dense": _timing(1234.5678, 1479.7), "sparse": _timing(449.0, 2593.4)}
    row["sparse_over_dense_step_time"] = 1.33449
    goals = {"sparse_not_slower_than_dense_at_l0_le_1_32": {"512": False}}
    if baseline:
        row["speedup_over_baseline"] = {"dense": 1.0314, "sparse": 1.4551}
        goals["sparse_1.5x_baseline_at_d256_and_d512"] = {"512": True}
    out = {"machine": MACHINE, "matmul_peak_gflops": 27.3978, "batch_size": 32, "n_ctx": 128, "vocab_size": 2048}
    return {**out, "baseline_revision": "abc1234", "widths": {"512": row}, "goals": goals}


def _sparse() -> dict:
    cell = {"d": 1024, "rows": 256, "density": 1 / 64, "fwd_plus_dx_speedup": 3.8812, "rule_picks_sparse": True}
    cells = [cell, {**cell, "rows": 2048, "fwd_plus_dx_speedup": 1.5234}]
    cells += [{**cell, "density": 1 / 4, "fwd_plus_dx_speedup": 0.3412, "rule_picks_sparse": False}]
    return {"machine": MACHINE, "matmul_peak_gflops": 58.3785, "densities": [1 / 4, 1 / 64], "cells": cells}


def _write(folder: Path, **files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def test_sig_rounds_to_three_significant_digits():
    assert report.sig(879647.88) == "880k"
    assert report.sig(2648425) == "2.65M"
    assert report.sig(3889.64) == "3890"
    assert report.sig(950.42) == "950"
    assert report.sig(1.30674) == "1.31"
    assert report.sig(0.0236914) == "0.0237"
    assert report.fraction(0.015625) == "1/64" and report.fraction(0.3) == "0.3"


def test_render_rounds_the_numbers_and_marks_goals_and_the_rule(tmp_path):
    body = report.render(_write(tmp_path / "results", train=_train(), sparse=_sparse()))
    assert "| d512 | 1/32 | 1230 | 449 | 1.33 | 1.03x / 1.46x | 1480 MB / 2590 MB |" in body
    assert "speedup vs `abc1234`" in body and "1234.5678" not in body
    assert "sparse step not slower than dense at L0 <= 1/32: d512 not met" in body
    assert "d512 met" in body
    assert "| d1024 | 0.341x | **1.52-3.88x** |" in body
    assert "torch 2.13.0+cpu, 2 threads, x86_64 (train, sparse)" in body


def test_missing_files_are_not_measured_yet(tmp_path):
    body = report.render(_write(tmp_path / "results", train=_train()))
    assert "- **Corpus** (`bench_corpus.py`): not measured yet (run make bench)." in body
    assert "- **Pruning** (`bench_prune.py`): not measured yet (run make bench)." in body
    assert "On CUDA" not in body


def test_cuda_results_get_their_own_subsection(tmp_path):
    results = _write(tmp_path / "results", train=_train())
    cuda = _train(baseline=False)
    cuda.update(device="cuda", machine={**MACHINE, "device": "NVIDIA H200"})
    for kind in ("dense", "sparse"):
        cuda["widths"]["512"][kind]["peak_cuda_mb"] = 812.3
    _write(results / "cuda", train=cuda)
    body = report.render(results)
    local, on_cuda = body.split("### On CUDA (`make gpu-check`)")
    assert "speedup vs" in local and "speedup vs" not in on_cuda
    assert "812 MB / 812 MB" in on_cuda and "NVIDIA H200" in on_cuda
    assert "- **Pruning** (`bench_prune.py`): not measured yet (run make gpu-check)." in on_cuda
    assert "Corpus" not in on_cuda


def test_write_replaces_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    head = "# Title\n\n## Performance\n\nkept  as is\r\n"
    tail = "\n\nhand-written reading\n\n## Next\n"
    readme.write_bytes(f"{head}{report.START}\nold numbers\n{report.END}{tail}".encode())
    results = _write(tmp_path / "results", train=_train())
    report.main(["--write", "--results", str(results), "--readme", str(readme)])
    text = readme.read_bytes().decode()
    assert text.startswith(head + report.START + "\n") and text.endswith(report.END + tail)
    assert "old numbers" not in text
    assert report.current_section(text) == report.render(results)
    report.main(["--write", "--results", str(results), "--readme", str(readme)])
    assert readme.read_bytes().decode() == text  # idempotent


def test_a_readme_without_markers_is_a_clear_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("## Performance\n\nno markers here\n")
    with pytest.raises(SystemExit, match="perf:start"):
        report.main(["--write", "--results", str(tmp_path), "--readme", str(readme)])
    assert readme.read_text() == "## Performance\n\nno markers here\n"
    with pytest.raises(ValueError, match="exactly one"):
        report.replace_section(f"{report.END}\n{report.START}\n", "x")


def test_committed_readme_matches_the_committed_results():
    """Regenerate with `python bench/report.py --write` after a benchmark run."""
    text = (ROOT / "README.md").read_text()
    assert report.current_section(text) == report.render(ROOT / "bench" / "results")
