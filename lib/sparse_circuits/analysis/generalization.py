"""Do pruned circuits generalize like their model? Many seeds, held-out prompts, frozen norms (D4, D5).

Drori pruned one model 100 times on opposite-gender IOI prompts (task ``ioi``) and read every circuit on held-out
same-gender prompts (``ioi_same``), where "the gender of name_1" (the model's rule) and "the gender opposite to
name_2" (a shortcut that is always right on the pruning prompts) give different answers. ``seed_study`` repeats
that experiment for one (model, ablation, norm mode) in one batched pruning run, and evaluates every circuit on
every held-out task at once: the masks ``[S, N]`` share each forward pass, no loop over seeds.

    study = seed_study(model, tok, PruneConfig(ablation="zero", steps=200), seeds=list(range(100)))
    summarize(study)   # per-seed P_correct on ioi / ioi_same, bad circuits, Jaccard overlap, core nodes

Definitions used throughout (and in notebooks 10 and 11):

- **P_correct** of a circuit on a task: ``p_c / (p_c + p_i)`` (``tasks.binary_p_correct``) per prompt, averaged
  over the held-out test prompts.
- **name_2 rule share**: the fraction of prompts where the circuit's answer (the more likely of the two pronouns)
  is the pronoun of the gender *opposite to name_2*. On same-gender prompts that answer is always wrong, so the
  share is 1 - accuracy there; on opposite-gender prompts it is the accuracy.
- **bad circuit** (Drori's spike at 0): a circuit whose mean P_correct on same-gender prompts is below
  ``BAD_THRESHOLD`` (0.2); it answers with the name_2 shortcut on most of them. **good**: at least
  ``GOOD_THRESHOLD`` (0.8); anything between is **mixed**.
- A seed **reaches the target** when its discretized circuit has task loss <= ``PruneConfig.target_loss`` on the
  fixed evaluation prompts (``Pruner.discretize``); only those seeds enter the histograms and overlap statistics.

With ``PruneConfig(frozen_ln=True)`` circuits are pruned *and evaluated* with every norm's scale taken from the
unpruned model on the same prompts (the pruned network they were optimized as).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ..core.seeds import derived_seed
from ..data.words import gender_of
from ..model.names import hook_name
from ..pruning.pruner import PruneConfig, Pruner, prune
from ..tasks import TaskData, get_task
from .faithfulness import pairwise_jaccard

EVAL_TASKS = ("ioi", "ioi_same")
BAD_THRESHOLD = 0.2
GOOD_THRESHOLD = 0.8


# ------------------------------------------------------------------------------ batched evaluation of masks


def _run(pruner: Pruner, masks: torch.Tensor, data: TaskData, measure, chunk: int, **kw) -> torch.Tensor:
    """[S, N] masks on every prompt of ``data``, ``chunk`` masks per pass -> [S, n] ``measure`` on the CPU.

    Frozen norm scales (``pruner.cfg.frozen_ln``) are recorded once on the prompts and repeated for every mask;
    mask i's resample values come from its own seed.
    """
    seeds = [derived_seed("generalization", i) for i in range(masks.shape[0])]
    evaluator = dataclasses.replace(pruner.evaluator, scales_once=True)
    return evaluator.run(masks, data, measure, seeds=seeds, chunk=chunk, **kw).cpu()


@torch.no_grad()
def circuit_p_correct(pruner: Pruner, masks: torch.Tensor, data: TaskData, chunk: int = 16) -> torch.Tensor:
    """[S, N] masks (1 keeps a node) -> [S, n] binary P_correct of every mask on every prompt of ``data``.

    Ablation values and frozen norms follow ``pruner.cfg``; a mask of ones gives the model's own values.
    """
    return _run(pruner, masks, data, "p_correct", chunk)


@torch.no_grad()
def final_residual_rms(pruner: Pruner, masks: torch.Tensor, data: TaskData, chunk: int = 16) -> torch.Tensor:
    """[S, n] RMS of the residual stream that enters the final norm, at each prompt's answer position.

    Measured on the pruned network as it runs (with frozen norm scales if ``pruner.cfg.frozen_ln``): the
    activation itself, not the scale the norm divides by.
    """
    name = hook_name("resid_post", pruner.model.cfg.n_layer - 1)  # with at=, only the answer position: [B, 1, D]
    seen = {}

    def save(x, hook):
        seen["x"] = x.detach()

    def rms(logits: torch.Tensor, rep: TaskData) -> torch.Tensor:
        return seen.pop("x")[:, -1].float().pow(2).mean(-1).sqrt()

    return _run(pruner, masks, data, rms, chunk, extra_hooks=[(name, save)])


def name2_rule_share(p_correct: torch.Tensor, data: TaskData, tokenizer) -> torch.Tensor:
    """[S, n] P_correct on IOI prompts -> [S] fraction of prompts answered with the pronoun opposite to name_2."""
    vocab = tokenizer.get_vocab()
    him, her = vocab["him"], vocab["her"]
    shortcut = torch.tensor([her if gender_of(a["name_2"]) == "male" else him for a in data.assignments])
    answer = torch.where(p_correct > 0.5, data.correct.cpu()[None], data.incorrect.cpu()[None])  # [S, n]
    return (answer == shortcut[None]).float().mean(1)


def classify(same_p_correct: list[float] | torch.Tensor) -> list[str]:
    """ "bad" (< BAD_THRESHOLD), "good" (>= GOOD_THRESHOLD) or "mixed", from mean same-gender P_correct."""
    return [
        "bad" if p < BAD_THRESHOLD else ("good" if p >= GOOD_THRESHOLD else "mixed") for p in map(float, same_p_correct)
    ]


# ------------------------------------------------------------------------------------------- overlap


def jaccard_summary(nodes: torch.Tensor) -> dict:
    """Distribution of the S(S-1)/2 pairwise overlaps of S node sets."""
    S = nodes.shape[0]
    if S < 2:
        return {"pairs": 0, "values": [], "mean": None, "median": None, "min": None, "max": None}
    iu = torch.triu_indices(S, S, offset=1)
    v = pairwise_jaccard(nodes)[iu[0], iu[1]]
    return {
        "pairs": len(v),
        "values": v.tolist(),
        "mean": float(v.mean()),
        "median": float(v.median()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def core_nodes(nodes: torch.Tensor, min_share: float = 0.9) -> torch.Tensor:
    """[N] bool: nodes kept by at least ``min_share`` of the S node sets ``nodes`` [S, N] (none if S is 0)."""
    if nodes.shape[0] == 0:
        return torch.zeros(nodes.shape[1], dtype=torch.bool)
    return nodes.float().mean(0) >= min_share - 1e-9


# ---------------------------------------------------------------------------------------------- study


def run_share_seconds(circuit) -> float:
    """A circuit's share of the wall time of the batched run that pruned it (mask training and discretization,
    divided by the seeds of that run), from its metadata."""
    total = sum(circuit.meta.get(k, 0.0) for k in ("train_seconds", "discretize_seconds"))
    return total / max(1, int(circuit.meta.get("n_seeds_in_run", 1)))


def seed_study(
    model,
    tokenizer,
    cfg: PruneConfig,
    seeds: list[int],
    eval_tasks=EVAL_TASKS,
    task: str = "ioi",
    eval_split: str = "test",
    n_eval: int = 256,
    model_name: str | None = None,
    progress: bool = False,
    chunk: int = 16,
    circuits: list | None = None,
) -> dict:
    """Prune ``task`` for every seed in one batched run, then evaluate every circuit on every eval task.

    ``circuits``: the seeds' circuits pruned before (one per seed, in order; e.g. from a cache), evaluated without
    pruning again; ``seconds["prune"]`` is then the time their runs took when they pruned them (from their
    metadata: consecutive circuits of one run share its time, so each counts its share of it).

    Returns a dict with the circuits, their masks ``[S, N]``, the pruner, per-seed numbers (nodes, edges, loss,
    reached_target, P_correct and name_2 rule share per eval task, class) and the model's own P_correct and
    accuracy per eval task; ``summarize`` turns it into JSON-ready numbers.
    """
    seeds = list(seeds)
    pruner = Pruner(model, tokenizer, get_task(task), cfg)
    t0 = time.perf_counter()
    pruned_in = None if circuits is None else sum(run_share_seconds(c) for c in circuits)
    if circuits is None:
        circuits = prune(
            model, tokenizer, pruner.task, cfg, seeds=seeds, pruner=pruner, progress=progress, model_name=model_name
        )
    elif len(circuits) != len(seeds) or any(c.total_nodes != pruner.n_nodes for c in circuits):
        raise ValueError(
            f"seed_study got {len(circuits)} circuits for {len(seeds)} seeds (each needs {pruner.n_nodes} nodes)"
        )
    t1 = time.perf_counter()
    masks = torch.stack([c.nodes for c in circuits])  # [S, N] bool
    ones = torch.ones(1, pruner.n_nodes)
    per_task, model_rates = {}, {}
    for name in eval_tasks:
        data = get_task(name).data(eval_split, tokenizer, n_eval)
        pc = circuit_p_correct(pruner, masks, data, chunk)
        pm = circuit_p_correct(pruner, ones, data, chunk)[0]
        rule = name2_rule_share(pc, data, tokenizer) if name.startswith("ioi") else None
        per_task[name] = {
            "p_correct": pc.mean(1).tolist(),
            "accuracy": (pc > 0.5).float().mean(1).tolist(),
            "name2_rule_share": rule.tolist() if rule is not None else None,
            "n_prompts": len(data),
        }
        model_rates[name] = {"p_correct": float(pm.mean()), "accuracy": float((pm > 0.5).float().mean())}
    t2 = time.perf_counter()
    same = next((t for t in eval_tasks if t.endswith("same")), None)
    return {
        "model": model_name,
        "task": task,
        "ablation": cfg.ablation,
        "frozen_ln": cfg.frozen_ln,
        "seeds": seeds,
        "n_seeds": len(seeds),
        "config": cfg.to_dict(),
        "eval_split": eval_split,
        "total_nodes": pruner.n_nodes,
        "nodes": [c.n_nodes for c in circuits],
        "edges": [c.n_edges for c in circuits],
        "loss": [c.meta["loss"] for c in circuits],
        "reached": [bool(c.meta["reached_target"]) for c in circuits],
        "eval": per_task,
        "model_rates": model_rates,
        "class": classify(per_task[same]["p_correct"]) if same else None,
        "seconds": {"prune": pruned_in if pruned_in is not None else t1 - t0, "evaluate": t2 - t1},
        "circuits": circuits,
        "masks": masks,
        "pruner": pruner,
    }


def summarize(study: dict, core_share: float = 0.9) -> dict:
    """JSON-ready numbers of a ``seed_study``: per-seed values, and over the seeds reaching the target the shares
    of bad / mixed / good circuits, mean P_correct per eval task, pairwise Jaccard overlap and core nodes."""
    reached = torch.tensor(study["reached"], dtype=torch.bool)
    masks = study["masks"][reached]
    core = core_nodes(masks, core_share)
    layout = study["pruner"].layout
    n_r = int(reached.sum())
    classes = [c for c, r in zip(study["class"] or [], study["reached"]) if r]
    share = lambda k: (classes.count(k) / n_r) if n_r and classes else None  # noqa: E731
    mean_r = lambda xs: float(torch.tensor(xs)[reached].mean()) if n_r else None  # noqa: E731
    jac = jaccard_summary(masks)
    return {
        **{
            k: study[k]
            for k in (
                "model",
                "task",
                "ablation",
                "frozen_ln",
                "seeds",
                "n_seeds",
                "eval_split",
                "total_nodes",
                "nodes",
                "edges",
                "loss",
                "reached",
                "eval",
                "model_rates",
                "class",
            )
        },
        "steps": study["config"]["steps"],
        "batch_size": study["config"]["batch_size"],
        "lr": study["config"]["lr"],
        "k_coef": study["config"]["k_coef"],
        "target_loss": study["config"]["target_loss"],
        "n_reached": n_r,
        "share_reached": n_r / len(study["reached"]),
        "reached_seeds": [s for s, r in zip(study["seeds"], study["reached"]) if r],
        "share_bad": share("bad"),
        "share_mixed": share("mixed"),
        "share_good": share("good"),
        "mean_p_correct": {t: mean_r(v["p_correct"]) for t, v in study["eval"].items()},
        "median_nodes": float(torch.tensor(study["nodes"])[reached].float().median()) if n_r else None,
        "jaccard": jac,
        "core_share": core_share,
        "core_nodes": [layout.label(i) for i in core.nonzero().flatten().tolist()],
    }


__all__ = [
    "BAD_THRESHOLD",
    "EVAL_TASKS",
    "GOOD_THRESHOLD",
    "circuit_p_correct",
    "classify",
    "core_nodes",
    "final_residual_rms",
    "jaccard_summary",
    "name2_rule_share",
    "pairwise_jaccard",
    "seed_study",
    "summarize",
]
