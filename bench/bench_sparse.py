"""Dense vs CSR matmuls of weight-sparse matrices: the measurement behind ``model.sparse_exec``'s rule.

For W [4D, D] (an MLP W_in) with a given fraction of nonzeros and X [R, D]: the forward Y = X W^T + b and the
input gradient dX = dY W, dense (F.linear, dY @ W) and sparse (CSR of W and of W^T, ``csr_matmul``), best of a
few repeats each. Prints the speedups and the sparse kernels' effective GFLOP/s (2 x nonzeros x rows per matmul)
against a dense matmul peak measured in the same run, and whether the rule (``use_sparse``) picks sparse.

    python bench/bench_sparse.py [--dims 256 512 1024 2048] [--rows 256 2048] [--repeats 3] [--device cpu]

With ``--device cuda`` the tensors live on the GPU, every timing synchronizes the device and the results go to
bench/results/cuda/sparse.json (the rule runs dense there: it was measured on CPU only).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import check_device, matmul_peak_gflops, sync, write_for
from sparse_circuits.model.sparse_exec import SparseWeight, csr_matmul, use_sparse

DENSITIES = (1 / 4, 1 / 16, 1 / 32, 1 / 64, 1 / 128)


def best_seconds(fn, repeats: int, device: torch.device | str = "cpu") -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def sparse_weight(out: int, inn: int, density: float, seed: int = 0) -> torch.Tensor:
    """[out, in] with exactly round(density * numel) nonzeros at random places."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(out * inn)
    idx = torch.randperm(out * inn, generator=g)[: max(1, round(density * out * inn))]
    w[idx] = torch.randn(len(idx), generator=g)
    return w.view(out, inn)


def measure(D: int, rows: int, repeats: int, device: torch.device | str = "cpu") -> list[dict]:
    out, inn = 4 * D, D
    g = torch.Generator().manual_seed(1)
    x, gy, b = (
        t.to(device)
        for t in (
            torch.randn(rows, inn, generator=g),
            torch.randn(rows, out, generator=g),
            torch.randn(out, generator=g),
        )
    )
    dense_w = sparse_weight(out, inn, 1.0).to(device)
    dense_fwd = best_seconds(lambda: F.linear(x, dense_w, b), repeats, device)
    dense_bwd = best_seconds(lambda: gy @ dense_w, repeats, device)
    cells = []
    for p in DENSITIES:
        sw = SparseWeight.of(sparse_weight(out, inn, p).to(device))
        fwd = best_seconds(lambda sw=sw: csr_matmul(sw.csr, x, b), repeats, device)
        bwd = best_seconds(lambda sw=sw: csr_matmul(sw.csr_t, gy, None), repeats, device)
        nnz = sw.csr.values().numel()
        cells.append(
            {
                "d": D,
                "shape": [out, inn],
                "rows": rows,
                "density": p,
                "dense_fwd_ms": dense_fwd * 1e3,
                "sparse_fwd_ms": fwd * 1e3,
                "dense_dx_ms": dense_bwd * 1e3,
                "sparse_dx_ms": bwd * 1e3,
                "fwd_speedup": dense_fwd / fwd,
                "dx_speedup": dense_bwd / bwd,
                "fwd_plus_dx_speedup": (dense_fwd + dense_bwd) / (fwd + bwd),
                "sparse_gflops_per_nonzero": 2 * nnz * rows / fwd / 1e9,
                "dense_gflops": 2 * out * inn * rows / dense_fwd / 1e9,
                "rule_picks_sparse": use_sparse(nnz / (out * inn), (out, inn), rows, device),
            }
        )
    return cells


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dims", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--rows", type=int, nargs="+", default=[256, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda (results of a CUDA run go to bench/results/cuda/)")
    args = p.parse_args()
    device = check_device(args.device)
    torch.manual_seed(0)
    peak = matmul_peak_gflops(device=device)
    print(f"dense fp32 matmul peak {peak:.1f} GFLOP/s on {device}, {torch.get_num_threads()} threads")
    print(
        f"{'D':>5} {'rows':>5} {'density':>8} {'fwd x':>6} {'dX x':>6} {'both x':>6} {'sp GF/s':>8} {'%peak':>6} rule"
    )
    cells = []
    for D in args.dims:
        for rows in args.rows:
            for c in measure(D, rows, args.repeats, device):
                c["sparse_fraction_of_peak"] = c["sparse_gflops_per_nonzero"] / peak
                cells.append(c)
                density = f"1/{round(1 / c['density'])}"
                print(
                    f"{D:>5} {rows:>5} {density:>8} {c['fwd_speedup']:>6.2f} "
                    f"{c['dx_speedup']:>6.2f} {c['fwd_plus_dx_speedup']:>6.2f} "
                    f"{c['sparse_gflops_per_nonzero']:>8.2f} {100 * c['sparse_fraction_of_peak']:>5.1f}% "
                    f"{'sparse' if c['rule_picks_sparse'] else 'dense'}",
                    flush=True,
                )
    write_for("sparse", {"matmul_peak_gflops": peak, "densities": list(DENSITIES), "cells": cells}, device)


if __name__ == "__main__":
    main()
