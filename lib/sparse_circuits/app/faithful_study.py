"""Experiment steps of notebook 13 (faithful circuits): the metric suite on known failure cases, standard against
faithful pruning objectives, and circuit size (C1) among circuits that pass faithfulness thresholds.

- ``failure_cases`` builds the circuits of notebooks 04/05 (walkthrough circuits), 07 (the nonsense task), 10 (the
  IOI seed with the worst same-gender generalization) and 12 (the pronoun circuit of the controls), with the
  functions those notebooks use; ``score_case`` runs the suite (``analysis.suite.faithfulness_report``) and the
  mask-relaxation control on one, and ``metric_passes`` reads every measure against fixed ``SuiteThresholds``.
- ``objective_runs`` prunes one (model, task) with each objective, all seeds in one batched run per objective;
  each run is discretized by the loss alone and by the loss plus the faithfulness thresholds (``FaithfulCriteria``),
  and every circuit is checked on held-out prompts.
- ``size_cells`` / ``bootstrap_ratio`` / ``ratio_verdict_of_cells``: dense / sparse circuit size per task among the
  circuits a selection admits, with a bootstrap interval over seeds, and the C1 verdict on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from ..analysis.controls import mask_relaxation, smallest_circuit
from ..analysis.faithfulness import Faithfulness
from ..analysis.generalization import seed_study
from ..analysis.suite import FaithfulnessConfig, faithfulness_report
from ..pruning.frontier import pareto_sweep
from ..pruning.pruner import PruneConfig, Pruner, prune
from ..tasks import evaluate, get_task
from .experiments import walkthrough_setup
from .verdicts import verdict

# ------------------------------------------------------------------------------- the suite on known cases

CASES = ("pronoun (04)", "ioi (05)", "nonsense (07)", "worst ioi seed (10)", "pronoun (12)")
"""The circuits of section a, named by the task and the notebook whose procedure builds them."""
ANSWERS = {"pronoun": ["he", "she"], "ioi": ["him", "her"]}


@dataclass
class SuiteThresholds:
    """What each measure of the suite must reach for a circuit to pass it (fixed before the runs)."""

    f_low: float = 0.8
    """f under the circuit's own ablation, test prompts: at least this (the circuit does the task) ..."""
    f_high: float = 1.25
    """... and at most this (a circuit far better than its model does the task some other way)."""
    stochastic_f: float = 0.8
    """Mean f with the outside ablated stochastically (uniform z)."""
    adversarial_f: float = 0.5
    """Worst f under the restricted adversary (task loss)."""
    kl: float = 0.5
    """Largest mean KL(p_model || p_circuit) at the answer, test prompts (nats)."""
    completeness_gap: float = 0.2
    """Largest mean |f(C minus K) - f(M minus K)|."""
    activation_corr: float = 0.5
    """Smallest median correlation of the circuit nodes' activations with the model's."""
    held_out_drop: float = 0.2
    """Largest drop of binary P_correct below the model's on any held-out set (test, unseen names, same gender)."""
    interchange_agreement: float = 0.8
    """Smallest share of counterfactual pairs where patching moves the circuit's answer as it moves the model's."""
    relaxation_excess: float = 0.05
    """Largest mean loss, restoring part of the ablated nodes, above the worse of circuit and model (notebook 12)."""


METRICS = ("f",) + tuple(f.name for f in fields(SuiteThresholds) if f.name not in ("f_low", "f_high"))
"""Measure names of ``suite_metrics``, in table order (a threshold of ``SuiteThresholds`` each)."""
UPPER_BOUNDS = ("kl", "completeness_gap", "held_out_drop", "relaxation_excess")
"""Measures that pass at or below their threshold (the others at or above)."""


SUITE_MEASURES = tuple(m for m in METRICS if m != "relaxation_excess")
"""The suite's own measures; the mask-relaxation control (notebook 12) marks one kind of known failure they must
catch, so it never counts as catching one."""


def caught_by(passes: dict[str, bool | None]) -> list[str]:
    """The suite measures (``SUITE_MEASURES``) a circuit fails, from ``metric_passes``."""
    return [n for n in SUITE_MEASURES if passes[n] is False]


def suite_metrics(report: dict, relaxation: dict | None = None) -> dict[str, float | None]:
    """The suite's report (and ``mask_relaxation``) as one number per measure of ``METRICS`` (None: undefined)."""
    held = report["held_out"]
    drops = [
        v["p_correct"]["model"] - v["p_correct"]["circuit"] for k, v in held.items() if k != "train" and v["p_correct"]
    ]
    inter = report.get("interchange")
    return {
        "f": report["faithfulness"][report["ablation"]]["f"],
        "stochastic_f": report["stochastic"]["uniform"]["mean_f"],
        "adversarial_f": report["adversarial"]["loss"]["worst_f"],
        "kl": report["kl_to_model"]["test"],
        "completeness_gap": report["completeness"]["mean_gap"],
        "activation_corr": report["mechanism"]["median_activation_correlation"],
        "held_out_drop": max(drops) if drops else None,
        "interchange_agreement": inter["agreement"] if inter else None,
        "relaxation_excess": relaxation["excess"] if relaxation else None,
    }


def metric_passes(metrics: dict[str, float | None], th: SuiteThresholds) -> dict[str, bool | None]:
    """Per measure: True (passes), False (fails) or None (undefined, not judged)."""
    out = {}
    for name, x in metrics.items():
        if x is None or (isinstance(x, float) and math.isnan(x)):
            out[name] = None
        elif name == "f":
            out[name] = th.f_low <= x <= th.f_high
        elif name in UPPER_BOUNDS:
            out[name] = x <= getattr(th, name)
        else:
            out[name] = x >= getattr(th, name)
    return out


SUITE_SCALE = {
    "full": dict(
        eval_n=64, bootstrap=200, stochastic_samples=16, adversary_steps=20, adversary_restarts=4, mechanism_n=32,
        interchange_n=64,
    ),
    "smoke": dict(
        eval_n=16, bootstrap=20, stochastic_samples=2, adversary_steps=3, adversary_restarts=2, mechanism_n=4,
        interchange_n=8, completeness_subsets=2, resample_draws=1, curve_fractions=(0.0, 0.1, 1.0),
    ),
}  # fmt: skip
"""``FaithfulnessConfig`` settings of the suite per notebook profile (notebooks 13 and 14): "smoke" runs the code
paths on a few prompts and draws, not the numbers."""


def suite_config(profile: str, ablation: str) -> FaithfulnessConfig:
    """The suite's settings at a notebook profile, measuring f under ``ablation`` only."""
    return FaithfulnessConfig(ablations=(ablation,), **SUITE_SCALE[profile])


@dataclass
class CaseScale:
    """Pruning settings of the section-a circuits (each notebook's procedure, at a budget the notebook sets)."""

    steps: int
    batch_size: int
    eval_n: int
    n_test: int
    lr: float = 1e-2
    k_coefs: tuple[float, ...] = (1e-3,)
    """Penalties of the nonsense (07) and controls (12) sweeps."""
    seed_k_coef: float = 1e-3
    """Penalty of the seed study (10)."""
    n_seeds: int = 4
    """Seeds of the seed study (10)."""
    target_loss: float = 0.15


def failure_cases(model_name: str, ablation: str, sc: CaseScale, profile: str) -> tuple[object, object, dict]:
    """(model, tokenizer, {case: {"circuit", "task", "note", ...}}) for every case of ``CASES`` on ``model_name``
    ("model_loss": the model's own test loss (07, 12); "same_p_correct": the seed's same-gender P_correct (10)).

    Each circuit is built by the procedure of its notebook: ``walkthrough_setup`` (04, 05), ``pareto_sweep`` and
    ``smallest_circuit`` (07 on "nonsense", 12 on "pronoun") and ``seed_study`` (10: of the seeds reaching the
    target, the one with the lowest same-gender P_correct; of all seeds when none reaches it)."""
    cases = {}
    for case, task in ((CASES[0], "pronoun"), (CASES[1], "ioi")):
        w = walkthrough_setup(
            task, ANSWERS[task], profile, model_name, ablation, steps=sc.steps, batch_size=sc.batch_size,
            n_prompts=sc.n_test,
        )  # fmt: skip
        cases[case] = {"circuit": w.circuit, "task": task, "note": f"test loss {w.circuit_test['loss']:.3f}"}
    model, tok = w.model, w.tok
    sweep_kw = dict(
        n_seeds=1, steps=sc.steps, batch_size=sc.batch_size, eval_n=sc.eval_n, lr=sc.lr, target_loss=sc.target_loss
    )
    for case, task in ((CASES[2], "nonsense"), (CASES[4], "pronoun")):
        s = pareto_sweep(model, tok, get_task(task), ablation, list(sc.k_coefs), model_name=model_name, **sweep_kw)
        circuit, reached = smallest_circuit(s, sc.target_loss)
        model_loss = evaluate(model, get_task(task).data("test", tok, sc.n_test), get_task(task).loss)["loss"]
        note = f"reached the target: {reached}; the model's own test loss {model_loss:.3f}"
        cases[case] = {"circuit": circuit.with_edges(model), "task": task, "note": note, "model_loss": model_loss}
    cfg = PruneConfig(
        ablation=ablation, steps=sc.steps, batch_size=sc.batch_size, lr=sc.lr, k_coef=sc.seed_k_coef,
        eval_n=sc.eval_n, target_loss=sc.target_loss,
    )  # fmt: skip
    st = seed_study(model, tok, cfg, list(range(sc.n_seeds)), n_eval=sc.n_test, model_name=model_name)
    same = st["eval"]["ioi_same"]["p_correct"]  # per seed, held-out same-gender prompts
    pool = [i for i, r in enumerate(st["reached"]) if r] or list(range(sc.n_seeds))
    worst = min(pool, key=lambda i: same[i])
    note = f"seed {worst}: same-gender P_correct {same[worst]:.2f}; {sum(st['reached'])}/{sc.n_seeds} seeds reached"
    cases[CASES[3]] = {"circuit": st["circuits"][worst], "task": "ioi", "note": note, "same_p_correct": same[worst]}
    return model, tok, cases


def score_case(model, tok, circuit, fcfg: FaithfulnessConfig, th: SuiteThresholds, relax_draws: int = 4) -> dict:
    """The suite's report of one circuit, the mask-relaxation control on its test prompts, one number per measure
    and whether each passes."""
    report = faithfulness_report(model, tok, circuit, fcfg)
    fa = Faithfulness.build(model, tok, circuit.task(), report["ablation"], "test", fcfg.eval_n, report["frozen_ln"])
    relax = mask_relaxation(fa, circuit.nodes, n_draws=relax_draws, seed=fcfg.seed)
    metrics = suite_metrics(report, relax)
    return {"report": report, "metrics": metrics, "passes": metric_passes(metrics, th), "nodes": circuit.n_nodes}


# --------------------------------------------------------------------------- standard vs faithful objectives

OBJECTIVES_STUDIED = ("standard", "stochastic", "adversarial", "stochastic+adversarial")


@dataclass
class FaithfulCriteria:
    """Faithfulness thresholds a circuit must pass (fixed before the runs), and how they are checked on held-out
    (test) prompts; the faithful discretization asks the same thresholds of the fixed pruning prompts."""

    min_stochastic_f: float = 0.8
    """Mean f with the outside ablated stochastically (uniform z)."""
    min_adversarial_f: float = 0.5
    """Worst f under the restricted adversary (task loss)."""
    eval_n: int = 64
    """Held-out test prompts."""
    stochastic_samples: int = 8
    adversary_steps: int = 20
    adversary_step_size: float = 0.1
    adversary_restarts: int = 4


def held_out_faithfulness(fa: Faithfulness, nodes: torch.Tensor, crit: FaithfulCriteria, seed: int = 0) -> dict:
    """f, mean stochastic f and worst adversarial f of one circuit on ``fa``'s prompts, and whether it passes."""
    f = fa.normalized(nodes)
    sto = fa.stochastic(nodes, "uniform", crit.stochastic_samples, seed)["mean_f"]
    adv = fa.adversarial(nodes, crit.adversary_steps, crit.adversary_step_size, seed, crit.adversary_restarts)
    ok = sto >= crit.min_stochastic_f and adv["worst_f"] >= crit.min_adversarial_f
    return {"test_f": f, "test_stochastic_f": sto, "test_adversarial_f": adv["worst_f"], "test_passes": ok}


def objective_runs(
    model,
    tok,
    model_name: str,
    task_name: str,
    cfg: PruneConfig,
    seeds: list[int],
    crit: FaithfulCriteria,
    objectives=OBJECTIVES_STUDIED,
    progress: bool = False,
) -> list[dict]:
    """Prune ``task_name`` with every objective (all seeds in one batched run each, settings ``cfg``), discretize
    every run twice: by the loss ("loss") and by the loss and ``crit``'s thresholds ("faithful"), then check every
    circuit on held-out prompts. Returns one record per (objective, seed, discretization)."""
    task = get_task(task_name)
    fa = Faithfulness.build(model, tok, task, cfg.ablation, "test", crit.eval_n, cfg.frozen_ln)
    strict = dict(min_stochastic_f=crit.min_stochastic_f, min_adversarial_f=crit.min_adversarial_f)
    records = []
    for obj in objectives:
        c = replace(cfg, objective=obj, **strict)
        pruner = Pruner(model, tok, task, c, means=fa.pruner.means)
        faithful = prune(model, tok, task, c, seeds, pruner=pruner, progress=progress, model_name=model_name)
        by_loss = Pruner(
            model, tok, task, replace(c, min_stochastic_f=None, min_adversarial_f=None), means=pruner.means
        )
        disc = by_loss.discretize(torch.stack([x.tau for x in faithful]).to(pruner.device))
        for i, seed in enumerate(seeds):
            loss_circuit = faithful[i].at_count(disc["n_nodes"][i]).with_edges(model)
            for kind, circ, reached in (
                ("loss", loss_circuit, disc["reached_target"][i]),
                ("faithful", faithful[i], faithful[i].meta["reached_target"]),
            ):
                rec = {"model": model_name, "task": task_name, "objective": obj, "seed": seed, "discretization": kind}
                rec.update(nodes=circ.n_nodes, edges=circ.n_edges, reached=bool(reached))
                rec.update(held_out_faithfulness(fa, circ.nodes.bool(), crit))
                rec["passes"] = rec["reached"] and rec["test_passes"]
                records.append(rec)
    return records


def objective_summary(records: list[dict]) -> list[dict]:
    """Per (model, task, objective, discretization): runs, share reaching the target, share passing the held-out
    thresholds too, and median nodes / edges / held-out f's of the reaching circuits."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["task"], r["objective"], r["discretization"]), []).append(r)
    out = []
    for (m, t, o, d), rs in groups.items():
        ok = [r for r in rs if r["reached"]]

        def med(key, ok=ok):
            return float(np.median([r[key] for r in ok])) if ok else None

        out.append(
            {
                "model": m, "task": t, "objective": o, "discretization": d, "runs": len(rs),
                "reached": len(ok) / len(rs), "passes": sum(r["passes"] for r in rs) / len(rs),
                **{f"median_{k}": med(k) for k in ("nodes", "edges", "test_f", "test_stochastic_f", "test_adversarial_f")},
            }
        )  # fmt: skip
    return out


# ------------------------------------------------------------------------------ circuit size among passing ones


def geometric_mean(x) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(x, dtype=float)))))


def bootstrap_ratio(
    num, den, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, low, high): geometric mean of ``num`` over that of ``den`` (two independent samples, e.g. circuit
    sizes per seed of two models) and its percentile bootstrap interval, each sample resampled on its own."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ratio needs at least one value on each side")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("bootstrap_ratio takes positive sizes (a geometric mean)")
    rng = np.random.default_rng(seed)
    la, lb = np.log(a), np.log(b)
    ia, ib = rng.integers(0, a.size, (n_resamples, a.size)), rng.integers(0, b.size, (n_resamples, b.size))
    stats = np.exp(la[ia].mean(1) - lb[ib].mean(1))
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(np.exp(la.mean() - lb.mean())), float(low), float(high)


def smallest_per_seed(records: list[dict], model: str, task: str, select) -> dict[int, dict]:
    """Per seed, the smallest circuit (nodes, then edges) of ``model`` on ``task`` among the records ``select``
    admits (over objectives and discretizations); seeds with none are left out."""
    best: dict[int, dict] = {}
    for r in records:
        if r["model"] == model and r["task"] == task and select(r):
            if r["seed"] not in best or (r["nodes"], r["edges"]) < (best[r["seed"]]["nodes"], best[r["seed"]]["edges"]):
                best[r["seed"]] = r
    return best


def size_cells(records: list[dict], tasks, sparse: str, dense: str, select, min_seeds: int = 2, seed: int = 0) -> dict:
    """Per task: dense / sparse geometric-mean circuit size (nodes and edges) with 95% bootstrap intervals over
    seeds, among the circuits ``select`` admits (the smallest per seed). A side with fewer than ``min_seeds`` seeds
    leaves the task unjudged (ratios None)."""
    out = {}
    for t in tasks:
        sp, de = smallest_per_seed(records, sparse, t, select), smallest_per_seed(records, dense, t, select)
        cell = {"seeds_sparse": len(sp), "seeds_dense": len(de)}
        for key in ("nodes", "edges"):
            cell[f"{key}_sparse"] = [sp[s][key] for s in sorted(sp)]
            cell[f"{key}_dense"] = [de[s][key] for s in sorted(de)]
            judged = len(sp) >= min_seeds and len(de) >= min_seeds and min(cell[f"{key}_sparse"] + [1]) > 0
            ratio = bootstrap_ratio(cell[f"{key}_dense"], cell[f"{key}_sparse"], seed=seed) if judged else None
            cell[f"{key}_ratio"] = ratio[0] if ratio else None
            cell[f"{key}_ci95"] = list(ratio[1:]) if ratio else None
        out[t] = cell
    return out


def ratio_verdict_of_cells(cells: dict, threshold: float = 1.0) -> str:
    """C1 over tasks from ``size_cells``: "yes" when in every judged task the whole 95% interval of the dense /
    sparse node ratio lies above ``threshold``, "partly" when some task's estimate is above it, "no" otherwise;
    "n/a" when no task is judged."""
    judged = [c for c in cells.values() if c["nodes_ratio"] is not None]
    return verdict(
        all(c["nodes_ci95"][0] > threshold for c in judged),
        any(c["nodes_ratio"] > threshold for c in judged),
        judged=bool(judged),
    )


def criteria_dict(crit: FaithfulCriteria, th: SuiteThresholds) -> dict:
    """The fixed thresholds, for the results file."""
    return {"faithful_criteria": asdict(crit), "suite_thresholds": asdict(th)}
