import pytest
import torch
from sparse_circuits.analysis.controls import (
    mask_relaxation,
    node_activation_stats,
    randomize_weights,
    relaxation_masks,
    same_sparsity_pattern,
    single_node_importance,
    size_at_loss,
    size_ratio,
    smallest_circuit,
    top_k_share,
)
from sparse_circuits.analysis.faithfulness import Faithfulness
from sparse_circuits.circuits.masking import NodeLayout
from sparse_circuits.model.inference import load
from sparse_circuits.tasks import get_task


@pytest.fixture(scope="module")
def setup(tiny_model_dir, one_thread):
    model, tok, _ = load(tiny_model_dir)
    task = get_task("pronoun")
    return model, tok, task, Faithfulness.build(model, tok, task, "zero", split="val", n=8)


def test_randomize_weights_keeps_the_pattern_and_nothing_else(setup):
    model, *_ = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rnd = randomize_weights(model, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert same_sparsity_pattern(model, rnd)
    trained = model.sparsifiable_weights()
    for name, (w, _) in rnd.sparsifiable_weights().items():
        ref = trained[name][0]
        assert not torch.equal(w, ref), name
        assert bool(((w != 0) == (ref != 0)).all()), name
        assert float(w[w != 0].std()) < 0.05  # the initialization's scale (std 0.02 or less)
    for name, p in rnd.named_parameters():
        if name.endswith("bias") or name.endswith("sink"):
            assert bool((p == 0).all()), name
        elif ".ln" in name or name.startswith("ln_final"):
            assert bool((p == 1).all()), name
    # deterministic in the seed, different across seeds
    again, other = randomize_weights(model, seed=0), randomize_weights(model, seed=1)
    assert torch.equal(again.unembed.weight, rnd.unembed.weight)
    assert not torch.equal(other.unembed.weight, rnd.unembed.weight)
    # a pattern change is detected
    other.embed.weight[0, 0] = 0.0 if other.embed.weight[0, 0] != 0 else 1.0
    assert not same_sparsity_pattern(model, other)
    with pytest.raises(ValueError, match="unknown scale"):
        randomize_weights(model, scale="huge")


def test_matched_scale_copies_each_matrix_rms(setup):
    model, *_ = setup
    rnd = randomize_weights(model, seed=3, scale="matched")
    assert same_sparsity_pattern(model, rnd)
    trained = model.sparsifiable_weights()
    for name, (w, _) in rnd.sparsifiable_weights().items():
        ref = trained[name][0]
        rms = lambda x: float(x.detach()[x != 0].pow(2).mean().sqrt())  # noqa: E731
        assert rms(w) == pytest.approx(rms(ref), rel=1e-4), name


def test_relaxation_masks_are_nested_and_hit_both_ends():
    nodes = torch.zeros(50, dtype=torch.bool)
    nodes[[1, 7, 20]] = True
    fractions = (0.0, 0.1, 0.5, 1.0)
    masks, turned = relaxation_masks(nodes, fractions, n_draws=3, seed=0)
    assert masks.shape == (12, 50) and turned.tolist() == [0] * 3 + [5] * 3 + [24] * 3 + [47] * 3
    assert bool((masks[:, nodes] == 1).all())  # the circuit is always kept
    assert torch.equal(masks[:3], nodes.float().expand(3, -1)) and bool((masks[-3:] == 1).all())
    assert (masks.sum(1) == nodes.sum() + turned).all()
    m = masks.view(4, 3, 50)
    assert bool((m[1:] >= m[:-1]).all())  # nested within a draw
    assert not torch.equal(m[1, 0], m[1, 1])  # draws differ
    again, _ = relaxation_masks(nodes, fractions, n_draws=3, seed=0)
    assert torch.equal(again, masks)
    with pytest.raises(ValueError, match="fractions"):
        relaxation_masks(nodes, (0.0, 1.5))


def test_mask_relaxation_endpoints(setup):
    *_, fa = setup
    nodes = torch.zeros(fa.n_nodes, dtype=torch.bool)
    nodes[::5] = True
    r = mask_relaxation(fa, nodes, (0.0, 0.5, 1.0), n_draws=2)
    assert len(r["losses"]) == 3 and len(r["losses"][0]) == 2
    assert r["mean"][0] == pytest.approx(r["circuit_loss"], abs=1e-5)
    assert r["mean"][-1] == pytest.approx(r["model_loss"], abs=1e-5)
    assert r["circuit_loss"] != pytest.approx(r["model_loss"], abs=1e-4)
    assert r["excess"] == pytest.approx(max(r["mean"]) - max(r["circuit_loss"], r["model_loss"]))


def test_single_node_importance_matches_one_mask_at_a_time(setup):
    model, tok, task, fa = setup
    some = torch.tensor([0, 3, 40, fa.n_nodes - 1])
    imp = single_node_importance(fa, some, chunk=3)  # chunking across a boundary
    base = float(fa.loss(torch.ones(1, fa.n_nodes))[0])
    for j, i in enumerate(some.tolist()):
        m = torch.ones(1, fa.n_nodes)
        m[0, i] = 0
        assert float(imp["delta"][j]) == pytest.approx(float(fa.loss(m)[0]) - base, abs=1e-5)
    full = single_node_importance(fa, chunk=512)
    assert full["delta"].shape == (fa.n_nodes,) and full["delta"].abs().max() > 0
    # a node that is zero on every prompt token changes nothing when zero-ablated
    layout = NodeLayout(model)
    data = fa.pruner.eval_data
    _, cache = model.run_with_cache(data.tokens, names_filter=[s.hook for s in layout.slices])
    dead = [
        s.start + c
        for s in layout.slices
        for c in range(s.width)
        if bool((cache[s.hook].flatten(2)[..., c] == 0).all())
    ]
    if dead:
        assert float(full["delta"][dead].abs().max()) < 1e-5


def test_top_k_share():
    delta = torch.tensor([0.1, 5.0, 3.0, 3.0, -1.0, 2.0])
    circuit = torch.tensor([0, 1, 0, 1, 0, 0], dtype=torch.bool)
    t = top_k_share(delta, circuit, k=3)
    assert t["top"] == [1, 2, 3] and t["in_circuit"] == [True, False, True]
    assert t["share"] == pytest.approx(2 / 3)
    # size-matched random baseline: 2 of 6 nodes in the circuit; P(a random 2-node circuit holds >= 2 of the top 3)
    # = C(2,2) C(4,1) / C(6,3) = 4 / 20
    assert t["random_share"] == pytest.approx(1 / 3)
    assert t["p_random"] == pytest.approx(0.2)
    assert top_k_share(delta, torch.zeros(6, dtype=torch.bool), k=3)["p_random"] == pytest.approx(1.0)
    sub = top_k_share(torch.tensor([1.0, 2.0]), circuit, k=1, index=torch.tensor([4, 3]))
    assert sub["top"] == [3] and sub["share"] == 1.0


def test_a_constant_neuron_is_bias_like(setup):
    model, tok, task, fa = setup
    layout = NodeLayout(model)
    m = randomize_weights(model, seed=0, scale="matched")  # a throwaway copy to edit
    j = 5
    with torch.no_grad():
        m.blocks[0].mlp.W_in.weight[j] = 0.0
        m.blocks[0].mlp.W_in.bias[j] = 50.0  # gelu(50) = 50 on every token, the largest |x|: AbsTopK keeps it
    node = layout.sl(0, "mlp_neuron").start + j
    other = layout.sl(0, "attn_in").start
    data = task.data("val", tok, 4)
    st = node_activation_stats(m, data, [node, other])
    assert st["label"] == [f"L0.mlp_neuron.{j}", "L0.attn_in.0"]
    assert st["density"][0] == 1.0 and st["constancy"][0] == pytest.approx(1.0, abs=1e-6) and st["bias_like"][0]
    assert st["constancy"][1] < 0.999 and 0 <= st["density"][1] <= 1


def test_size_at_loss():
    grid, curve = [1, 2, 5, 10, 20], [3.0, 1.0, 0.2, 0.1, 0.12]
    assert size_at_loss(grid, curve, 0.15) == 10
    assert size_at_loss(grid, curve, 0.05) is None
    assert size_at_loss(grid, [float("nan"), 0.1], 0.15) == 2
    assert size_ratio(30, 10) == 3.0 and size_ratio(None, 10) is None and size_ratio(5, None) is None


def test_smallest_circuit_takes_the_search_or_the_grid():
    from sparse_circuits.circuits.circuit import Circuit

    def circ(n, loss, reached):
        tau = torch.linspace(1, -1, 10)
        return Circuit(tau > tau.sort(descending=True).values[n], tau, {"loss": loss, "reached_target": reached})

    a, b = circ(6, 0.1, True), circ(8, 0.3, False)
    sweep = {"circuits": [a, b], "grid": [1, 2, 5, 10], "curves": [[3.0, 2.0, 0.5, 0.0], [3.0, 2.0, 0.12, 0.0]]}
    c, ok = smallest_circuit(sweep, 0.15)
    assert ok and c.n_nodes == 5 and torch.equal(c.tau, b.tau)  # run b's curve passes at 5 nodes
    c, ok = smallest_circuit({**sweep, "curves": [[3.0, 2.0, 0.5, 0.0], [3.0, 2.0, 0.5, 0.0]]}, 0.15)
    assert ok and c is a  # the search's 6 beats the grid's 10
    c, ok = smallest_circuit({**sweep, "circuits": [circ(6, 0.4, False), b], "curves": [[3.0] * 4, [3.0] * 4]}, 0.15)
    assert not ok and c is b  # nothing passes: the lowest discretized loss
