"""Discretizing a pruned circuit again from its stored logits (analysis/discretization.py)."""

import pytest
import torch
from sparse_circuits.analysis.discretization import rediscretize
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner, prune
from sparse_circuits.tasks import get_task


@pytest.fixture(scope="module")
def pruned(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    cfg = PruneConfig(ablation="zero", steps=4, batch_size=4, eval_n=8, search_points=3)
    return model, tok, prune(model, tok, get_task("pronoun"), cfg, seeds=[0, 1], progress=False)


def test_its_own_config_gives_back_the_same_circuit(pruned):
    model, tok, circuits = pruned
    for c in circuits:
        again = rediscretize(model, tok, c)
        assert torch.equal(again.nodes, c.nodes) and torch.equal(again.tau, c.tau)
        for key in ("loss", "reached_target", "full_model_loss", "seed", "task"):
            assert again.meta[key] == c.meta[key], key
        assert again.meta["rediscretized_from"] == c.n_nodes and again.n_edges == c.n_edges


def test_an_override_runs_the_search_of_that_config_on_the_same_logits(pruned):
    model, tok, circuits = pruned
    cfg = PruneConfig.from_dict(circuits[0].meta["prune_config"])
    cfg.search_trained_count, cfg.search_points = True, 5
    direct = Pruner(model, tok, get_task("pronoun"), cfg).discretize(torch.stack([c.tau for c in circuits]))
    for i, c in enumerate(circuits):
        again = rediscretize(model, tok, c, search_trained_count=True, search_points=5)
        assert again.n_nodes == direct["n_nodes"][i] and again.meta["loss"] == pytest.approx(direct["loss"][i])
        assert again.meta["reached_target"] == direct["reached_target"][i]
        assert again.meta["prune_config"]["search_trained_count"] is True
        assert torch.equal(again.nodes, c.at_count(again.n_nodes).nodes)  # the top-ranked nodes of the same logits
    assert circuits[0].meta["prune_config"]["search_trained_count"] is False  # the original is left as it was


def test_bad_input_names_what_is_wrong(pruned, tiny_model_dir):
    model, tok, circuits = pruned
    with pytest.raises(ValueError, match="no prune_config"):
        rediscretize(model, tok, Circuit(circuits[0].nodes, circuits[0].tau, {"task": "pronoun"}))
    short = Circuit(circuits[0].nodes[:-1], circuits[0].tau[:-1], circuits[0].meta)
    with pytest.raises(ValueError, match="wrong model"):
        rediscretize(model, tok, short)
    with pytest.raises(TypeError):
        rediscretize(model, tok, circuits[0], no_such_field=1)


def test_cached_rediscretize_saves_once_and_reuses(pruned, tmp_path, monkeypatch):
    from sparse_circuits.analysis import discretization
    from sparse_circuits.app.experiments import cached_rediscretize

    model, tok, circuits = pruned
    loaded = (model, tok, {})
    first = cached_rediscretize(loaded, circuits[0], tmp_path, search_trained_count=True)
    assert torch.equal(first.nodes, rediscretize(model, tok, circuits[0], search_trained_count=True).nodes)
    assert len(list(tmp_path.iterdir())) == 1

    def refuse(*a, **k):
        raise AssertionError("pruned again although cached")

    monkeypatch.setattr(discretization, "rediscretize", refuse)
    again = cached_rediscretize(loaded, circuits[0], tmp_path, search_trained_count=True)
    assert torch.equal(again.nodes, first.nodes) and again.meta["loss"] == first.meta["loss"]
    with pytest.raises(AssertionError, match="pruned again"):  # another circuit (other logits) is not that entry
        cached_rediscretize(loaded, circuits[1], tmp_path, search_trained_count=True)


def test_search_twins_pairs_each_circuit_with_the_other_search(pruned, tmp_path):
    from sparse_circuits.app.regime import search_twins

    model, tok, circuits = pruned
    out = search_twins({"tiny": (model, tok, {})}, {"g": ("tiny", circuits)}, tmp_path)["g"]
    assert out["model"] == "tiny" and out["standard"] == circuits  # pruned with the standard search: their own
    for c, twin, row in zip(circuits, out["trained count"], out["rows"]):
        assert torch.equal(twin.nodes, rediscretize(model, tok, c, search_trained_count=True).nodes)
        assert row["own"] == "standard" and row["standard_nodes"] == c.n_nodes and row["trained_nodes"] == twin.n_nodes
        assert row["kept_in_training"] == c.meta["final_kept_during_training"]
    assert out["changed"] == sum(r["standard_nodes"] != r["trained_nodes"] for r in out["rows"])
    # a circuit pruned with the trained-count search is the "trained count" one, its twin the standard one
    flipped = search_twins({"tiny": (model, tok, {})}, {"g": ("tiny", out["trained count"])}, tmp_path)["g"]
    assert [r["own"] for r in flipped["rows"]] == ["trained count"] * len(circuits)
    assert [c.n_nodes for c in flipped["standard"]] == [c.n_nodes for c in circuits]


def test_twins_summary_counts_each_search_and_the_circuits_the_search_sized():
    from sparse_circuits.app.regime import other_search, sized_by_search, twins_summary

    assert other_search("standard") == "trained count" and other_search("trained count") == "standard"
    assert sized_by_search(1708, 28, 10) and not sized_by_search(23, 28, 10)
    assert sized_by_search(11, 0, 10) and not sized_by_search(10, None, 10)  # nothing kept counts as one node
    row = lambda s, t, k, ok=True: dict(own="standard", standard_nodes=s, trained_nodes=t, kept_in_training=k,  # noqa: E731
                                        standard_reached=ok, trained_reached=True)  # fmt: skip
    twins = {"g": {"model": "m", "changed": 1, "rows": [row(1708, 23, 28), row(25, 25, 30), row(40, 40, 41, ok=False)]}}
    d = twins_summary(twins, far_ratio=10)["g"]
    assert (d["model"], d["own"], d["n"], d["changed"]) == ("m", "standard", 3, 1)
    assert (d["standard_median_nodes"], d["trained_median_nodes"]) == (40.0, 25.0)
    assert (d["standard_reached"], d["trained_reached"]) == (2, 3)
    assert (d["standard_far"], d["trained_far"]) == (1, 0)


def test_evaluated_study_is_the_seed_study_of_the_same_circuits(pruned):
    from sparse_circuits.analysis.generalization import seed_study, summarize
    from sparse_circuits.app.regime import evaluated_study

    model, tok, circuits = pruned
    cfg = PruneConfig.from_dict(circuits[0].meta["prune_config"])
    direct = summarize(seed_study(model, tok, cfg, [0, 1], circuits=circuits, n_eval=8))
    again = evaluated_study((model, tok, {}), circuits, [0, 1], 8)
    assert again["eval"] == direct["eval"] and again["nodes"] == direct["nodes"] and again["class"] == direct["class"]
