"""Pruning speed on the shipped models: steps/s for 1 seed vs many seeds pruned together, the projected wall time
of a 100-seed IOI pruning of 1000 steps, and the time to discretize one circuit.

    python bench/bench_prune.py [--models sparse-d256] [--seeds 100] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write
from sparse_circuits.core.paths import model_dir, shipped_models
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner
from sparse_circuits.tasks import get_task


def steps_per_second(pruner: Pruner, n_seeds: int, steps: int) -> float:
    pruner.cfg.steps = steps + 1
    pruner.train_masks(list(range(n_seeds)), progress=False)  # includes one warm-up step
    t = time.perf_counter()
    pruner.cfg.steps = steps
    pruner.train_masks(list(range(n_seeds)), progress=False)
    return steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=None, help="shipped model names (default: all)")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    out = {"seeds": args.seeds, "batch_size": args.batch_size, "models": {}}
    for name in args.models or shipped_models():
        model, tok, _ = load(model_dir(name))
        cfg = PruneConfig(ablation="zero", batch_size=args.batch_size)
        pruner = Pruner(model, tok, get_task("ioi"), cfg)
        one = steps_per_second(pruner, 1, args.steps)
        many = steps_per_second(pruner, args.seeds, args.steps)
        tau = pruner.init_tau([0])
        t = time.perf_counter()
        pruner.discretize(tau)
        disc = time.perf_counter() - t
        row = {
            "nodes": pruner.n_nodes,
            "steps_per_s_1_seed": one,
            f"steps_per_s_{args.seeds}_seeds": many,
            "seed_steps_per_s_batched_over_single": many * args.seeds / one,
            "projected_100_seed_1000_step_minutes": 1000 / many * (100 / args.seeds) / 60,
            "discretize_one_circuit_s": disc,
        }
        out["models"][name] = row
        print(
            f"{name}: {one:.2f} steps/s (1 seed), {many:.3f} steps/s ({args.seeds} seeds) = "
            f"{row['seed_steps_per_s_batched_over_single']:.1f}x seed-steps/s; 100 seeds x 1000 steps ~ "
            f"{row['projected_100_seed_1000_step_minutes']:.1f} min; discretize {disc:.2f} s"
        )
        torch.set_grad_enabled(True)
    write("prune", out)


if __name__ == "__main__":
    main()
