"""Shared helpers for the benchmarks: timing, a matmul peak measured in the same run, devices, result files."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels (timings on CUDA are otherwise only launch times)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def check_device(device: str) -> torch.device:
    """The ``--device`` argument as a torch.device; exits with a clear message when CUDA is asked for but absent."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch sees no CUDA device here")
    return dev


def matmul_peak_gflops(n: int = 1024, repeats: int = 20, device: torch.device | str = "cpu") -> float:
    """fp32 GEMM throughput of this machine right now (the reference for 'fraction of peak')."""
    if torch.device(device).type == "cuda":
        n = max(n, 4096)  # a 1024 matmul is too short to reach a GPU's peak
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * repeats / best / 1e9


def machine(device: torch.device | str = "cpu") -> dict:
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }
    if torch.device(device).type == "cuda":
        out["device"] = torch.cuda.get_device_name(device)
    return out


def write(name: str, results: dict, subdir: str | None = None, device: torch.device | str = "cpu") -> Path:
    """bench/results/<name>.json, or bench/results/<subdir>/<name>.json (the CUDA runs: subdir "cuda")."""
    folder = RESULTS / subdir if subdir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(device), **results}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def write_for(name: str, results: dict, device: torch.device | str) -> Path:
    """Results of a CPU run under bench/results/, of a CUDA run under bench/results/cuda/ (with a "device" key)."""
    if torch.device(device).type == "cuda":
        return write(name, {"device": "cuda", **results}, subdir="cuda", device=device)
    return write(name, results)
