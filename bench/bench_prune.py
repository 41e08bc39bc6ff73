"""Pruning speed: steps/s for 1 seed vs many seeds pruned together on the shipped models, and dense vs sparse
execution (``PruneConfig.execution``) side by side on a random weight-sparse model at the target scale (d1024,
L0 1/64), with each configuration's peak memory and the projected wall time of the goal run (100 seeds x 2000
steps x 64 prompts). The random model's dense path runs twice: at the default runs per pass and at one run per
pass (its own fastest there), so the sparse path's ratio is also given against the faster of the two; one
step with the goal's 100 seeds gives the goal run's peak memory.

Each configuration runs in a fresh process, so that its peak resident memory (``getrusage`` maxrss) is its own.
On the narrow shipped models (d_model <= 256, L0 >= 0.2) "auto" runs every matrix dense: the same code as
"dense"; sparse-d512 runs some sparse.

    python bench/bench_prune.py [--models sparse-d256] [--seeds 100] [--steps 3] [--big-seeds 8] [--big-steps 2]
                                [--memory-seeds 100] [--device cpu]

With ``--device cuda`` the models prune on the GPU (timings synchronize the device; peak memory is
``torch.cuda.max_memory_allocated``) and the results go to bench/results/cuda/prune.json.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
from common import check_device, sync, write_for
from sparse_circuits.core.paths import model_dir, shipped_models
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.model.inference import load
from sparse_circuits.model.sparse_exec import enable_sparse_execution
from sparse_circuits.pruning.pruner import PruneConfig, Pruner
from sparse_circuits.tasks import get_task
from sparse_circuits.training.sparsity import project_

GOAL = {"seeds": 100, "steps": 2000, "batch_size": 64}


def steps_per_second(pruner: Pruner, n_seeds: int, steps: int) -> float:
    pruner.cfg.steps = steps + 1
    pruner.train_masks(list(range(n_seeds)), progress=False)  # includes one warm-up step
    sync(pruner.device)
    t = time.perf_counter()
    pruner.cfg.steps = steps
    pruner.train_masks(list(range(n_seeds)), progress=False)
    sync(pruner.device)
    return steps / (time.perf_counter() - t)


def random_sparse_model(d: int, l0: float, vocab: int, n_ctx: int, n_layer: int = 2) -> SparseGPT:
    """A random SparseGPT with every sparsifiable weight projected to L0 (the target regime's sparsity), in eval mode
    like every loaded model (``inference.load``), so that its attention takes the path pruning takes on the shipped
    models (training mode would pick the fused kernel)."""
    torch.manual_seed(0)
    model = SparseGPT(ModelConfig(vocab_size=vocab, n_layer=n_layer, d_model=d, n_ctx=n_ctx))
    for w, axis in model.sparsifiable_weights().values():
        project_(w.data, l0, axis)
    return model.eval()


def goal_minutes(steps_per_s: float, n_seeds: int) -> float:
    """Projected minutes of the goal run from steps/s at n_seeds seeds (seed-steps/s scale linearly in seeds)."""
    return GOAL["steps"] * GOAL["seeds"] / (steps_per_s * n_seeds) / 60


def measure(job: dict) -> dict:
    """One configuration, in its own process: {"model": shipped name or "random", "execution", "seeds", ...}."""
    tok = load(model_dir(job["tokenizer_of"]))[1]
    if job["model"] == "random":
        model = random_sparse_model(job["d"], job["l0"], job["vocab"], job["n_ctx"])
    else:
        model = load(model_dir(job["model"]))[0]
    device = torch.device(job.get("device", "cpu"))
    model = model.to(device)
    cfg = PruneConfig(
        ablation="zero", batch_size=job["batch_size"], execution=job["execution"], seed_chunk=job.get("seed_chunk")
    )
    pruner = Pruner(model, tok, get_task("ioi"), cfg)
    row = {"nodes": pruner.n_nodes, "execution": job["execution"], "seed_chunk": job.get("seed_chunk")}
    probe = enable_sparse_execution(model, job["execution"])  # which Linears may run sparse
    row["sparse_layers"] = len(probe.swapped)
    probe.restore()
    if job.get("one_seed"):
        row["steps_per_s_1_seed"] = steps_per_second(pruner, 1, job["steps"])
    many = steps_per_second(pruner, job["seeds"], job["steps"])
    row[f"steps_per_s_{job['seeds']}_seeds"] = many
    row["seed_steps_per_s"] = many * job["seeds"]
    row["projected_goal_minutes"] = goal_minutes(many, job["seeds"])
    if job.get("discretize"):
        sync(device)
        t = time.perf_counter()
        pruner.discretize(pruner.init_tau([0]))
        sync(device)
        row["discretize_one_circuit_s"] = time.perf_counter() - t
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def in_fresh_process(job: dict) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, job).result()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=None, help="shipped model names (default: all; none: skip)")
    p.add_argument("--seeds", type=int, default=100, help="seeds pruned together on the shipped models")
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--big-d", type=int, default=1024, help="width of the random weight-sparse model (0: skip)")
    p.add_argument("--big-l0", type=float, default=1 / 64)
    p.add_argument("--big-seeds", type=int, default=8)
    p.add_argument("--big-steps", type=int, default=2)
    p.add_argument(
        "--memory-seeds", type=int, default=100, help="seeds of one timed auto step on the random model (0: skip)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (results of a CUDA run go to bench/results/cuda/)")
    args = p.parse_args()
    device = check_device(args.device)
    models = shipped_models() if args.models is None else args.models
    out = {"seeds": args.seeds, "batch_size": args.batch_size, "goal": GOAL, "models": {}, "random_sparse": {}}
    tokenizer_of = models[0] if models else shipped_models()[0]
    if args.big_d:
        big = {"d": args.big_d, "l0": args.big_l0, "vocab": 2048, "n_ctx": 64, "n_layer": 2}
        out["random_sparse"] = {**big, "seeds": args.big_seeds, "steps": args.big_steps, "rows": {}}
        # "dense" and "auto" run at the default runs per pass (8 dense; the rule's fewer where matrices run sparse);
        # "dense_1" is the dense path at one run per pass, its own fastest at this width, for a fair ratio.
        for label, execution, chunk in (("dense", "dense", None), ("dense_1", "dense", 1), ("auto", "auto", None)):
            job = {
                "model": "random",
                "tokenizer_of": tokenizer_of,
                "execution": execution,
                "seed_chunk": chunk,
                "device": args.device,
                **big,
            }
            row = in_fresh_process(
                {**job, "seeds": args.big_seeds, "steps": args.big_steps, "batch_size": args.batch_size}
            )
            out["random_sparse"]["rows"][label] = row
            print(
                f"random d{args.big_d} L0 1/{round(1 / args.big_l0)} {label:>7} ({row['sparse_layers']} sparse "
                f"layers): {row['seed_steps_per_s']:.3f} seed-steps/s, peak RSS {row['peak_rss_mb']:.0f} MB; goal "
                f"{GOAL['seeds']} seeds x {GOAL['steps']} steps ~ {row['projected_goal_minutes']:.0f} min",
                flush=True,
            )
        rows = out["random_sparse"]["rows"]
        out["random_sparse"]["auto_over_dense"] = rows["auto"]["seed_steps_per_s"] / rows["dense"]["seed_steps_per_s"]
        out["random_sparse"]["auto_over_best_dense"] = rows["auto"]["seed_steps_per_s"] / max(
            rows["dense"]["seed_steps_per_s"], rows["dense_1"]["seed_steps_per_s"]
        )
        print(
            f"auto / dense seed-steps/s: {out['random_sparse']['auto_over_dense']:.2f}x; over the faster of the two "
            f"dense rows: {out['random_sparse']['auto_over_best_dense']:.2f}x"
        )
        if args.memory_seeds:  # the goal's 100 seeds x 64 prompts at once: its peak memory (goal: <= 8 GB)
            job = {"model": "random", "tokenizer_of": tokenizer_of, "execution": "auto", "device": args.device, **big}
            row = in_fresh_process({**job, "seeds": args.memory_seeds, "steps": 1, "batch_size": args.batch_size})
            out["random_sparse"]["memory"] = {"seeds": args.memory_seeds, **row}
            print(
                f"random d{args.big_d} auto, {args.memory_seeds} seeds x {args.batch_size} prompts: peak RSS "
                f"{row['peak_rss_mb']:.0f} MB, {row['seed_steps_per_s']:.3f} seed-steps/s",
                flush=True,
            )
    for name in models:
        job = {"model": name, "tokenizer_of": name, "execution": "auto", "seeds": args.seeds, "steps": args.steps}
        job["device"] = args.device
        row = in_fresh_process({**job, "batch_size": args.batch_size, "one_seed": True, "discretize": True})
        one, many = row["steps_per_s_1_seed"], row[f"steps_per_s_{args.seeds}_seeds"]
        row["seed_steps_per_s_batched_over_single"] = many * args.seeds / one
        out["models"][name] = row
        print(
            f"{name}: {one:.2f} steps/s (1 seed), {many:.3f} steps/s ({args.seeds} seeds) = "
            f"{row['seed_steps_per_s_batched_over_single']:.1f}x seed-steps/s; goal ~ "
            f"{row['projected_goal_minutes']:.1f} min; discretize {row['discretize_one_circuit_s']:.2f} s; "
            f"{row['sparse_layers']} sparse layers under auto; peak RSS {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    write_for("prune", out, device)


if __name__ == "__main__":
    main()
