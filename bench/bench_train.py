"""Training throughput: dense vs weight-sparse at the same shapes, this code vs a baseline revision, in one run.

For each (width, L0) configuration: a dense model (no AbsTopK, no projection) and a sparse one (AbsTopK at every
node site, the projection at the target L0 every step) run the trainer's step (loss, backward, gradient RMS
normalization, AdamW, projection, and the new CSR snapshots where the trainer's sparse-execution rule runs a
weight sparse: ``--execution``) on random tokens. Every (configuration, kind, code) cell runs in its own
subprocess, so its peak RSS is its own; the baseline revision's code is extracted with ``git archive`` (no
change to the working tree) and imported through PYTHONPATH, and baseline and current cells alternate so that
load on the machine hits both alike. Achieved GFLOP/s counts 6 x (matmul parameters) per token plus attention,
against a matmul peak measured in the same run.

    python bench/bench_train.py [--configs 256:16 512:32 1024:64] [--steps 6] [--rounds 2] [--baseline 78e1308]
                                [--device cpu] [--execution auto]

With ``--device cuda`` the cells train on the GPU (timings synchronize the device; peak memory is
``torch.cuda.max_memory_allocated``) and the results go to bench/results/cuda/train.json; the baseline revision is
not run there (the comparison with it, and its goal, are CPU measurements), so that run has no speedup over it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import check_device, matmul_peak_gflops, sync, write_for

REPO = Path(__file__).resolve().parents[1]
KINDS = ("dense", "sparse")
# d_model 1024 steps take many seconds each on a small CPU: fewer of them.
STEPS_AT_WIDTH = {1024: 3}


def flops_per_token(d: int, V: int, T: int, n_layer: int = 2, mlp_ratio: int = 4) -> float:
    D, F, L = d, mlp_ratio * d, n_layer
    matmul_params = L * (4 * D * D + 2 * D * F) + D * V
    attention = L * 2 * 2 * T * D / 2  # scores and values, causal half, per token
    return 6 * matmul_params + 3 * attention


def worker(args) -> None:
    """One cell: time ``args.steps`` training steps after one warm-up; print one JSON line."""
    import sparse_circuits
    from sparse_circuits.model.gpt import NODE_SITES, ModelConfig, SparseGPT
    from sparse_circuits.model.inference import lm_loss
    from sparse_circuits.training import trainer
    from sparse_circuits.training.sparsity import normalize_grad_rms_, project_

    sparse = args.kind == "sparse"
    cfg = ModelConfig(
        vocab_size=args.vocab, d_model=args.d, n_ctx=args.n_ctx, abstopk_sites=NODE_SITES if sparse else ()
    )
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SparseGPT(cfg).to(device)
    if hasattr(trainer, "make_optimizer"):  # the trainer's own choice of AdamW implementation
        opt = trainer.make_optimizer(model.parameters(), trainer.TrainConfig(lr=1e-3), device)
    else:  # the baseline's trainer built plain AdamW
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=0.1, weight_decay=0.1)
    weights = list(model.sparsifiable_weights().values())
    execution = None  # the trainer's CSR forward and input gradients where its rule says so (absent in the baseline)
    try:
        from sparse_circuits.model import sparse_exec
    except ImportError:
        sparse_exec = None
    if sparse and hasattr(sparse_exec, "enable_sparse_training"):
        for w, axis in weights:  # at the target L0 from the start, as the trainer after its anneal
            project_(w.data, 1 / args.inv_l0, axis)
        execution = sparse_exec.enable_sparse_training(model, args.batch_size * args.n_ctx, args.execution)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(args.vocab, (args.batch_size, args.n_ctx + 1), generator=gen).to(device) for _ in range(2)]

    def step(rows):
        loss = lm_loss(model, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        normalize_grad_rms_(model.parameters())
        opt.step()
        if sparse:
            for w, axis in weights:
                project_(w.data, 1 / args.inv_l0, axis)
            if execution is not None:
                execution.refresh()

    step(batches[0])  # warm-up
    times = []
    for i in range(args.steps):
        sync(device)
        t = time.perf_counter()
        step(batches[i % 2])
        sync(device)
        times.append(time.perf_counter() - t)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    result = {"times": times, "peak_rss_mb": peak_kb / 1024, "package": sparse_circuits.__file__}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


def run_cell(lib: Path, d: int, inv_l0: int, kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--d", str(d), "--inv-l0", str(inv_l0), "--kind", kind]
    cmd += ["--steps", str(STEPS_AT_WIDTH.get(d, args.steps)), "--batch-size", str(args.batch_size)]
    cmd += ["--n-ctx", str(args.n_ctx), "--vocab", str(args.vocab), "--device", args.device]
    cmd += ["--execution", args.execution]
    env = {**os.environ, "PYTHONPATH": str(lib)}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not Path(result["package"]).resolve().is_relative_to(lib.resolve()):
        raise RuntimeError(f"the cell imported {result['package']}, not the code under {lib}")
    return result


def summarize(times: list[float], peak_rss_mb: float, d: int, args, peak: float, peak_cuda_mb=None) -> dict:
    med = statistics.median(times)
    tokens = args.batch_size * args.n_ctx
    gflops = flops_per_token(d, args.vocab, args.n_ctx) * tokens / med / 1e9
    out = {
        "step_ms": med * 1e3,
        "tokens_per_s": tokens / med,
        "gflops": gflops,
        "fraction_of_matmul_peak": gflops / peak,
        "peak_rss_mb": peak_rss_mb,
        "timed_steps": len(times),
    }
    if peak_cuda_mb is not None:
        out["peak_cuda_mb"] = peak_cuda_mb
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", nargs="+", default=["256:16", "512:32", "1024:64"], help="d_model:1/L0 pairs")
    p.add_argument("--steps", type=int, default=6, help="timed steps per cell and round (3 at d_model 1024)")
    p.add_argument("--rounds", type=int, default=2, help="alternating current/baseline rounds per cell")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--baseline", default="78e1308", help="git revision whose code is the baseline")
    p.add_argument("--device", default="cpu", help="cpu or cuda (results of a CUDA run go to bench/results/cuda/)")
    p.add_argument(
        "--execution",
        default="auto",
        choices=("auto", "dense", "sparse"),
        help="the sparse cells' matmuls (trainer's rule)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--d", type=int, help=argparse.SUPPRESS)
    p.add_argument("--inv-l0", type=int, help=argparse.SUPPRESS)
    p.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    device = check_device(args.device)
    libs = {"current": REPO / "lib"}
    if device.type == "cpu":
        tmp = tempfile.TemporaryDirectory()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline, "lib"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive.stdout, check=True)
        libs["baseline"] = Path(tmp.name) / "lib"
    else:
        print(f"note: on {device} the baseline revision {args.baseline} is not run (compared on CPU only)")
    peak = matmul_peak_gflops(device=device)
    out = {
        "matmul_peak_gflops": peak,
        "batch_size": args.batch_size,
        "n_ctx": args.n_ctx,
        "vocab_size": args.vocab,
        "baseline_revision": args.baseline,
        "widths": {},
    }
    for spec in args.configs:
        d, inv_l0 = (int(x) for x in spec.split(":"))
        cells = {(code, kind): {"times": [], "peak_rss_mb": 0.0} for code in libs for kind in KINDS}
        for r in range(args.rounds):
            for kind in KINDS:
                for code in list(libs)[:: 1 if r % 2 == 0 else -1]:  # alternate which code goes first
                    res = run_cell(libs[code], d, inv_l0, kind, args)
                    cells[code, kind]["times"] += res["times"]
                    cells[code, kind]["peak_rss_mb"] = max(cells[code, kind]["peak_rss_mb"], res["peak_rss_mb"])
                    if "peak_cuda_mb" in res:
                        cells[code, kind]["peak_cuda_mb"] = max(
                            cells[code, kind].get("peak_cuda_mb", 0.0), res["peak_cuda_mb"]
                        )
        s = {
            key: summarize(c["times"], c["peak_rss_mb"], d, args, peak, c.get("peak_cuda_mb"))
            for key, c in cells.items()
        }
        row = {"l0": 1 / inv_l0, **{kind: s["current", kind] for kind in KINDS}}
        row["sparse_over_dense_step_time"] = row["sparse"]["step_ms"] / row["dense"]["step_ms"]
        if "baseline" in libs:
            row["baseline"] = {kind: s["baseline", kind] for kind in KINDS}
            row["baseline"]["sparse_over_dense_step_time"] = (
                s["baseline", "sparse"]["step_ms"] / s["baseline", "dense"]["step_ms"]
            )
            row["speedup_over_baseline"] = {
                kind: s["baseline", kind]["step_ms"] / s["current", kind]["step_ms"] for kind in KINDS
            }
        out["widths"][str(d)] = row
        line = (
            f"d_model {d} L0 1/{inv_l0}: tok/s dense {row['dense']['tokens_per_s']:.0f}, "
            f"sparse {row['sparse']['tokens_per_s']:.0f}; sparse/dense {row['sparse_over_dense_step_time']:.2f}"
        )
        if "baseline" in row:
            line = (
                f"d_model {d} L0 1/{inv_l0}: tok/s dense {row['dense']['tokens_per_s']:.0f} "
                f"(baseline {row['baseline']['dense']['tokens_per_s']:.0f}), sparse {row['sparse']['tokens_per_s']:.0f} "
                f"(baseline {row['baseline']['sparse']['tokens_per_s']:.0f}); sparse/dense {row['sparse_over_dense_step_time']:.2f} "
                f"(baseline {row['baseline']['sparse_over_dense_step_time']:.2f}); speedup sparse "
                f"{row['speedup_over_baseline']['sparse']:.2f}x dense {row['speedup_over_baseline']['dense']:.2f}x"
            )
        memory = (
            f"peak CUDA memory sparse {row['sparse']['peak_cuda_mb']:.0f} MB"
            if device.type == "cuda"
            else f"peak RSS sparse {row['sparse']['peak_rss_mb']:.0f} MB"
        )
        print(f"{line}; {memory}", flush=True)
    widths = out["widths"]
    out["goals"] = {
        "sparse_not_slower_than_dense_at_l0_le_1_32": {
            d: row["sparse_over_dense_step_time"] <= 1.0 for d, row in widths.items() if row["l0"] <= 1 / 32
        },
    }
    if "baseline" in libs:
        out["goals"]["sparse_1.5x_baseline_at_d256_and_d512"] = {
            d: widths[d]["speedup_over_baseline"]["sparse"] >= 1.5 for d in ("256", "512") if d in widths
        }
    print(f"matmul peak {peak:.0f} GFLOP/s; goals {json.dumps(out['goals'])}")
    write_for("train", out, device)


if __name__ == "__main__":
    main()
