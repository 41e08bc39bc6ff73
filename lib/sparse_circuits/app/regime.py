"""Steps of notebook 14: a model in the papers' regime (wide, very weight-sparse) beside the narrow shipped ones.

- ``model_facts``: what the model is and what its training cost (nonzeros against a reference model, tokens, wall
  time and throughput read back from its ``metrics.jsonl``).
- ``task_table`` / ``task_bars_met``: accuracy and P_correct on the held-out test split, against bars fixed before
  the run.
- ``size_records``: circuit size (nodes and edges) at the target loss over several seeds, one batched pruning run
  per (model, task); ``faithful_study.size_cells`` turns them into dense / sparse ratios with bootstrap intervals.
- ``tuned_size_records``: the same records at each (model, task)'s tuned values, e.g. at Drori's budget.
- ``tuned_sweeps``: what the Optuna sweeps behind the tuned pruning configs (``configs/pruning/``) found per
  (model, task): the best circuit's size and every trial, read from the config files (no pruning).
- ``tuned_circuits``: one circuit per task, pruned with its tuned config (the papers' protocol), for the
  walkthrough-style analyses (C3, and notebooks 08/09's D2 and D3) on the wide model; ``tuned_seed_circuits``:
  several seeds of them, e.g. at Drori's 2000-step budget (D1).
- ``search_twins``: each circuit discretized again from its own logits by the other search (with or without the
  count training kept), to see which results depend on the discretization search.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from ..analysis.generalization import seed_study, summarize
from ..core.paths import REPO_ROOT, model_dir
from ..model.checkpoint import weights_digest
from ..pruning.pruner import PruneConfig, prune
from ..pruning.tuned import load_tuned_config
from ..tasks import TaskData, evaluate, get_task
from .experiments import cached_batch, cached_rediscretize, prune_and_evaluate
from .report import training_cost

# What the model must reach on the test split to count as solving the tasks (the regime issue's bars), fixed
# before the model was trained.
TASK_BARS = {"pronoun": 0.9, "ioi": 0.8, "ioi_same": 0.8, "questions": 0.8}


def model_facts(name: str, reference: str | None = None) -> dict:
    """Shape, sparsity, nonzero weights (and their ratio to ``reference``'s), held-out loss, training tokens, wall
    time and tokens per second of the shipped model ``name``, from its config.json and metrics.jsonl."""
    config = json.loads((model_dir(name) / "config.json").read_text())
    results = config.get("results", {})
    wall, rate = training_cost(model_dir(name))
    facts = {
        "name": name,
        "n_layer": config["model"].get("n_layer"),
        "d_model": config["model"]["d_model"],
        "n_ctx": config["model"].get("n_ctx"),
        "l0_target": config["train"]["l0_target"],
        "steps": config["train"]["steps"],
        "batch_size": config["train"]["batch_size"],
        "corpus_variant": config.get("corpus", {}).get("variant", "basic"),
        "nonzero": results.get("n_nonzero_sparsified"),
        "val_loss": results.get("val_loss"),
        "train_tokens": results.get("train_tokens"),
        "train_wall_s": wall,
        "tokens_per_s": rate,
    }
    if reference is not None:
        ref = json.loads((model_dir(reference) / "config.json").read_text()).get("results", {})
        n_ref = ref.get("n_nonzero_sparsified")
        facts["reference"] = reference
        facts["nonzero_vs_reference"] = facts["nonzero"] / n_ref if facts["nonzero"] and n_ref else None
    return facts


def task_table(loaded: dict, tasks: list[str], n_prompts: int, split: str = "test") -> dict[str, dict[str, dict]]:
    """{model: {task: ``tasks.evaluate`` metrics}} on ``n_prompts`` prompts of ``split`` (held out by default)."""
    table = {}
    for name, (model, tok, _) in loaded.items():
        table[name] = {}
        for t in tasks:
            task = get_task(t)
            table[name][t] = evaluate(model, task.data(split, tok, n_prompts), task.loss)
    return table


def task_bars_met(row: dict[str, dict], bars: dict[str, float] = TASK_BARS) -> dict[str, bool | None]:
    """Per task with a bar: whether the test accuracy reaches it (None: the task was not evaluated)."""
    return {t: (row[t]["accuracy"] >= bar if t in row else None) for t, bar in bars.items()}


def size_records(
    loaded: dict, tasks: list[str], cfg: PruneConfig, seeds: list[int], progress: bool = True
) -> tuple[list[dict], dict[str, float]]:
    """Prune every (model, task) for all ``seeds`` in one batched run each.

    Returns one record per circuit (model, task, seed, nodes, edges, pruning loss, reached_target: the rows
    ``faithful_study.size_cells`` reads) and the wall seconds of each (model, task) run, keyed "model/task".
    """
    records, seconds = [], {}
    for name, (model, tok, _) in loaded.items():
        for t in tasks:
            t0 = time.perf_counter()
            circuits = prune(model, tok, get_task(t), cfg, seeds=seeds, progress=progress, model_name=name)
            seconds[f"{name}/{t}"] = time.perf_counter() - t0
            records += circuit_records(name, t, seeds, circuits)
    return records, seconds


def tuned_size_records(
    loaded: dict,
    tasks: list[str],
    ablation: str,
    seeds: list[int],
    overrides: dict | None = None,
    cache_dir: str | Path | None = None,
    root: str | Path | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict[str, dict], dict[str, float]]:
    """``size_records`` at each (model, task)'s tuned values: every model of ``loaded`` and task with a tuned
    config (``ablation``, free norms; from ``root``, default ``configs/pruning/``) is pruned for all ``seeds`` in one
    batched run at that config with ``overrides`` on top (e.g. Drori's 2000 steps), kept in ``cache_dir``
    (``cached_batch``: the same batch pruned elsewhere with the same config, e.g. a seed study, is reused).

    Returns (the records, {"model/task": what was used: "steps", "batch_size", "k_coef", "lr",
    "search_trained_count"}, {"model/task": ``pruning_seconds`` of the run}); (model, task) pairs without a tuned
    config are left out of all three."""
    records, used, seconds = [], {}, {}
    for name, loaded_model in loaded.items():
        for t in tasks:
            config = load_tuned_config(name, t, ablation, root=root)
            if config is None:
                continue
            cfg = config.prune_config(**(overrides or {}))
            circuits, _ = cached_batch(loaded_model, cfg, seeds, name, t, cache_dir, progress)
            records += circuit_records(name, t, seeds, circuits)
            used[f"{name}/{t}"] = {
                k: getattr(cfg, k) for k in ("steps", "batch_size", "k_coef", "lr", "search_trained_count")
            }
            seconds[f"{name}/{t}"] = run_seconds(circuits[0])  # the seeds share one run
    return records, used, seconds


def circuit_records(model_name: str, task: str, seeds: list[int], circuits: list) -> list[dict]:
    """The ``size_records`` rows of circuits pruned elsewhere (e.g. by ``generalization.seed_study``)."""
    return [
        {
            "model": model_name,
            "task": task,
            "seed": seed,
            "nodes": c.n_nodes,
            "total_nodes": c.total_nodes,
            "edges": c.n_edges,
            "loss": c.meta["loss"],
            "reached": bool(c.meta["reached_target"]),
            "circuit": c,
        }
        for seed, c in zip(seeds, circuits)
    ]


def tuned_circuits(
    loaded: dict,
    model_name: str,
    tasks: list[str],
    fallback: PruneConfig,
    tests: dict[tuple[str, str], TaskData],
    overrides: dict | None = None,
    seed: int | str = 0,
    cache_dir: str | Path | None = None,
    root: str | Path | None = None,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """One circuit of ``model_name`` per task, pruned with the task's tuned config from ``root`` (default
    ``configs/pruning/``; for ``fallback.ablation`` and ``fallback.frozen_ln``), or with ``fallback`` where the task
    has none; ``overrides`` (e.g. the smoke profile's steps) apply on top of either.

    ``seed``: a pruning seed, or "best" for the seed of the sweep's best trial (``SweepRecord.best_seed``: the
    circuit the sweep found, pruned again; seed 0 where the task has no tuned config). Returns
    (``prune_and_evaluate``'s entries, {task: what was used: "tuned" (bool), "seed", "steps", "batch_size",
    "k_coef", "lr"}), so every number shown can say which budget, hyperparameters and seed it comes from."""
    if seed != "best" and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or 'best', got {seed!r}")
    overrides = overrides or {}
    entries, used = {}, {}
    for t in tasks:
        config = load_tuned_config(model_name, t, fallback.ablation, fallback.frozen_ln, root)
        cfg = config.prune_config(**overrides) if config else replace(fallback, **overrides)
        s = (config.sweep.best_seed if config else 0) if seed == "best" else seed
        entries.update(prune_and_evaluate({model_name: loaded[model_name]}, tests, [t], [cfg], s, cache_dir))
        used[t] = {
            "tuned": config is not None,
            "seed": s,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "k_coef": cfg.k_coef,
            "lr": cfg.lr,
        }
    return entries, used


def run_seconds(circuit) -> float:
    """Wall time of the pruning run that made ``circuit`` (its mask training and discretization, for every seed of
    its batch), from its metadata: a circuit loaded from the cache counts its original run, not the time to load it."""
    return float(circuit.meta["train_seconds"] + circuit.meta["discretize_seconds"])


def pruning_seconds(entries) -> float:
    """``run_seconds`` summed over ``entries`` (``prune_and_evaluate`` entries, one run of one seed each)."""
    return sum(run_seconds(e["circuit"]) for e in entries)


def tuned_seed_circuits(
    loaded: dict,
    model_name: str,
    tasks: list[str],
    fallback: PruneConfig,
    tests: dict[tuple[str, str], TaskData],
    seeds: list[int],
    overrides: dict | None = None,
    cache_dir: str | Path | None = None,
    root: str | Path | None = None,
) -> dict[str, dict]:
    """``tuned_circuits`` for each of several seeds: per task, one circuit per seed at the task's tuned values with
    ``overrides`` on top (e.g. Drori's 2000 steps), each a run of its own (so each is saved and reused alone).

    Returns {task: {"circuits": the ``prune_and_evaluate`` entries, one per seed, "rows": their summaries with
    "seed" and "kept_in_training" (nodes with a positive logit at the last step, which the discretized circuit can
    far exceed when many logits tie at the clamp and the search meets a loss that does not fall with k), "used": what the runs used (as ``tuned_circuits`` says, without the seed), "best_nodes": the smallest
    circuit reaching the target (None when no seed reached it), "seconds": wall time of this call for the task (a
    cached circuit takes its load time), "prune_seconds": ``pruning_seconds`` of its circuits}}."""
    if not seeds:
        raise ValueError("need at least one seed")
    out = {}
    for t in tasks:
        t0 = time.perf_counter()
        circuits, used = [], None
        for s in seeds:
            entries, u = tuned_circuits(loaded, model_name, [t], fallback, tests, overrides, s, cache_dir, root)
            circuits.append(next(iter(entries.values())))
            used = {k: v for k, v in u[t].items() if k != "seed"}
        rows = [
            {"seed": s, **e["summary"], "kept_in_training": e["circuit"].meta["final_kept_during_training"]}
            for s, e in zip(seeds, circuits)
        ]
        reached = [r["nodes"] for r in rows if r["reached_target"]]
        out[t] = {
            "circuits": circuits,
            "rows": rows,
            "used": used,
            "best_nodes": min(reached) if reached else None,
            "seconds": time.perf_counter() - t0,
            "prune_seconds": pruning_seconds(circuits),
        }
    return out


def _repo_relative(path) -> str:
    """A path as the repository names it (results files must not hold one machine's absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)


def tuned_sweeps(
    models: list[str], tasks: list[str], ablation: str, root: str | Path | None = None, frozen_ln: bool = False
) -> dict[str, dict[str, dict | None]]:
    """{model: {task: the sweep behind its tuned config, or None where no config exists}}, from ``root``
    (default ``configs/pruning``); ``frozen_ln``: the sweeps that pruned with frozen norms.

    Each entry: the budget the sweep pruned at (steps, batch_size), the best values (k_coef, lr), the best
    circuit's node count and loss and whether it reached the target, the number of trials and of trials reaching
    the target, the reaching trials' node counts (sorted), every trial's (k_coef, lr, nodes, reached), the sweep's
    wall time and the config's path."""
    out: dict[str, dict[str, dict | None]] = {}
    for m in models:
        out[m] = {}
        for t in tasks:
            config = load_tuned_config(m, t, ablation, frozen_ln, root)
            if config is None:
                out[m][t] = None
                continue
            sw = config.sweep
            out[m][t] = {
                "steps": config.fixed.get("steps"),
                "batch_size": config.fixed.get("batch_size"),
                **config.tuned,
                "best_nodes": sw.best_nodes,
                "best_loss": sw.best_loss,
                "reached_target": sw.reached_target,
                "total_nodes": sw.total_nodes,
                "n_trials": sw.n_trials,
                "n_reached": sum(tr["reached_target"] for tr in sw.trials),
                "nodes_reached": sorted(tr["nodes"] for tr in sw.trials if tr["reached_target"]),
                "trials": [
                    {k: tr[k] for k in ("k_coef", "lr", "nodes")} | {"reached": tr["reached_target"]}
                    for tr in sw.trials
                ],
                "wall_time_s": sw.wall_time_s,
                "path": _repo_relative(config.path),
            }
    return out


def best_reaching_nodes(sweep: dict) -> int | None:
    """The node count of a ``tuned_sweeps`` entry's best circuit when it reached the target loss, else None."""
    return sweep["best_nodes"] if sweep["reached_target"] else None


def best_nodes_ratio(base: dict, other: dict) -> float | None:
    """``other``'s best circuit size over ``base``'s, two ``tuned_sweeps`` entries of one (model, task) (e.g. mean
    against zero ablation): inf when only ``base`` reached the target (``other`` needs more nodes than any it tried),
    None when ``base`` did not reach it (nothing to compare against)."""
    b, o = best_reaching_nodes(base), best_reaching_nodes(other)
    if b is None:
        return None
    return float("inf") if o is None else o / b


SEARCHES = {False: "standard", True: "trained count"}
"""The two discretization searches, by ``PruneConfig.search_trained_count``: the log-spaced grid and bisection
alone, or with each run's own count of nodes that training kept (docs/pruning.md, "Discretization")."""


ROW_PREFIX = {"standard": "standard", "trained count": "trained"}
"""Each search's prefix in ``search_twins``' rows ("standard_nodes", "trained_nodes", ...)."""


def other_search(own: str) -> str:
    """The search of ``SEARCHES`` that is not ``own``."""
    return next(s for s in SEARCHES.values() if s != own)


def sized_by_search(nodes: int, kept_in_training: float | None, far_ratio: float) -> bool:
    """Whether a circuit has more than ``far_ratio`` times the nodes training kept (at least 1): its size was then
    chosen by the discretization search, not by training."""
    return nodes > far_ratio * max(kept_in_training or 0, 1)


def twins_summary(twins: dict, far_ratio: float) -> dict:
    """Per group of ``search_twins``: "model", "own" (the search its circuits were pruned with), "n", "changed",
    "rows", and per search (prefix of ``ROW_PREFIX``) the median nodes, the count reaching the target and the count
    ``sized_by_search``."""
    out = {}
    for group, tw in twins.items():
        rs = tw["rows"]
        out[group] = {
            "model": tw["model"],
            "own": rs[0]["own"],
            "n": len(rs),
            "changed": tw["changed"],
            "rows": rs,
            **{f"{k}_median_nodes": float(statistics.median(r[f"{k}_nodes"] for r in rs)) for k in ROW_PREFIX.values()},
            **{f"{k}_reached": sum(r[f"{k}_reached"] for r in rs) for k in ROW_PREFIX.values()},
            **{
                f"{k}_far": sum(sized_by_search(r[f"{k}_nodes"], r["kept_in_training"], far_ratio) for r in rs)
                for k in ROW_PREFIX.values()
            },
        }
    return out


def evaluated_study(loaded_model: tuple, circuits: list, seeds: list[int], n_eval: int) -> dict:
    """``generalization.summarize`` of a seed study on circuits already discretized (nothing pruned), at the config
    they record, with ``n_eval`` held-out prompts per eval task."""
    model, tok, _ = loaded_model
    cfg = PruneConfig.from_dict(circuits[0].meta["prune_config"])
    return summarize(seed_study(model, tok, cfg, seeds, circuits=circuits, n_eval=n_eval))


def search_twins(loaded: dict, groups: dict[str, tuple[str, list]], cache_dir: str | Path | None = None) -> dict:
    """Every circuit of ``groups`` ({group: (model name, [Circuit])}) under both discretization searches: its own,
    and its twin from ``cached_rediscretize`` with ``search_trained_count`` switched (same logits, same fixed
    evaluation prompts; kept in ``cache_dir``).

    Returns {group: {"model", "standard" / "trained count": the circuits under that search (in order), "rows": per
    circuit "seed", "own" (the search it was pruned with), "standard_nodes", "standard_reached", "trained_nodes",
    "trained_reached", "kept_in_training" (nodes with a positive logit at the last step), "changed": how many
    circuits differ in nodes between the searches}}."""
    weights, out = {}, {}
    for group, (m, circuits) in groups.items():
        if m not in weights:  # once per model
            weights[m] = weights_digest(loaded[m][0])
        w = weights[m]
        by_search, rows = {name: [] for name in SEARCHES.values()}, []
        for c in circuits:
            own = bool(c.meta["prune_config"]["search_trained_count"])
            twin = cached_rediscretize(loaded[m], c, cache_dir, w, search_trained_count=not own)
            std, trained = (twin, c) if own else (c, twin)
            by_search["standard"].append(std)
            by_search["trained count"].append(trained)
            rows.append(
                {
                    "seed": c.meta.get("seed"),
                    "own": SEARCHES[own],
                    "standard_nodes": std.n_nodes,
                    "standard_reached": bool(std.meta["reached_target"]),
                    "trained_nodes": trained.n_nodes,
                    "trained_reached": bool(trained.meta["reached_target"]),
                    "kept_in_training": c.meta.get("final_kept_during_training"),
                }
            )
        changed = sum(r["standard_nodes"] != r["trained_nodes"] for r in rows)
        out[group] = {"model": m, **by_search, "rows": rows, "changed": changed}
    return out
