"""Hyperparameter search for pruning (docs/method.md, Pruning: Gao and Drori used CARBS; we use Optuna's TPE).

Objective: circuit size (nodes) at the target loss; a run that misses the target scores total_nodes * (1 +
loss), worse than any run that reaches it. Trials are asked ``parallel`` at a time and evaluated as one
batched pruning run (each trial its own mask row, k_coef and learning rate), then told back to Optuna.
The record in the best circuit's ``meta["sweep"]`` holds every trial and the sweep's wall time;
``pruning.tuned.write_tuned_config`` stores it as a tuned pruning config (docs/pruning-configs.md).
"""

from __future__ import annotations

import math
import time

from .pruner import PruneConfig, Pruner, prune

SEARCH_SPACE = {"k_coef": (1e-6, 1e-2), "lr": (1e-3, 3e-2)}


def trial_seed(sweep_seed: int, trial: int) -> int:
    """The pruning seed of trial number ``trial`` of a sweep seeded ``sweep_seed`` (mask init and prompt order)."""
    return sweep_seed * 100_000 + trial


def objective_value(circuit) -> float:
    if circuit.meta["reached_target"]:
        return float(circuit.n_nodes)
    return float(circuit.total_nodes) * (1.0 + float(circuit.meta["loss"]))


def sweep(
    model,
    tokenizer,
    task,
    cfg: PruneConfig,
    n_trials: int = 32,
    parallel: int = 8,
    seed: int = 0,
    search_space: dict | None = None,
    model_name: str | None = None,
    progress: bool = True,
):
    """Run the search; returns the best circuit, with every trial recorded in its ``meta["sweep"]``."""
    import optuna

    start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {**SEARCH_SPACE, **(search_space or {})}
    unknown = sorted(set(space) - set(SEARCH_SPACE))
    if unknown:
        raise ValueError(f"search_space has unknown parameters {unknown}; searchable: {sorted(SEARCH_SPACE)}")
    if n_trials < 1 or parallel < 1:
        raise ValueError("n_trials and parallel must be >= 1")
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    pruner = Pruner(model, tokenizer, task, cfg)
    best, records = None, []
    for _ in range(math.ceil(n_trials / parallel)):
        trials = [study.ask() for _ in range(min(parallel, n_trials - len(records)))]
        k = [t.suggest_float("k_coef", *space["k_coef"], log=True) for t in trials]
        lr = [t.suggest_float("lr", *space["lr"], log=True) for t in trials]
        seeds = [trial_seed(seed, t.number) for t in trials]
        circuits = prune(
            model,
            tokenizer,
            task,
            cfg,
            seeds=seeds,
            k_coefs=k,
            lrs=lr,
            progress=progress,
            model_name=model_name,
            pruner=pruner,
        )
        for t, c in zip(trials, circuits):
            value = objective_value(c)
            study.tell(t, value)
            records.append(
                {
                    "trial": t.number,
                    "k_coef": c.meta["k_coef"],
                    "lr": c.meta["lr"],
                    "seed": c.meta["seed"],
                    "nodes": c.n_nodes,
                    "loss": c.meta["loss"],
                    "reached_target": c.meta["reached_target"],
                    "objective": value,
                }
            )
            if best is None or value < objective_value(best):
                best = c
    best.meta["sweep"] = {
        "sampler": "optuna.TPESampler",
        "seed": seed,
        "n_trials": len(records),
        "parallel": parallel,
        "search_space": {k: list(v) for k, v in space.items()},
        "best_params": study.best_params,
        "best_value": study.best_value,
        "trials": records,
        "wall_time_s": time.perf_counter() - start,
    }
    return best
