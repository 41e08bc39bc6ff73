import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import random_circuit, synthetic_data  # noqa: E402
from sparse_circuits.analysis import walkthrough as wt  # noqa: E402
from sparse_circuits.analysis.compare import head_patterns  # noqa: E402
from sparse_circuits.analysis.inspection import node_values  # noqa: E402
from sparse_circuits.app.verdicts import claim  # noqa: E402
from sparse_circuits.circuits.circuit import Circuit  # noqa: E402
from sparse_circuits.circuits.layout import NodeLayout, parse_label  # noqa: E402
from sparse_circuits.model.inference import load  # noqa: E402
from sparse_circuits.tasks import TaskData, answer_logits, get_task  # noqa: E402
from sparse_circuits.viz import walkthrough_figures as wfig  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    data = get_task("ioi").data("test", tok, 6)
    circuit = random_circuit(model, task="ioi")
    return model, tok, data, circuit


def test_slot_positions_find_each_name(setup):
    model, tok, data, _ = setup
    for slot in ("name_1", "name_2"):
        pos = wt.slot_positions(data, tok, slot)
        for i, a in enumerate(data.assignments):
            assert int(data.tokens[i, pos[i]]) == tok.token_to_id(a[slot])
    assert (wt.slot_positions(data, tok, "name_1") == 2).all()  # "<eos> when {name_1} ..."
    assert (wt.slot_positions(data, tok, "name_2") > 2).all()
    with pytest.raises(KeyError, match="no slot"):
        wt.slot_positions(data, tok, "nope")


def test_direct_logit_effects_sum_to_the_logit_difference(setup):
    model, tok, data, circuit = setup
    orig, pruned = wt.caches(model, circuit, data)
    a, b = int(data.correct[0]), int(data.incorrect[0])
    with torch.no_grad():
        logits_m = answer_logits(model(data.tokens), data)
        with circuit.run(model):
            logits_c = answer_logits(model(data.tokens), data)
    for cache, logits in ((orig, logits_m), (pruned, logits_c)):
        r = wt.direct_logit_effects(model, cache, data, a, b)
        torch.testing.assert_close(r["total"], logits[:, a] - logits[:, b], atol=1e-4, rtol=1e-4)
        assert r["rest"].abs().max() == 0  # every nonzero writer is itemized by default
    # In the pruned model (zero ablation) only kept writer channels can contribute.
    kept = set(circuit.node_labels(model))
    r = wt.direct_logit_effects(model, pruned, data, a, b)
    assert set(r["effects"]) <= kept
    # Itemizing a few labels moves the others into "rest" without changing the total.
    some = list(r["effects"])[:2]
    r2 = wt.direct_logit_effects(model, pruned, data, a, b, labels=some)
    assert list(r2["effects"]) == some
    torch.testing.assert_close(r2["total"], r["total"])
    # Token lists and the vocabulary mean: mean(logit[a], logit[b]) - mean over every logit.
    r3 = wt.direct_logit_effects(model, orig, data, [a, b], None)
    torch.testing.assert_close(r3["total"], logits_m[:, [a, b]].mean(1) - logits_m.mean(1), atol=1e-4, rtol=1e-4)


def test_residual_parts_sum_to_the_reader(setup):
    model, tok, data, circuit = setup
    names = wt.cache_names(model) + ["*hook_normalized"]
    _, cache = model.run_with_cache(data.tokens, names_filter=names)
    pos = wt.slot_positions(data, tok, "name_2")
    rows = torch.arange(len(data))
    for label, hook in (
        ("L1.attn_in.3", "blocks.1.ln1.hook_normalized"),
        ("L1.mlp_in.7", "blocks.1.ln2.hook_normalized"),
        ("L0.mlp_in.2", "blocks.0.ln2.hook_normalized"),
    ):
        parts = wt.residual_parts(model, cache, label, pos)
        c = parse_label(label).dim
        torch.testing.assert_close(sum(parts.values()), cache[hook][rows, pos, c].float(), atol=1e-5, rtol=1e-4)
    upstream = {"embed", "L0.attn_out.7", "L0.mlp_out.7", "L1.attn_out.7"}
    assert set(wt.residual_parts(model, cache, "L1.mlp_in.7", torch.arange(len(data)) * 0 + 3)) <= upstream
    assert not any(k.startswith("L1") for k in wt.residual_parts(model, cache, "L1.attn_in.3", pos))
    with pytest.raises(ValueError, match="not an attn_in"):
        wt.residual_parts(model, cache, "L1.v.h0.1", pos)
    assert wt.node_heads(["L1.v.h5.8", "L0.mlp_out.7"]) == {"L1.v.h5.8": (1, 5)}
    assert parse_label("L0.mlp_out.7") == (0, "mlp_out", None, 7)


def test_role_change_needs_selectivity_in_both_models():
    male = torch.tensor([True, True, False, False])
    groups = {"male": male, "female": ~male}
    model_vals = torch.tensor([-0.07, -0.07, 0.0, 0.0])  # fires on male names
    pruned_vals = torch.tensor([0.0, -0.003, 0.06, 0.064])  # fires on female names
    r = wt.role_change(model_vals, pruned_vals, groups)
    assert r["model"][0] == "male" and r["pruned"][0] == "female"
    assert wt.role_change(model_vals, model_vals * 2, groups) is None  # same group
    both = torch.tensor([-0.8, -0.8, -0.85, -0.85])  # not selective
    assert wt.role_change(both, pruned_vals, groups) is None
    assert wt.role_change(model_vals * 0.1, pruned_vals, groups) is None  # too small


def test_evaluate_full_matches_evaluate_and_takes_resampled_values(setup):
    from sparse_circuits.tasks import evaluate
    from sparse_circuits.viz.inspector import resolve_ablation

    model, tok, data, circuit = setup
    with circuit.run(model):
        a, b = evaluate(model, data, "binary"), wt.evaluate_full(model, data, "binary")
    for k in ("accuracy", "p_correct", "loss"):
        assert a[k] == pytest.approx(b[k], abs=1e-5)
    values = resolve_ablation(model, tok, "resample", data)  # [n, T, width] per hook
    with circuit.run(model, values):
        r = wt.evaluate_full(model, data, "binary")
    assert r["n"] == len(data) and r["loss"] == r["loss"]


def test_node_values_match_the_hook(setup):
    model, tok, data, circuit = setup
    orig, _ = wt.caches(model, circuit, data)
    nl = NodeLayout(model)
    v = node_values(orig, nl, "L1.v.h1.3")
    torch.testing.assert_close(v, orig["blocks.1.attn.hook_v"][:, :, 1, 3].float())
    v = node_values(orig, nl, "L0.mlp_out.5")
    torch.testing.assert_close(v, orig["blocks.0.hook_mlp_out"][..., 5].float())


def test_attention_to_skips_the_sink_column(setup):
    model, tok, data, circuit = setup
    pat = head_patterns(model, circuit, data, 1, 0, tok=tok)
    pos = wt.slot_positions(data, tok, "name_1")
    w = wt.attention_to(pat["original"], pos)
    torch.testing.assert_close(w, pat["original"][torch.arange(len(data)), pos + 1])
    assert pat["keys"][0][int(pos[0]) + 1] == data.assignments[0]["name_1"]


def test_pair_scores_add_up_to_the_attention_score(setup):
    model, tok, data, _ = setup
    nl = NodeLayout(model)
    nodes = torch.ones(nl.n_nodes, dtype=torch.bool)
    E = model.cfg.d_head
    for site in ("q", "k"):  # head 1 of layer 1 keeps only channels 2 and 5 of its queries and keys
        sl = nl.sl(1, site)
        nodes[sl.start + E : sl.start + 2 * E] = False
        nodes[sl.start + E + 2] = nodes[sl.start + E + 5] = True
    circuit = Circuit(nodes=nodes, tau=nodes.float(), meta={"ablation": "zero"})
    _, pruned = wt.caches(model, circuit, data)
    with circuit.run(model):
        _, sc = model.run_with_cache(data.tokens, names_filter="blocks.1.attn.hook_attn_scores")
    pos = wt.slot_positions(data, tok, "name_1")
    score = sc["blocks.1.attn.hook_attn_scores"][torch.arange(len(data)), 1, data.last, pos + 1]
    pairs = sum(
        wt.pair_score(
            node_values(pruned, nl, f"L1.q.h1.{e}"), node_values(pruned, nl, f"L1.k.h1.{e}"), data.last, pos, E
        )
        for e in (2, 5)
    )
    torch.testing.assert_close(pairs, score.float(), atol=1e-4, rtol=1e-4)


def test_position_statistics_on_known_values():
    tokens = torch.tensor([[0, 5, 6, 7, 0], [0, 6, 5, 0, 0]])
    data = synthetic_data(tokens, [3, 2])
    valid = wt.valid_mask(data)
    assert valid.tolist() == [[False, True, True, True, False], [False, True, True, False, False]]
    assert wt.valid_mask(data, include_eos=True)[:, 0].all()
    values = torch.tensor([[9.0, 3.0, 2.0, 1.0, 9.0], [9.0, 3.0, 2.0, 9.0, 9.0]])  # falls with position
    trend = wt.position_trend(values, data)
    assert trend["corr"] < -0.9
    assert trend["by_position"][1:4] == [3.0, 2.0, 1.0] and trend["count"] == [0, 2, 2, 1, 0]
    s = wt.selectivity(values, data, torch.tensor([1, 1]))
    assert s["at"] == 3.0 and s["elsewhere"] == pytest.approx(5 / 3) and s["ratio"] == pytest.approx(1.8)
    torch.testing.assert_close(wt.at_positions(values, torch.tensor([3, 2])), torch.tensor([1.0, 2.0]))


def test_separation_and_reordered_pairs():
    x = torch.tensor([2.0, 2.2, 1.8, 0.0, 0.2, -0.2])
    m = torch.tensor([True, True, True, False, False, False])
    assert wt.separation(x, m) == pytest.approx(10.0)
    assert wt.separation(-x, m) == pytest.approx(-10.0)
    assert wt.separation(torch.ones(6), m) == 0.0
    tokens = torch.tensor([[0, 5, 6, 7], [0, 6, 5, 7], [0, 6, 5, 8], [0, 5, 6, 7]])
    data = TaskData(
        tokens,
        torch.tensor([3, 3, 3, 2]),
        torch.tensor([9, 4, 4, 9]),
        torch.zeros(4, dtype=torch.long),
        [""] * 4,
        [{}] * 4,
    )
    assert wt.reordered_pairs(data) == [(1, 0)]  # row 2 has another word; row 3 is shorter


def test_token_means_and_group_means():
    class Tok:
        def id_to_token(self, i):
            return {5: "why", 6: "you", 7: "the"}.get(i)

    tokens = torch.tensor([[0, 5, 6, 7], [0, 6, 5, 7]])
    data = synthetic_data(tokens, [3, 3])
    values = torch.tensor([[0.0, 2.0, -1.0, 0.5], [0.0, -3.0, 4.0, 0.5]])
    rows = wt.token_means(values, data, Tok(), min_count=2)
    assert [r[0] for r in rows] == ["why", "the", "you"]
    assert rows[0][1] == pytest.approx(3.0) and rows[0][2] == 2
    g = wt.group_means(
        torch.tensor([1.0, 3.0, 5.0]), {"a": torch.tensor([True, True, False]), "none": torch.tensor([False] * 3)}
    )
    assert g["a"] == 2.0 and g["none"] != g["none"]
    x, male = torch.tensor([-0.3, -0.1, 0.2, 0.0]), torch.tensor([True, True, False, False])
    name, means = wt.active_group(x, {"male": male, "female": ~male, "none": torch.tensor([False] * 4)})
    assert name == "male" and means["male"] == pytest.approx(-0.2) and means["female"] == pytest.approx(0.1)


def test_figures_and_claims(setup):
    model, tok, data, circuit = setup
    orig, pruned = wt.caches(model, circuit, data)
    label, nl = circuit.node_labels(model)[0], NodeLayout(model)
    fig = wfig.plot_activations(
        {"model": node_values(orig, nl, label), "pruned": node_values(pruned, nl, label)}, data, tok, n_prompts=3
    )
    assert len(fig.axes) == 2
    from sparse_circuits.analysis.inspection import activation_table

    table = activation_table(model, circuit, data, label, tok=tok)
    panels = wfig.table_panels(table)
    assert list(panels) == [f"{label} model", f"{label} pruned"]
    torch.testing.assert_close(panels[f"{label} pruned"], node_values(pruned, nl, label))
    torch.testing.assert_close(panels[f"{label} model"], node_values(orig, nl, label))
    fig = wfig.plot_patterns(head_patterns(model, circuit, data, 0, 1, tok=tok), n_prompts=3)
    assert len(fig.axes) == 2
    fig = wfig.plot_logit_effects({"male": {"a": 1.0, "b": -2.0}, "female": {"a": 0.5, "b": 0.0}}, "x")
    assert len(fig.axes) == 1
    c = claim("C3", "small", "12 nodes", "12 nodes", "yes", "figures/x.png")
    assert set(c) == {"id", "claim", "ours", "paper", "holds", "figure"}
    with pytest.raises(ValueError, match="holds"):
        claim("C3", "small", "", "", "maybe", "")
