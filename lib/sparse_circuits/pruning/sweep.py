"""Hyperparameter search for pruning (docs/method.md, Pruning: Gao and Drori used CARBS; we use Optuna's TPE).

Objective: circuit size (nodes) at the target loss; a run that misses the target scores total_nodes * (1 +
loss), worse than any run that reaches it. Trials are asked ``parallel`` at a time and evaluated as one
batched pruning run (each trial its own mask row, k_coef and learning rate), then told back to Optuna.
The record in the best circuit's ``meta["sweep"]`` holds every trial and the sweep's wall time;
``pruning.tuned.write_tuned_config`` stores it as a tuned pruning config (docs/pruning-configs.md).

A sweep of the papers' budget takes hours on a laptop, so with ``checkpoint_dir`` it resumes after a kill: each
finished round of trials is written there (atomically, one writer per directory), with the best circuit so far.
A resumed sweep asks the seeded sampler the same trials again, checks that it proposes the recorded values, tells
it the recorded results without pruning, and prunes only the rounds that never finished, so it ends with what an
uninterrupted sweep gives. A checkpoint made with other settings, task or weights is refused, never mixed in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

from ..circuits.circuit import Circuit
from ..core import storage
from ..model.checkpoint import weights_digest
from .pruner import PruneConfig, Pruner, prune

SEARCH_SPACE = {"k_coef": (1e-6, 1e-2), "lr": (1e-3, 3e-2)}
STATE_FILE = "sweep_state.json"


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
    checkpoint_dir: str | Path | None = None,
):
    """Run the search; returns the best circuit, with every trial recorded in its ``meta["sweep"]``.

    ``checkpoint_dir``: where finished rounds are kept, and resumed from when the directory already holds a
    checkpoint of the same sweep (module docstring); None keeps nothing."""
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
    identity = {
        "task": task.name,
        "model_name": model_name,
        "weights_sha256": weights_digest(model),
        "prune_config": dataclasses.asdict(cfg),
        "n_trials": n_trials,
        "parallel": parallel,
        "seed": seed,
        "search_space": {k: list(v) for k, v in space.items()},
    }
    identity = json.loads(json.dumps(identity))  # as a checkpoint reads it back (tuples become lists)
    with contextlib.ExitStack() as stack:
        ckpt = None if checkpoint_dir is None else stack.enter_context(storage.output_lock(checkpoint_dir))
        done, best, elapsed_before = _resume(ckpt, identity)
        run = _SweepRun(study, pruner, space, identity, ckpt, progress, model_name, start - elapsed_before)
        return _run_rounds(run, done, best)


@dataclasses.dataclass
class _SweepRun:
    """What every round of one sweep shares."""

    study: object  # optuna.Study
    pruner: Pruner  # holds the model, tokenizer, task and PruneConfig
    space: dict  # parameter -> (low, high), searched on a log scale
    identity: dict  # the settings a checkpoint must match (``sweep``)
    ckpt: Path | None  # checkpoint directory, locked by this process; None keeps nothing
    progress: bool
    model_name: str | None
    start: float  # perf_counter of the sweep's start, moved back by the time earlier sessions spent


def _resume(ckpt: Path | None, identity: dict) -> tuple[list[dict], Circuit | None, float]:
    """(recorded trials, best circuit so far, seconds already spent) of a checkpoint of this sweep; nothing if
    there is none. A checkpoint of another sweep is an error naming what differs."""
    path = None if ckpt is None else ckpt / STATE_FILE
    if path is None or not path.is_file():
        return [], None, 0.0
    state = storage.read_json(path)
    theirs = state.get("identity", {})
    differ = sorted(k for k in set(identity) | set(theirs) if identity.get(k) != theirs.get(k))
    if differ:
        raise ValueError(
            f"{path} is the checkpoint of another sweep (differs in {differ}); use another --checkpoint-dir or "
            "delete it to start afresh"
        )
    best = Circuit.load(ckpt / state["best_dir"]) if state["records"] else None
    return state["records"], best, float(state["elapsed_s"])


def _save_round(ckpt: Path, identity: dict, records: list[dict], new_best: Circuit | None, elapsed: float) -> None:
    """Record the finished rounds. A new best circuit goes to a directory of its own first, then the state file
    (written atomically) names it, then older ones go: a kill at any point leaves a state and the best it names."""
    state_path = ckpt / STATE_FILE
    best_dir = storage.read_json(state_path)["best_dir"] if state_path.is_file() else None
    if new_best is not None:
        best_dir = f"best-{len(records)}"
        new_best.save(ckpt / best_dir)
    state = {"identity": identity, "records": records, "best_dir": best_dir, "elapsed_s": elapsed}
    storage.write_json(state_path, state)
    for old in ckpt.glob("best-*"):
        if old.name != best_dir:
            shutil.rmtree(old)


def _run_rounds(run: _SweepRun, done: list[dict], best: Circuit | None) -> Circuit:
    """Ask, prune (or replay from ``done``, the checkpoint's trials) and tell the sweep's rounds; returns the
    best circuit."""
    study, space, pruner = run.study, run.space, run.pruner
    n_trials, parallel, seed = run.identity["n_trials"], run.identity["parallel"], run.identity["seed"]
    records = []
    for _ in range(math.ceil(n_trials / parallel)):
        trials = [study.ask() for _ in range(min(parallel, n_trials - len(records)))]
        k = [t.suggest_float("k_coef", *space["k_coef"], log=True) for t in trials]
        lr = [t.suggest_float("lr", *space["lr"], log=True) for t in trials]
        seeds = [trial_seed(seed, t.number) for t in trials]
        replay = done[len(records) : len(records) + len(trials)]
        if len(replay) == len(trials):  # a round the checkpoint holds: the same proposals, told the same results
            for t, kc, r, rec in zip(trials, k, lr, replay):
                if (t.number, kc, r) != (rec["trial"], rec["k_coef"], rec["lr"]):
                    raise ValueError(
                        f"resuming the sweep: the sampler proposes trial {t.number} k_coef {kc}, lr {r}, the "
                        f"checkpoint holds trial {rec['trial']} k_coef {rec['k_coef']}, lr {rec['lr']} (another "
                        "Optuna version?); delete the checkpoint to start afresh"
                    )
                study.tell(t, rec["objective"])
            records += replay
            continue
        circuits = prune(
            pruner.model,
            pruner.tok,
            pruner.task,
            pruner.cfg,
            seeds=seeds,
            k_coefs=k,
            lrs=lr,
            progress=run.progress,
            model_name=run.model_name,
            pruner=pruner,
        )
        improved = False
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
                best, improved = c, True
        if run.ckpt is not None:
            _save_round(run.ckpt, run.identity, records, best if improved else None, time.perf_counter() - run.start)
    best.meta["sweep"] = {
        "sampler": "optuna.TPESampler",
        "seed": seed,
        "n_trials": len(records),
        "parallel": parallel,
        "search_space": {k: list(v) for k, v in space.items()},
        "best_params": study.best_params,
        "best_value": study.best_value,
        "trials": records,
        "wall_time_s": time.perf_counter() - run.start,  # over every session of a resumed sweep
    }
    return best
