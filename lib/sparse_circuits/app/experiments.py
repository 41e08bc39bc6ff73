"""Experiment steps the notebooks share, so each notebook states only what is its own.

- ``walkthrough_setup``: notebooks 04-06 prune one circuit of the shipped model for one task and read it node by
  node; this loads the model and the held-out prompts, prunes, and evaluates the model and the circuit.
- ``prune_circuits`` / ``prune_and_evaluate``: notebooks 08 and 09 prune one circuit per (model, task, ablation)
  and compare each with its model on held-out prompts. With a ``cache_dir`` (``circuit_cache_dir(profile)``:
  runs/<profile>/circuits) each circuit is saved once and reused by the next notebook that asks for exactly the
  same one (``cache_key``: model name, weights and config, task, every ``PruneConfig`` field, seed, version and
  the source of the layers pruning runs through). ``cached_seed_study`` keeps the circuits of seed studies
  (notebooks 10, 11, 14 and 15) the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..analysis import discretization
from ..analysis.generalization import seed_study
from ..analysis.walkthrough import evaluate_full
from ..circuits.ablation import resolve_ablation
from ..circuits.circuit import Circuit, task_record
from ..circuits.evaluate import circuit_frozen_ln
from ..circuits.graph import circuit_graph, edge_counts
from ..core import storage
from ..core.paths import RUNS_DIR, check_profile, model_dir
from ..core.version import __version__
from ..model.checkpoint import weights_digest  # noqa: F401  (cache keys; re-exported for callers)
from ..model.gpt import SparseGPT
from ..model.inference import load
from ..pruning.pruner import PruneConfig, Pruner, prune
from ..tasks import Task, TaskData, evaluate, get_task
from ..viz.figures import node_counts_by_site

WALKTHROUGH_SCALE = {
    # the full scale uses Drori's defaults (lr 3e-3, k_coef 1e-4)
    "full": {"steps": 1000, "batch_size": 64, "eval_n": 256, "n_prompts": 128, "lr": 3e-3, "k_coef": 1e-4},
    # smoke: a larger rate and penalty, so that 150 short steps prune enough for a quick inspector export
    "smoke": {"steps": 150, "batch_size": 8, "eval_n": 16, "n_prompts": 16, "lr": 1e-2, "k_coef": 1e-3},
}


# ------------------------------------------------------------------------------ one circuit (04-06)


@dataclass
class Walkthrough:
    """One pruned circuit of one task with everything a walkthrough reads first."""

    model_name: str
    model: SparseGPT
    tok: object
    task: Task
    test: TaskData
    """Held-out test prompts (never seen in pruning)."""
    n_prompts: int
    """Test prompts asked for per task (``test`` may hold fewer when the split is smaller)."""
    config: PruneConfig
    circuit: Circuit
    ablation: dict | None
    """Values of the pruned-away nodes on the test prompts, for ``circuit.run`` (None: zero)."""
    graph: dict
    """``circuits.graph.circuit_graph`` with edges to the answer tokens' logits."""
    edges: dict[str, int]
    """The graph's edges counted by kind (``edge_counts``)."""
    model_test: dict
    circuit_test: dict
    """``tasks.evaluate`` metrics of the model and of the circuit on the test prompts."""
    sites: dict[str, int]
    """Kept nodes per "L{layer}.{site}" (sites with none left out)."""
    answers: str
    """The answer tokens, as "he/she"."""

    def summary(self, prompts: str = "test prompts") -> str:
        """The circuit's size, edges, pruning loss and held-out metrics, as printed lines."""
        c, e, m, t = self.circuit, self.edges, self.model_test, self.circuit_test
        return "\n".join(
            [
                f"circuit: {c.n_nodes} of {c.total_nodes} nodes; {c.n_edges} edges between nodes ({e['weights']} weights, "
                f"{e['qk_pairs']} q-k pairs, {e['residual']} residual) + {e['unembed']} to the {self.answers} logits",
                f"loss on the fixed pruning prompts {c.meta['loss']:.3f} (target {self.config.target_loss}; reached: "
                f"{c.meta['reached_target']})",
                f"held-out {prompts}: model loss {m['loss']:.3f}, accuracy {m['accuracy']:.3f}; circuit loss "
                f"{t['loss']:.3f}, accuracy {t['accuracy']:.3f}",
                f"nodes by site: {self.sites}",
            ]
        )


def walkthrough_setup(
    task_name: str,
    answer_tokens: list[str],
    profile: str,
    model_name: str,
    ablation: str,
    seed: int = 0,
    steps: int = 0,
    batch_size: int = 0,
    n_prompts: int = 0,
    threads: int = 1,
) -> Walkthrough:
    """Load ``model_name``, prune it on ``task_name`` (one seed) and evaluate model and circuit on held-out prompts.

    ``steps``, ``batch_size`` and ``n_prompts`` of 0 take the profile's default (``WALKTHROUGH_SCALE``). One CPU
    thread (``threads``) makes the circuit identical on every machine: its loss has cliffs.
    """
    scale = WALKTHROUGH_SCALE[profile]
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, tok, _ = load(model_dir(model_name))
    task = get_task(task_name)
    n_prompts = n_prompts or scale["n_prompts"]
    test = task.data("test", tok, n_prompts)
    cfg = PruneConfig(
        ablation=ablation,
        steps=steps or scale["steps"],
        batch_size=batch_size or scale["batch_size"],
        eval_n=scale["eval_n"],
        lr=scale["lr"],
        k_coef=scale["k_coef"],
    )
    circuit = prune(model, tok, task, cfg, seeds=[seed], progress=False, model_name=model_name)[0]
    values = resolve_ablation(model, tok, ablation, test)
    graph = circuit_graph(model, circuit, [tok.token_to_id(t) for t in answer_tokens], tok)
    model_test = evaluate(model, test, task.loss)
    with circuit.run(model, values):
        circuit_test = evaluate_full(model, test, task.loss)  # a full forward pass fits any ablation values
    sites = {
        f"L{layer}.{s}": n
        for s, per in node_counts_by_site(circuit.nodes, model).items()
        for layer, n in enumerate(per)
        if n
    }
    return Walkthrough(
        model_name=model_name,
        model=model,
        tok=tok,
        task=task,
        test=test,
        n_prompts=n_prompts,
        config=cfg,
        circuit=circuit,
        ablation=values,
        graph=graph,
        edges=edge_counts(graph),
        model_test=model_test,
        circuit_test=circuit_test,
        sites=sites,
        answers="/".join(answer_tokens),
    )


# ---------------------------------------------------------------- a circuit per model, task, ablation (08, 09)


def circuit_key(model_name: str, task: str, ablation: str) -> str:
    """The name of one circuit of ``prune_circuits``: "model/task/ablation"."""
    return f"{model_name}/{task}/{ablation}"


def circuit_cache_dir(profile: str) -> Path:
    """Where ``prune_circuits`` keeps the circuits of a profile's notebooks: runs/<profile>/circuits."""
    return RUNS_DIR / check_profile(profile) / "circuits"


# The layers a pruned circuit's computation runs through: an edit to any of their files starts the cache afresh.
PRUNING_LAYERS = ("core", "data", "model", "training", "tasks", "circuits", "pruning")


def source_digest(layers: tuple[str, ...] = PRUNING_LAYERS) -> str:
    """SHA-256 of the package's Python files in ``layers`` (relative paths and contents)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(p for layer in layers for p in (root / layer).rglob("*.py")):
        h.update(f"{path.relative_to(root).as_posix()}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(model_name: str, weights: str, model_config: dict, task: Task, cfg: PruneConfig, seed: int) -> dict:
    """Everything a pruned circuit depends on, as JSON data: two runs with equal keys give the same circuit."""
    key = {
        "model": model_name,
        "weights_sha256": weights,
        "model_config": model_config,
        "task": task_record(task),
        "prune_config": cfg.to_dict(),
        "seed": seed,
        "package_version": __version__,
        "code_sha256": source_digest(),
    }
    return json.loads(json.dumps(key, sort_keys=True))  # tuples become lists, as they come back from a file


def cached_circuit(cache_dir: Path, key: dict) -> tuple[Path, Circuit | None]:
    """(the key's directory, its circuit if saved under exactly this key else None)."""
    path = Path(cache_dir) / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    key_file = path / "key.json"
    if key_file.is_file() and storage.read_json(key_file) == key:
        return path, Circuit.load(path)
    return path, None


def save_cached(path: Path, key: dict, circuit: Circuit) -> None:
    """Save ``circuit`` and its key under ``path`` all at once: written to a temporary directory beside it and
    renamed into place, so a kill leaves no half-written entry (a concurrent writer of the same key wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        circuit.save(tmp)
        storage.write_json(tmp / "key.json", key)
        if path.exists():
            shutil.rmtree(path)  # a stale entry of another key with the same name
        os.replace(tmp, path)
    except OSError:
        if not (path / "key.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prune_circuits(
    loaded: dict,
    tasks: list[str],
    configs: list[PruneConfig],
    seed: int = 0,
    progress: bool = False,
    cache_dir: str | Path | None = None,
) -> dict[str, dict]:
    """One circuit (one seed) per (model, task, config): each config prunes with its own ablation.

    ``loaded`` maps model names to ``inference.load`` results. A run is one call of ``prune`` (runs of different
    tasks cannot share a batch: their losses differ). Mean ablation values are computed once per model and
    shared by its tasks. With ``cache_dir``, a circuit saved there under the same ``cache_key`` is loaded instead
    of pruned again, and a newly pruned one is saved. Returns {circuit_key: {"circuit", "ablation" (values for
    ``circuit.run``: None for zero, the node means for mean), "model", "task", "ablation_kind", "cached"}},
    ordered by model, task, then ablation.
    """
    out = {}
    for name, (model, tok, model_config) in loaded.items():
        means = None
        weights = weights_digest(model) if cache_dir is not None else ""
        for cfg in configs:
            a = cfg.ablation
            for t in tasks:
                task = get_task(t)
                pruner = Pruner(model, tok, task, cfg, means=means)  # the model's means are computed once
                means = pruner.means if a == "mean" else means
                circuit, path = None, None
                if cache_dir is not None:
                    key = cache_key(name, weights, model_config, task, cfg, seed)
                    path, circuit = cached_circuit(Path(cache_dir), key)
                cached = circuit is not None
                if not cached:
                    runs = prune(model, tok, task, cfg, seeds=[seed], progress=progress, model_name=name, pruner=pruner)
                    circuit = runs[0]
                    if path is not None:
                        save_cached(path, key, circuit)
                out[circuit_key(name, t, a)] = {
                    "circuit": circuit,
                    "ablation": pruner.means if a == "mean" else None,
                    "model": name,
                    "task": t,
                    "ablation_kind": a,
                    "cached": cached,
                }
    order = [circuit_key(m, t, c.ablation) for m in loaded for t in tasks for c in configs]
    return {k: out[k] for k in order}


def cached_batch(
    loaded_model: tuple,
    cfg: PruneConfig,
    seeds: list[int],
    model_name: str,
    task: str,
    cache_dir: str | Path | None,
    progress: bool = False,
) -> tuple[list[Circuit], bool]:
    """The circuits of ``seeds`` pruned together in one batched run of ``task`` on one ``inference.load`` result,
    kept in ``cache_dir`` (None: nothing kept), and whether they came from there. Runs of different batches can
    differ in the last bits, so each circuit's ``cache_key`` also names the whole batch of seeds: the batch is
    reused only when every seed's circuit of exactly this batch is there, and is otherwise pruned and saved whole."""
    model, tok, model_config = loaded_model
    seeds = list(seeds)
    t = get_task(task)
    if cache_dir is not None:
        weights = weights_digest(model)
        keys = [cache_key(model_name, weights, model_config, t, cfg, s) | {"batch_seeds": seeds} for s in seeds]
        found = [cached_circuit(Path(cache_dir), k) for k in keys]
        if all(c is not None for _, c in found):
            return [c for _, c in found], True
    circuits = prune(model, tok, t, cfg, seeds=seeds, progress=progress, model_name=model_name)
    if cache_dir is not None:
        for (path, _), key, circuit in zip(found, keys, circuits):
            save_cached(path, key, circuit)
    return circuits, False


def seed_shards(seeds: list[int], shard: int | None) -> list[list[int]]:
    """``seeds`` in consecutive batches of ``shard`` (None: one batch of all), the batched runs of a study."""
    seeds = list(seeds)
    if shard is None:
        return [seeds]
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 1:
        raise ValueError(f"shard must be a positive number of seeds per run or None, got {shard!r}")
    return [seeds[i : i + shard] for i in range(0, len(seeds), shard)]


def cached_seed_study(
    loaded_model: tuple,
    cfg: PruneConfig,
    seeds: list[int],
    model_name: str,
    cache_dir: str | Path | None,
    shard: int | None = None,
    **kwargs,
) -> dict:
    """``generalization.seed_study`` of one ``inference.load`` result on the circuits of ``cached_batch`` (its task
    ``kwargs["task"]``, default IOI), so a study's circuits are pruned once and kept in ``cache_dir``.

    ``shard``: seeds per batched run (``seed_shards``; None: all in one run). Each shard is cached on its own, so a
    study grown by more shards prunes only the new ones, and separate processes can fill the shards in parallel.
    ``cached`` is True when every shard came from the cache."""
    model, tok, _ = loaded_model
    circuits, cached = [], True
    for part in seed_shards(seeds, shard):
        got, hit = cached_batch(
            loaded_model, cfg, part, model_name, kwargs.get("task", "ioi"), cache_dir, kwargs.get("progress", False)
        )
        circuits += got
        cached = cached and hit
    study = seed_study(model, tok, cfg, list(seeds), model_name=model_name, circuits=circuits, **kwargs)
    study["cached"] = cached
    return study


def cached_rediscretize(
    loaded_model: tuple, circuit: Circuit, cache_dir: str | Path | None, weights: str | None = None, **overrides
) -> Circuit:
    """``analysis.discretization.rediscretize`` of ``circuit`` on one ``inference.load`` result, kept in
    ``cache_dir`` (None: nothing kept) under a key naming the circuit's logits (their SHA-256), its pruning config
    and seed, the overrides, the weights (``weights``: their ``weights_digest``, computed when not given) and the
    code (the pruning layers and the module that re-discretizes)."""
    model, tok, _ = loaded_model
    if cache_dir is None:
        return discretization.rediscretize(model, tok, circuit, **overrides)
    key = {
        "rediscretize": overrides,
        "tau_sha256": hashlib.sha256(circuit.tau.float().contiguous().numpy().tobytes()).hexdigest(),
        "prune_config": circuit.meta.get("prune_config"),
        "task": circuit.meta.get("task"),
        "seed": circuit.meta.get("seed"),
        "weights_sha256": weights or weights_digest(model),
        "package_version": __version__,
        "code_sha256": source_digest(),
        "rediscretize_sha256": hashlib.sha256(Path(discretization.__file__).read_bytes()).hexdigest(),
    }
    key = json.loads(json.dumps(key, sort_keys=True))
    path, found = cached_circuit(Path(cache_dir), key)
    if found is None:
        found = discretization.rediscretize(model, tok, circuit, **overrides)
        save_cached(path, key, found)
    return found


def ablation_for(entry: dict, model, tok, data: TaskData):
    """Ablation values of a ``prune_circuits`` entry for a pruned pass on ``data`` (resample values are drawn for
    these prompts; zero and mean values do not depend on them)."""
    if entry["ablation_kind"] == "resample":
        return resolve_ablation(model, tok, "resample", data)
    return entry["ablation"]


def prune_and_evaluate(
    loaded: dict,
    tests: dict[tuple[str, str], TaskData],
    tasks: list[str],
    configs: list[PruneConfig],
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, dict]:
    """``prune_circuits`` (reusing circuits saved in ``cache_dir``), then each circuit and its model on the
    held-out prompts ``tests[(model, task)]``.

    Each entry gains "test_ablation" (``ablation_for`` the test prompts) and "summary" (nodes, edges, the pruning
    loss, whether it reached the target, the held-out loss of the model and of the circuit, and the circuit's
    held-out binary and top-1 accuracy); one line per circuit is printed, and the wall time at the end.
    """
    t0 = time.perf_counter()
    entries = prune_circuits(loaded, tasks, configs, seed=seed, cache_dir=cache_dir)
    for key, e in entries.items():
        model, tok, _ = loaded[e["model"]]
        test, task = tests[(e["model"], e["task"])], get_task(e["task"])
        e["test_ablation"] = ablation_for(e, model, tok, test)
        c = e["circuit"]
        # a circuit pruned with frozen norms is scored as it was pruned: at the model's norm scales on these prompts
        frozen = test.tokens.to(next(model.parameters()).device) if circuit_frozen_ln(c) else None
        with c.run(model, e["test_ablation"], frozen_ln_tokens=frozen):
            held_out = evaluate_full(model, test, task.loss)
        e["summary"] = {
            "nodes": c.n_nodes,
            "edges": c.n_edges,
            "train_loss": c.meta["loss"],
            "reached_target": c.meta["reached_target"],
            "test_loss_model": evaluate(model, test, task.loss)["loss"],
            "test_loss_circuit": held_out["loss"],
            "test_accuracy_circuit": held_out["accuracy"],  # correct beats incorrect
            "test_top1_accuracy_circuit": held_out["top1_accuracy"],  # correct is the most likely token
        }
        print(
            f"{key:<28} {c.n_nodes:>5} nodes  loss {c.meta['loss']:.3f} (target reached: "
            f"{c.meta['reached_target']}); held-out loss model {e['summary']['test_loss_model']:.3f}, circuit "
            f"{held_out['loss']:.3f}" + (" (saved circuit)" if e["cached"] else "")
        )
    print(f"pruning and held-out evaluation took {time.perf_counter() - t0:.0f} s")
    return entries
