import pytest
import torch
from sparse_circuits.analysis.compare import activation_agreement, attention_agreement
from sparse_circuits.analysis.faithfulness import Faithfulness, jaccard
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.circuits.masking import NodeLayout
from sparse_circuits.core.paths import model_dir
from sparse_circuits.model.inference import load
from sparse_circuits.tasks import get_task


@pytest.fixture(scope="module")
def setup():
    # normalized faithfulness needs a model that knows the task (L_model << L_empty): the shipped dense baseline
    model, tok, _ = load(model_dir("dense-d128"))
    task = get_task("ioi")
    return model, tok, task, Faithfulness.build(model, tok, task, "mean", split="val", n=16)


def test_reference_points(setup):
    model, tok, task, fa = setup
    l_m, l_e = fa.reference_losses()
    assert l_m != l_e
    all_nodes = torch.ones(fa.n_nodes, dtype=torch.bool)
    assert fa.normalized(all_nodes) == pytest.approx(1.0, abs=1e-5)
    assert fa.normalized(~all_nodes) == pytest.approx(0.0, abs=1e-5)
    assert fa.kl_to_model(all_nodes) == pytest.approx(0.0, abs=1e-5)
    assert fa.kl_to_model(~all_nodes) > 0


def test_whole_model_passes_every_perturbation_test(setup):
    *_, fa = setup
    all_nodes = torch.ones(fa.n_nodes, dtype=torch.bool)
    assert fa.completeness(all_nodes, n_subsets=3)["max_gap"] == pytest.approx(0.0, abs=1e-5)
    for mode in ("uniform", "bernoulli"):
        assert fa.stochastic(all_nodes, mode, n_samples=2)["min_f"] == pytest.approx(1.0, abs=1e-5)
    assert fa.adversarial(all_nodes, steps=2)["worst_f"] == pytest.approx(1.0, abs=1e-5)


def test_adversary_and_random_ablations(setup):
    *_, fa = setup
    nodes = torch.zeros(fa.n_nodes, dtype=torch.bool)
    nodes[::3] = True
    start = torch.rand(fa.n_nodes, generator=torch.Generator().manual_seed(0))
    start_loss = float(fa.loss((nodes.float() + (~nodes).float() * start)[None])[0])
    adv = fa.adversarial(nodes, steps=3, step_size=0.5, seed=0)
    assert adv["worst_loss"] >= start_loss - 1e-5  # the ascent starts from that pattern and keeps the worst
    stoch = fa.stochastic(nodes, "bernoulli", n_samples=4)
    assert len(stoch["f"]) == 4 and stoch["min_f"] <= stoch["mean_f"]
    with pytest.raises(ValueError, match="unknown mode"):
        fa.stochastic(nodes, "gaussian")


def test_mechanism_agreement_of_the_whole_model_is_perfect(setup):
    model, tok, task, fa = setup
    data = task.data("val", tok, 8)
    full = Circuit(torch.ones(fa.n_nodes, dtype=torch.bool), torch.zeros(fa.n_nodes))
    act = activation_agreement(model, full, data)
    known = torch.tensor(act["correlation"])
    known = known[~known.isnan()]
    assert len(known) > 0 and torch.allclose(known, torch.ones_like(known), atol=1e-4)
    assert act["sign_flipped_fraction"] == 0.0
    heads = attention_agreement(model, full, data)
    assert len(heads) == model.cfg.n_layer * model.cfg.n_head
    assert all(h["tv"] < 1e-5 for h in heads)
    assert all(h["entropy_model"] <= h["entropy_uniform"] + 1e-5 for h in heads)


def test_zero_ablated_queries_make_attention_uniform_over_tokens(setup):
    # Drori's D2 mechanism: with no q nodes kept, every token gets the same score; only the sink differs
    model, tok, task, fa = setup
    data = task.data("val", tok, 8)
    layout = NodeLayout(model)
    nodes = torch.ones(fa.n_nodes, dtype=torch.bool)
    nodes[layout.sl(0, "q")] = False
    circuit = Circuit(nodes, torch.zeros(len(nodes)))
    heads = {(h["layer"], h["head"]): h for h in attention_agreement(model, circuit, data)}
    assert not heads[(0, 0)]["q"] and heads[(0, 0)]["k"] and heads[(0, 0)]["tv"] > 0
    with circuit.run(model):
        _, cache = model.run_with_cache(data.tokens, names_filter="blocks.0.attn.hook_pattern")
    pat = cache["blocks.0.attn.hook_pattern"][torch.arange(len(data)), :, data.last]  # [N, H, 1+T]
    for i in range(len(data)):
        tokens = pat[i, :, 1 : int(data.last[i]) + 2]  # the real tokens up to the answer
        torch.testing.assert_close(tokens, tokens[:, :1].expand_as(tokens))


def test_jaccard():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 1, 1, 0], dtype=torch.bool)
    assert jaccard(a, b) == pytest.approx(1 / 3) and jaccard(a, a) == 1.0
    assert jaccard(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) == 1.0
