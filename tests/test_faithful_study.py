"""Notebook 13's study steps on tiny inputs: the combined faithful objective, the discretization adversary's
restarts, the suite's table rows and thresholds, the objective runs, and sizes with bootstrap intervals."""

import math

import numpy as np
import pytest
import torch
from sparse_circuits.app import faithful_study as fs
from sparse_circuits.core.seeds import derived_seed
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner
from sparse_circuits.tasks import get_task


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    return model, tok, get_task("pronoun")


# ----------------------------------------------------------------------------- objectives and discretization


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_combined_objective_is_the_mean_of_stochastic_and_adversarial(setup, ablation):
    model, tok, task = setup
    kw = dict(ablation=ablation, batch_size=4, adversary_steps=2)
    pr = {o: Pruner(model, tok, task, PruneConfig(objective=o, **kw)) for o in fs.OBJECTIVES_STUDIED}
    seeds = [3, 4]
    tau = torch.randn(2, pr["standard"].n_nodes, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    data = pr["standard"].batch(seeds, 5)
    abl = pr["standard"].ablation_values(seeds, data, 5)
    z = torch.rand(2, pr["standard"].n_nodes, generator=torch.Generator().manual_seed(1))
    out = {o: p.objective_losses(tau, seeds, 5, data, abl, z) for o, p in pr.items()}
    both, kept, z_both = out["stochastic+adversarial"]
    torch.testing.assert_close(both, (out["stochastic"][0] + out["adversarial"][0]) / 2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(z_both, out["adversarial"][2], atol=0, rtol=0)  # the same adversary moves
    assert out["stochastic"][2] is None and not torch.allclose(both, out["standard"][0])
    assert kept.tolist() == out["standard"][1].tolist()
    # a training step runs, and the adversary's pattern is carried over steps as with "adversarial" alone
    cfg = PruneConfig(objective="stochastic+adversarial", steps=2, eval_n=4, **kw)
    tau_trained, history = Pruner(model, tok, task, cfg).train_masks(seeds, progress=False)
    assert tau_trained.shape == tau.shape and len(history) == 2


def test_discretization_adversary_takes_the_worst_of_its_restarts(setup):
    model, tok, task = setup
    kw = dict(ablation="zero", eval_n=8, check_adversary_steps=2)
    one = Pruner(model, tok, task, PruneConfig(**kw))
    three = Pruner(model, tok, task, PruneConfig(check_adversary_restarts=3, **kw))
    starts = three.adversary_starts()
    assert starts.shape == (3, one.n_nodes) and not torch.equal(starts[0], starts[1])
    g = torch.Generator().manual_seed(derived_seed("check-adversary") % 2**63)
    assert torch.equal(one.adversary_starts()[0], torch.rand(one.n_nodes, generator=g))  # the single-start pattern
    masks = (torch.rand(4, one.n_nodes, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    part, values = three._pass(len(masks))
    each = torch.stack([three.adversary_worst(masks, z, part, values) for z in starts])  # [3, 4]
    torch.testing.assert_close(three.adversarial_losses(masks), each.max(0).values, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(one.adversarial_losses(masks), each[0], atol=1e-6, rtol=1e-6)
    assert (each.max(0).values >= each[0]).all()
    with pytest.raises(ValueError, match="check_adversary_restarts"):
        PruneConfig(ablation="zero", check_adversary_restarts=0)


# ------------------------------------------------------------------------------------ the suite's table


def fake_report(**over) -> dict:
    report = {
        "ablation": "zero",
        "faithfulness": {"zero": {"f": 0.9}},
        "stochastic": {"uniform": {"mean_f": 0.95}},
        "adversarial": {"loss": {"worst_f": -2.0}},
        "kl_to_model": {"test": 0.1},
        "completeness": {"mean_gap": 0.3},
        "mechanism": {"median_activation_correlation": None},
        "held_out": {
            "train": {"p_correct": {"model": 0.9, "circuit": 0.1}},  # the train split is not held out
            "test": {"p_correct": {"model": 0.9, "circuit": 0.85}},
            "ioi_same": {"p_correct": {"model": 0.8, "circuit": 0.1}},
        },
        "interchange": None,
    }
    report.update(over)
    return report


def test_suite_metrics_and_their_thresholds():
    m = fs.suite_metrics(fake_report(), {"excess": 0.01})
    assert list(m) == list(fs.METRICS)
    assert (
        m["held_out_drop"] == pytest.approx(0.7)
        and m["interchange_agreement"] is None
        and m["relaxation_excess"] == 0.01
    )
    p = fs.metric_passes(m, fs.SuiteThresholds())
    assert p == {
        "f": True,
        "stochastic_f": True,
        "adversarial_f": False,
        "kl": True,
        "completeness_gap": False,
        "activation_corr": None,
        "held_out_drop": False,
        "interchange_agreement": None,
        "relaxation_excess": True,
    }
    # a circuit far better than its model fails f too, and NaN is not judged
    assert fs.metric_passes({"f": 3.0, "kl": math.nan}, fs.SuiteThresholds()) == {"f": False, "kl": None}
    assert fs.suite_metrics(fake_report(), None)["relaxation_excess"] is None
    m = fs.suite_metrics(fake_report(interchange={"agreement": 0.5, "correlation": 0.9}))
    assert (
        m["interchange_agreement"] == 0.5
        and fs.metric_passes(m, fs.SuiteThresholds())["interchange_agreement"] is False
    )


# --------------------------------------------------------------------------------------- objective runs


def test_objective_runs_record_every_circuit_twice(setup):
    model, tok, task = setup
    cfg = PruneConfig(ablation="zero", steps=2, batch_size=4, eval_n=8, check_samples=1, check_adversary_steps=1)
    crit = fs.FaithfulCriteria(eval_n=8, stochastic_samples=2, adversary_steps=2, adversary_restarts=2)
    recs = fs.objective_runs(model, tok, "tiny", "pronoun", cfg, [0, 1], crit, objectives=("standard", "adversarial"))
    assert len(recs) == 2 * 2 * 2
    assert {(r["objective"], r["seed"], r["discretization"]) for r in recs} == {
        (o, s, d) for o in ("standard", "adversarial") for s in (0, 1) for d in ("loss", "faithful")
    }
    for r in recs:
        assert r["passes"] == (
            r["reached"]
            and r["test_stochastic_f"] >= crit.min_stochastic_f
            and r["test_adversarial_f"] >= crit.min_adversarial_f
        )
        assert 0 < r["nodes"] and r["edges"] >= 0
    summary = fs.objective_summary(recs)
    assert len(summary) == 4 and all(s["runs"] == 2 for s in summary)


# ------------------------------------------------------------------------------ sizes among passing circuits


def test_bootstrap_ratio():
    est, lo, hi = fs.bootstrap_ratio([40, 40, 40], [10, 10])
    assert (est, lo, hi) == pytest.approx((4.0, 4.0, 4.0))
    est, lo, hi = fs.bootstrap_ratio([20, 80], [10, 10, 10], seed=1)
    assert est == pytest.approx(4.0) and lo == pytest.approx(2.0) and hi == pytest.approx(8.0)
    assert fs.bootstrap_ratio([20, 80, 35], [9, 12, 10], seed=3) == fs.bootstrap_ratio(
        [20, 80, 35], [9, 12, 10], seed=3
    )
    with pytest.raises(ValueError, match="at least one value"):
        fs.bootstrap_ratio([], [1])
    with pytest.raises(ValueError, match="positive"):
        fs.bootstrap_ratio([0, 1], [1])


def rec(model, seed, nodes, passes=True, objective="standard"):
    return {"model": model, "task": "t", "seed": seed, "nodes": nodes, "edges": 10 * nodes, "passes": passes,
            "objective": objective}  # fmt: skip


def test_size_cells_take_the_smallest_passing_circuit_per_seed():
    records = [
        rec("s", 0, 10), rec("s", 0, 5, passes=False), rec("s", 0, 8, objective="adversarial"), rec("s", 1, 12),
        rec("d", 0, 40), rec("d", 1, 30), rec("d", 2, 50, passes=False),
    ]  # fmt: skip
    best = fs.smallest_per_seed(records, "s", "t", lambda r: r["passes"])
    assert {s: r["nodes"] for s, r in best.items()} == {0: 8, 1: 12}
    cells = fs.size_cells(records, ["t"], "s", "d", lambda r: r["passes"])
    c = cells["t"]
    assert c["nodes_sparse"] == [8, 12] and c["nodes_dense"] == [40, 30]
    assert c["nodes_ratio"] == pytest.approx(np.sqrt(40 * 30) / np.sqrt(8 * 12))
    assert c["edges_ratio"] == pytest.approx(c["nodes_ratio"])
    assert c["nodes_ci95"][0] > 1 and fs.ratio_verdict_of_cells(cells) == "yes"
    # a stricter threshold: between the interval's lower end and the estimate -> partly; above the estimate -> no
    assert fs.ratio_verdict_of_cells(cells, (c["nodes_ci95"][0] + c["nodes_ratio"]) / 2) == "partly"
    assert fs.ratio_verdict_of_cells(cells, c["nodes_ratio"] + 0.01) == "no"
    # too few passing seeds on a side: the task is not judged
    thin = fs.size_cells(records, ["t"], "s", "d", lambda r: r["passes"] and r["seed"] == 0)
    assert thin["t"]["nodes_ratio"] is None and fs.ratio_verdict_of_cells(thin) == "n/a"
    flipped = fs.size_cells(records, ["t"], "d", "s", lambda r: r["passes"])
    assert fs.ratio_verdict_of_cells(flipped) == "no"
