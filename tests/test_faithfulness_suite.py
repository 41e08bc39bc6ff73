"""The faithfulness suite on cases with known answers: a hand-built model whose mechanism is known node by node
(a gender channel read by one value node; two MLP neurons that cancel), the whole and the empty circuit of a
shipped model, and the command line."""

import json

import pytest
import torch
from sparse_circuits.analysis.faithfulness import Faithfulness
from sparse_circuits.analysis.interchange import counterfactual_pairs, interchange
from sparse_circuits.analysis.suite import FaithfulnessConfig, faithfulness_report, normalized_spread
from sparse_circuits.app.cli import main
from sparse_circuits.circuits.ablation import ABLATIONS
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.circuits.layout import NodeLayout
from sparse_circuits.core.paths import model_dir
from sparse_circuits.data.words import TASK_FEMALE_NAMES, TASK_MALE_NAMES
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.model.inference import load
from sparse_circuits.tasks import get_task

GENDER_NODES = ("L0.attn_in.2", "L0.v.h0.0", "L0.attn_out.1")
CANCELLING_NODES = ("L0.mlp_neuron.0", "L0.mlp_neuron.1", "L0.mlp_out.1")


@pytest.fixture(scope="module")
def shipped():
    model, tok, _ = load(model_dir("dense-d128"))
    return model, tok


def hand_built(tok) -> SparseGPT:
    """One layer, no AbsTopK. Channel 0 of every embedding is 1; channel 2 is +1 for male and -1 for female
    names. The only head attends uniformly (zero queries and keys); its value node L0.v.h0.0 reads channel 2,
    and L0.attn_out.1 writes it to residual channel 1, which the unembedding turns into +he / -she. Neurons 0 and
    1 are constant (bias 5) and write +2 and -2 times it to channel 1: they cancel, in the model and when both are
    ablated, but not when one returns."""
    vocab = tok.get_vocab()
    model = SparseGPT(ModelConfig(vocab_size=len(vocab), n_layer=1, d_model=16, d_head=16, n_ctx=16, abstopk_sites=()))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].ln1, model.blocks[0].ln2, model.ln_final):
            norm.weight.fill_(1.0)
        model.embed.weight[:, 0] = 1.0
        model.embed.weight[[vocab[n] for n in TASK_MALE_NAMES], 2] = 1.0
        model.embed.weight[[vocab[n] for n in TASK_FEMALE_NAMES], 2] = -1.0
        attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
        attn.W_V.weight[0, 2] = 1.0
        attn.W_O.weight[1, 0] = 1.0
        mlp.W_in.bias[:2] = 5.0
        mlp.W_out.weight[1, 0], mlp.W_out.weight[1, 1] = 2.0, -2.0
        model.unembed.weight[vocab["he"], 1], model.unembed.weight[vocab["she"], 1] = 10.0, -10.0
    return model.eval()


def node_set(model, labels) -> torch.Tensor:
    layout = NodeLayout(model)
    nodes = torch.zeros(layout.n_nodes, dtype=torch.bool)
    nodes[[layout.index(label) for label in labels]] = True
    return nodes


@pytest.fixture(scope="module")
def toy(shipped):
    _, tok = shipped
    model = hand_built(tok)
    return model, tok, Faithfulness.build(model, tok, get_task("pronoun"), "zero", split="test", n=32)


def test_the_hand_built_model_does_the_task_through_its_gender_nodes(toy):
    model, tok, fa = toy
    l_m, l_e = fa.reference_losses()
    assert l_m < 0.01 < 1.0 < l_e  # the model is right, the empty circuit knows nothing
    gender = node_set(model, GENDER_NODES)
    assert fa.normalized(gender) == 1.0  # the cancelling neurons add exactly nothing when both are gone
    assert fa.normalized(node_set(model, GENDER_NODES[:2])) == pytest.approx(0.0, abs=1e-6)


def test_a_planted_cancellation_passes_full_ablation_but_not_partial_or_adversarial(toy):
    model, tok, fa = toy
    gender = node_set(model, GENDER_NODES)
    with_mlp = node_set(model, GENDER_NODES + CANCELLING_NODES)
    for mode in ("uniform", "bernoulli"):
        for per_prompt in (False, True):
            caught = fa.stochastic(gender, mode, n_samples=8, per_prompt=per_prompt)
            assert caught["min_f"] < 0.5, (mode, per_prompt)
            assert fa.stochastic(with_mlp, mode, n_samples=4, per_prompt=per_prompt)["min_f"] > 0.999
    for target in ("loss", "kl"):
        adv = fa.adversarial(gender, steps=5, step_size=0.5, restarts=2, target=target)
        assert adv["worst_f"] < 0.0, target  # one neuron back, the other gone: worse than the empty circuit
        assert fa.adversarial(with_mlp, steps=3, step_size=0.5, restarts=2, target=target)["worst_f"] > 0.999
    assert fa.adversarial(with_mlp, steps=2, target="kl")["worst_kl"] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown adversary target"):
        fa.adversarial(gender, target="accuracy")


def test_interchange_on_a_known_variable_node(toy):
    model, tok, _ = toy
    task = get_task("pronoun")
    base, source = counterfactual_pairs(task, tok, "test", n=16)
    assert torch.equal(base.last, source.last) and not torch.equal(base.correct, source.correct)
    differs = (base.tokens != source.tokens).sum(1)
    assert (differs == 1).all()  # only the name changes
    value_node = node_set(model, ["L0.v.h0.0"])
    gender = node_set(model, GENDER_NODES)
    r = interchange(model, tok, task, gender, value_node, n=16)
    assert r["model_accuracy"] == 1.0 and r["circuit_accuracy"] == 1.0
    assert r["correlation"] == pytest.approx(1.0, abs=1e-5)  # the circuit is the model's mechanism here
    dropped = interchange(model, tok, task, node_set(model, ["L0.attn_in.2", "L0.attn_out.1"]), value_node, n=16)
    assert dropped["model_accuracy"] == 1.0 and dropped["circuit_accuracy"] == 0.0
    assert dropped["patched_in_circuit"] == 0
    with pytest.raises(ValueError, match="no interchange variable"):
        counterfactual_pairs(get_task("questions"), tok)


def test_whole_and_empty_circuits_score_one_and_zero_under_every_ablation(shipped):
    model, tok = shipped
    task = get_task("ioi")
    n_nodes = NodeLayout(model).n_nodes
    tau = torch.randn(n_nodes, generator=torch.Generator().manual_seed(0))
    for ablation in ABLATIONS:
        fa = Faithfulness.build(model, tok, task, ablation, split="test", n=8)
        whole = normalized_spread(fa, torch.ones(n_nodes, dtype=torch.bool), draws=2, n_boot=20)
        empty = normalized_spread(fa, torch.zeros(n_nodes, dtype=torch.bool), draws=2, n_boot=20)
        assert whole["f"] == pytest.approx(1.0, abs=1e-6) and whole["f_ci95"] == pytest.approx([1.0, 1.0], abs=1e-6)
        assert empty["f"] == pytest.approx(0.0, abs=1e-6) and empty["f_std_over_draws"] == pytest.approx(0, abs=1e-6)
        assert whole["draws"] == (2 if ablation == "resample" else 1)
        curve = fa.curve(tau, [0, 100, n_nodes])
        assert curve["f"][0] == pytest.approx(0.0, abs=1e-6) and curve["f"][-1] == pytest.approx(1.0, abs=1e-6)
        f = torch.tensor(curve["f"])
        x = torch.tensor([0, 100, n_nodes]) / n_nodes
        assert curve["area_f"] == pytest.approx(float(torch.trapezoid(f, x)), abs=1e-6)
        assert curve["area_f"] + curve["area_abs_1_minus_f"] == pytest.approx(1.0, abs=1e-5)  # f in [0, 1] here


SMALL = dict(
    eval_n=8,
    resample_draws=2,
    bootstrap=20,
    completeness_subsets=2,
    stochastic_samples=2,
    adversary_steps=1,
    adversary_restarts=2,
    mechanism_n=4,
    interchange_n=8,
    curve_fractions=(0.0, 0.1, 1.0),
)


def test_the_report_of_the_whole_model(shipped):
    model, tok = shipped
    n_nodes = NodeLayout(model).n_nodes
    whole = Circuit(torch.ones(n_nodes, dtype=torch.bool), torch.ones(n_nodes), {"task": "ioi", "ablation": "mean"})
    # every ablation scores the whole circuit 1 (the test above); zero keeps this one quick
    r = faithfulness_report(model, tok, whole, FaithfulnessConfig(**SMALL, ablation="zero", ablations=("zero",)))
    assert r["faithfulness"]["zero"]["f"] == pytest.approx(1.0, abs=1e-5)
    assert r["kl_to_model"]["train"] == pytest.approx(0.0, abs=1e-5)
    assert r["completeness"]["max_gap"] == pytest.approx(0.0, abs=1e-5)
    assert all(s["min_f"] == pytest.approx(1.0, abs=1e-5) for s in r["stochastic"].values())
    assert len(r["stochastic"]) == 4
    assert r["adversarial"]["kl"]["worst_kl"] == pytest.approx(0.0, abs=1e-5)
    assert r["mechanism"]["median_activation_correlation"] == pytest.approx(1.0, abs=1e-4)
    assert r["mechanism"]["attention_tv_max"] < 1e-5
    assert set(r["held_out"]) == {"train", "test", "test_unseen_names", "ioi_same"}
    held = r["held_out"]["ioi_same"]
    assert held["f"] == pytest.approx(1.0, abs=1e-5) and held["p_correct"]["circuit"] == pytest.approx(
        held["p_correct"]["model"], abs=1e-5
    )
    ic = r["interchange"]
    assert ic["circuit_accuracy"] == ic["model_accuracy"] and ic["correlation"] == pytest.approx(1.0, abs=1e-5)


def test_cli_prints_the_report_of_a_saved_circuit(shipped, tmp_path, capsys):
    model, tok = shipped
    n_nodes = NodeLayout(model).n_nodes
    tau = torch.randn(n_nodes, generator=torch.Generator().manual_seed(1))
    Circuit(tau > 2.0, tau, {"task": "pronoun", "ablation": "zero"}).save(tmp_path / "c", model)
    options = []
    for k, v in {**SMALL, "ablations": ("zero",), "variable_nodes": ("L0.v.h0.0",)}.items():
        options += [f"--{k.replace('_', '-')}", *map(str, v if isinstance(v, tuple) else [v])]
    assert main(["faithfulness", str(tmp_path / "c"), "--model", str(model_dir("dense-d128")), "--json", *options]) == 0
    out = capsys.readouterr().out
    r = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON report"))
    assert r["task"] == "pronoun" and r["nodes"] == int((tau > 2.0).sum()) and list(r["faithfulness"]) == ["zero"]
    assert r["curves"]["zero"]["counts"] == [0, round(0.1 * n_nodes), n_nodes]
    assert r["interchange"]["variable_nodes"] == 1
    assert set(r["held_out"]) == {"train", "test", "test_unseen_names"}  # no same-gender set outside IOI
    assert main(["faithfulness", str(tmp_path / "c"), "--model", str(model_dir("dense-d128")), "--task", "nope"]) == 2
    assert "unknown task" in capsys.readouterr().err
    bad_node = ["--variable-nodes", "L0.nowhere.1"]
    assert main(["faithfulness", str(tmp_path / "c"), "--model", str(model_dir("dense-d128")), *bad_node]) == 2
    assert "L0.nowhere.1" in capsys.readouterr().err
