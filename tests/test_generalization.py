import json

import pytest
import torch
from sparse_circuits.analysis.faithfulness import jaccard
from sparse_circuits.analysis.generalization import (
    circuit_p_correct,
    classify,
    core_nodes,
    final_residual_rms,
    jaccard_summary,
    name2_rule_share,
    pairwise_jaccard,
    seed_study,
    summarize,
)
from sparse_circuits.circuits.masking import masked, record_norm_scales
from sparse_circuits.data.words import gender_of
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner
from sparse_circuits.tasks import binary_p_correct, get_task, run_answer_logits


@pytest.fixture(scope="module")
def setup(tiny_model_dir, one_thread):
    model, tok, _ = load(tiny_model_dir)
    return model, tok, get_task("ioi"), get_task("ioi_same").data("test", tok, 12)


def random_masks(n_masks: int, n_nodes: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_masks, n_nodes, generator=g) < 0.6


@pytest.mark.parametrize("ablation,frozen", [("zero", False), ("mean", False), ("zero", True)])
def test_batched_p_correct_equals_one_mask_at_a_time(setup, ablation, frozen):
    model, tok, task, data = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation=ablation, frozen_ln=frozen, eval_n=8))
    masks = random_masks(5, pr.n_nodes)
    batched = circuit_p_correct(pr, masks, data, chunk=2)  # chunks of 2, 2 and 1 masks
    assert batched.shape == (5, len(data))
    scales = record_norm_scales(model, data.tokens, data.last) if frozen else None
    for s in range(5):
        with masked(model, pr.layout, masks[s : s + 1].float(), pr.means, scales):
            ref = binary_p_correct(run_answer_logits(model, data), data)
        torch.testing.assert_close(batched[s], ref, atol=1e-5, rtol=1e-5)
    # frozen norms must change what a pruned network computes, or the comparison in notebook 11 is empty
    if frozen:
        free = circuit_p_correct(Pruner(model, tok, task, PruneConfig(ablation=ablation, eval_n=8)), masks, data)
        assert (free - batched).abs().max() > 1e-4
    # a mask of ones is the model itself
    own = circuit_p_correct(pr, torch.ones(1, pr.n_nodes), data)[0]
    torch.testing.assert_close(own, binary_p_correct(run_answer_logits(model, data), data), atol=1e-5, rtol=1e-5)


def test_final_residual_rms(setup):
    model, tok, task, data = setup
    last = f"blocks.{model.cfg.n_layer - 1}.hook_resid_post"
    _, cache = model.run_with_cache(data.tokens, names_filter=last)
    resid = cache[last][torch.arange(len(data)), data.last]
    model_rms = resid.pow(2).mean(-1).sqrt()
    for frozen in (False, True):
        pr = Pruner(model, tok, task, PruneConfig(ablation="zero", frozen_ln=frozen, eval_n=8))
        rms = final_residual_rms(pr, torch.stack([torch.ones(pr.n_nodes), torch.zeros(pr.n_nodes)]), data)
        torch.testing.assert_close(rms[0], model_rms, atol=1e-5, rtol=1e-5)
        # every node zero-ablated: only the embedding reaches the final norm (frozen scales do not change it)
        emb = model.embed(data.tokens)[torch.arange(len(data)), data.last]
        torch.testing.assert_close(rms[1], emb.pow(2).mean(-1).sqrt(), atol=1e-5, rtol=1e-5)


def test_name2_rule_share(setup):
    model, tok, task, same = setup
    opposite = task.data("test", tok, 12)
    pc = torch.tensor([[0.9] * 12, [0.1] * 12, [0.9] * 6 + [0.1] * 6])
    # same-gender prompts: the name_2 shortcut is always the wrong answer
    torch.testing.assert_close(name2_rule_share(pc, same, tok), 1 - (pc > 0.5).float().mean(1))
    # opposite-gender prompts: it is always the right one
    torch.testing.assert_close(name2_rule_share(pc, opposite, tok), (pc > 0.5).float().mean(1))
    # a constant "him" follows the shortcut exactly when name_2 is female
    him = tok.token_to_id("him")
    always_him = torch.where(same.correct == him, 0.9, 0.1)[None]
    female2 = torch.tensor([gender_of(a["name_2"]) == "female" for a in same.assignments]).float().mean()
    assert float(name2_rule_share(always_him, same, tok)[0]) == pytest.approx(float(female2))


def test_pairwise_jaccard_and_core_nodes():
    sets = random_masks(6, 40, seed=1)
    sets[5] = False  # an empty set
    J = pairwise_jaccard(sets)
    for i in range(6):
        for j in range(6):
            assert float(J[i, j]) == pytest.approx(jaccard(sets[i], sets[j]))
    summ = jaccard_summary(sets)
    assert summ["pairs"] == 15 and len(summ["values"]) == 15 and summ["min"] <= summ["median"] <= summ["max"]
    assert jaccard_summary(sets[:1])["pairs"] == 0
    nodes = torch.zeros(10, 4, dtype=torch.bool)
    nodes[:, 0] = True  # 10 of 10
    nodes[:9, 1] = True  # 9 of 10
    nodes[:8, 2] = True  # 8 of 10
    assert core_nodes(nodes, 0.9).tolist() == [True, True, False, False]
    assert core_nodes(nodes, 0.8).tolist() == [True, True, True, False]
    assert not core_nodes(nodes[:0], 0.9).any()


def test_classify():
    assert classify([0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0]) == ["bad", "bad", "mixed", "mixed", "mixed", "good", "good"]


def test_seed_study(setup):
    model, tok, task, _ = setup
    cfg = PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=8, search_points=3)
    st = seed_study(model, tok, cfg, [0, 1, 2], n_eval=8, model_name="tiny", chunk=2)
    assert st["n_seeds"] == 3 and st["masks"].shape == (3, st["total_nodes"])
    for name in ("ioi", "ioi_same"):
        ev = st["eval"][name]
        assert len(ev["p_correct"]) == len(ev["accuracy"]) == len(ev["name2_rule_share"]) == 3
        # each seed's numbers are those of its own circuit
        data = get_task(name).data("test", tok, 8)
        for s in range(3):
            one = circuit_p_correct(st["pruner"], st["masks"][s : s + 1], data)[0]
            assert ev["p_correct"][s] == pytest.approx(float(one.mean()), abs=1e-5)
        own = binary_p_correct(run_answer_logits(model, data).detach(), data)
        assert st["model_rates"][name]["p_correct"] == pytest.approx(float(own.mean()), abs=1e-5)
    assert st["class"] == classify(st["eval"]["ioi_same"]["p_correct"])
    for c, r in zip(st["circuits"], st["reached"]):
        if r:
            assert c.meta["loss"] <= cfg.target_loss
    summ = summarize(st)
    json.dumps(summ)  # JSON-ready
    assert summ["n_seeds"] == 3 and summ["n_reached"] == sum(st["reached"])
    assert summ["steps"] == 3 and summ["jaccard"]["pairs"] == summ["n_reached"] * (summ["n_reached"] - 1) // 2


@pytest.mark.parametrize("frozen", [False, True])
def test_answer_residual_rms_of_a_circuit_equals_the_pruners(setup, frozen):
    from conftest import random_circuit
    from sparse_circuits.analysis.compare import answer_residual_rms

    model, tok, task, data = setup
    circuit = random_circuit(model, frac=0.5, seed=3, frozen_ln=frozen)
    model_rms, circuit_rms = answer_residual_rms(model, circuit, data)
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", frozen_ln=frozen, eval_n=8))
    ref = final_residual_rms(pr, torch.stack([torch.ones(pr.n_nodes), circuit.nodes.float()]), data)
    torch.testing.assert_close(model_rms, ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(circuit_rms, ref[1], atol=1e-5, rtol=1e-5)
    assert (circuit_rms - model_rms).abs().max() > 1e-3  # half the nodes gone must change the residual


def test_prune_and_evaluate_scores_a_frozen_norm_circuit_with_frozen_norms(setup):
    from sparse_circuits.analysis.walkthrough import evaluate_full
    from sparse_circuits.app.experiments import prune_and_evaluate

    model, tok, task, _ = setup
    test = task.data("test", tok, 8)
    loaded = {"tiny": (model, tok, None)}
    cfg = PruneConfig(ablation="zero", frozen_ln=True, steps=3, batch_size=4, eval_n=8, k_coef=1e-2)
    entry = prune_and_evaluate(loaded, {("tiny", "ioi"): test}, ["ioi"], [cfg])["tiny/ioi/zero"]
    circuit = entry["circuit"]
    assert circuit.meta["frozen_ln"] and 0 < circuit.n_nodes < circuit.total_nodes
    with circuit.run(model, frozen_ln_tokens=test.tokens):
        frozen = evaluate_full(model, test, task.loss)["loss"]
    with circuit.run(model):
        free = evaluate_full(model, test, task.loss)["loss"]
    assert entry["summary"]["test_loss_circuit"] == pytest.approx(frozen, abs=1e-6)
    assert abs(frozen - free) > 1e-4  # the two differ, so the summary tells which one it used
