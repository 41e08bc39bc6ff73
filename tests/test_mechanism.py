import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import random_circuit, synthetic_data  # noqa: E402
from sparse_circuits.analysis import mechanism as mech  # noqa: E402
from sparse_circuits.analysis import walkthrough as wt  # noqa: E402
from sparse_circuits.analysis.compare import activation_agreement, attention_agreement  # noqa: E402
from sparse_circuits.app.experiments import prune_circuits  # noqa: E402
from sparse_circuits.app.verdicts import attention_verdict, roles_verdict  # noqa: E402
from sparse_circuits.circuits.ablation import node_means  # noqa: E402
from sparse_circuits.circuits.circuit import Circuit  # noqa: E402
from sparse_circuits.circuits.layout import NodeLayout  # noqa: E402
from sparse_circuits.model.inference import load  # noqa: E402
from sparse_circuits.pruning.pruner import PruneConfig  # noqa: E402
from sparse_circuits.tasks import get_task  # noqa: E402
from sparse_circuits.viz import mechanism_figures as mfig  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    data = get_task("ioi").data("test", tok, 8)
    N = NodeLayout(model).n_nodes
    circuit = random_circuit(model, task="ioi")
    full = Circuit(nodes=torch.ones(N, dtype=torch.bool), tau=torch.ones(N), meta={"ablation": "zero"})
    return model, tok, data, circuit, full


# ----------------------------------------------------------------------------------------- attention


def test_name_slots_and_positions(setup):
    model, tok, data, *_ = setup
    assert mech.name_slots(data) == ["name_1", "name_2"]
    pron = get_task("pronoun").data("test", tok, 4)
    assert mech.name_slots(pron) == ["name"]
    pos = mech.slot_positions(data, tok)
    for i in range(len(data)):
        assert tok.id_to_token(int(data.tokens[i, pos["name_1"][i]])) == data.assignments[i]["name_1"]
    groups = mech.gender_groups(data, "name_1")
    assert bool((groups["male"] ^ groups["female"]).all())


def test_normalized_entropy_bounds():
    n_keys = torch.tensor([4, 4])
    p = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    ne = mech.normalized_entropy(p, n_keys)
    assert ne[0] == pytest.approx(1.0) and ne[1] == pytest.approx(0.0, abs=1e-6)


def test_head_attention_agrees_with_faithfulness(setup):
    model, tok, data, circuit, full = setup
    heads = mech.head_attention(model, circuit, data, None, mech.slot_positions(data, tok), tok)
    ref = attention_agreement(model, circuit, data)
    assert [(h["layer"], h["head"]) for h in heads] == [(r["layer"], r["head"]) for r in ref]
    for h, r in zip(heads, ref):
        assert h["tv_mean"] == pytest.approx(r["tv"], abs=1e-5)
        assert h["mean_entropy_model"] == pytest.approx(r["entropy_model"], abs=1e-4)
        assert h["mean_entropy_pruned"] == pytest.approx(r["entropy_pruned"], abs=1e-4)
        assert h["original"].sum(-1).allclose(torch.ones(len(data)), atol=1e-4)
    same = mech.head_attention(model, full, data, None, mech.slot_positions(data, tok), tok)
    assert len(same) == model.cfg.n_layer * model.cfg.n_head
    assert all(
        h["tv_mean"] < 1e-5 and h["to_slot"]["name_1"][0] == pytest.approx(h["to_slot"]["name_1"][1]) for h in same
    )


def test_value_only_head_attends_uniformly_over_tokens(setup):
    model, tok, data, *_ = setup
    nl = NodeLayout(model)
    nodes = torch.zeros(nl.n_nodes, dtype=torch.bool)
    E = model.cfg.d_head
    nodes[nl.sl(1, "v").start + E : nl.sl(1, "v").start + E + 2] = True  # two value channels of head 1, no q/k
    nodes[nl.sl(1, "attn_in")] = True
    c = Circuit(nodes=nodes, tau=nodes.float())
    (h,) = mech.head_attention(model, c, data)
    assert (h["layer"], h["head"], h["q"], h["k"], h["v"], h["qk_pairs"]) == (1, 1, 0, 0, 2, 0)
    for i in range(len(data)):  # q = k = 0 under zero ablation: every token gets the same weight
        row = h["pruned"][i, 1 : int(data.last[i]) + 2]
        assert torch.allclose(row, row[0].expand_as(row), atol=1e-6)


def test_flags_and_verdict():
    def head(ne_m, ne_p, name_m, name_p):
        h = {
            "layer": 1,
            "head": 0,
            "norm_entropy_model": ne_m,
            "norm_entropy_pruned": ne_p,
            "to_slot": {"name": [name_m, name_p]},
        }
        return {**h, **mech.head_flags(h)}

    lost_name = head(0.2, 0.95, 0.9, 0.1)
    assert lost_name["lost"] and lost_name["name_head"]
    assert attention_verdict({"a": [lost_name]})["holds"] == "yes"
    assert attention_verdict({"a": [head(0.2, 0.95, 0.1, 0.1)]})["holds"] == "partly"
    assert attention_verdict({"a": [head(0.2, 0.6, 0.9, 0.4)]})["holds"] == "partly"  # name attention halved
    assert attention_verdict({"a": [head(0.2, 0.6, 0.9, 0.8)]})["holds"] == "no"
    assert attention_verdict({"a": []})["holds"] == "n/a"


# ------------------------------------------------------------------------------------------- roles


def test_position_classes_and_signal_shares():
    data = synthetic_data(torch.tensor([[0, 5, 6, 7, 8], [0, 5, 6, 7, 0]]), [4, 3])
    slots = {"name": torch.tensor([2, 1])}
    cls, names = mech.position_classes(data, slots)
    assert names == ["name", "answer", "other"]
    assert cls.tolist() == [[-1, 2, 0, 2, 1], [-1, 0, 2, 1, -1]]
    x = torch.zeros(2, 5, 3)
    x[0, 2, 0], x[1, 1, 0] = 4.0, 4.0  # node 0 fires only at the name
    x[:, :, 1] = 7.0  # node 1 is constant: no signal
    x[0, 4, 2], x[1, 3, 2] = -1.0, -1.0  # node 2 fires only at the answer
    x[:, 0, 2] = 100.0  # <eos> is not counted
    s = mech.signal_shares(x, cls, len(names))
    assert s[0, 0] > 0.8 and s[0, 0] == s[0].max()
    assert bool(s[1].isnan().all())
    assert s[2, 1] > 0.8
    assert torch.allclose(s[[0, 2]].sum(1), torch.ones(2))


def test_node_roles_of_the_whole_model_agree(setup):
    model, tok, data, circuit, full = setup
    slots = mech.slot_positions(data, tok)
    r = mech.node_roles(model, full, data, None, slots, gender_slot="name_1")
    known = r["correlation"][~r["correlation"].isnan()]
    assert len(known) > 0 and torch.allclose(known, torch.ones_like(known), atol=1e-4)
    s = r["shift"][~r["shift"].isnan()]
    assert float(s.abs().max()) < 1e-5 and not bool(r["gender_flip"].any())
    summary = mech.role_summary(r)
    assert summary["sign_flipped_fraction"] == 0 and summary["moved_fraction"] == 0
    assert summary["gender_only_pruned"] == [] and roles_verdict({"full": summary})["holds"] == "no"


def test_node_roles_correlation_matches_activation_agreement(setup):
    model, tok, data, circuit, _ = setup
    means = node_means(model, NodeLayout(model), tok, n_batches=1, batch_size=4)
    r = mech.node_roles(model, circuit, data, means, mech.slot_positions(data, tok), include_eos=True)
    ref = activation_agreement(model, circuit, data, means)
    assert r["labels"] == ref["labels"]
    ours, theirs = r["correlation"], torch.tensor(ref["correlation"])
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.allclose(ours[~ours.isnan()], theirs[~theirs.isnan()], atol=1e-5)
    assert r["original"].shape == (len(data), data.tokens.shape[1], circuit.n_nodes)


def test_summary_verdict_and_score():
    roles = {
        "labels": ["a", "b", "c"],
        "correlation": torch.tensor([0.9, -0.5, float("nan")]),
        "shift": torch.tensor([0.0, 0.3, float("nan")]),
        "classes": ["name", "answer", "other"],
        "shares_model": torch.tensor([[0.5, 0.25, 0.25], [0.8, 0.1, 0.1], [float("nan")] * 3]),
        "shares_pruned": torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.7, 0.1], [float("nan")] * 3]),
        "signal_model": torch.tensor([1.0, 1.0, 0.0]),
        "signal_pruned": torch.tensor([1.0, 0.5, 0.0]),
    }
    s = mech.role_summary(roles)
    assert s["sign_flipped"] == ["b"] and s["anti_correlated"] == ["b"] and s["moved"] == {"b": ["name", "answer"]}
    assert s["sign_flipped_fraction"] == pytest.approx(0.5) and s["undefined_fraction"] == pytest.approx(1 / 3)
    assert roles_verdict({"x": s})["holds"] == "yes"
    weak = mech.role_summary({**roles, "correlation": torch.tensor([0.9, -0.1, float("nan")])})
    assert roles_verdict({"x": weak})["holds"] == "partly"
    quiet = mech.role_summary({**roles, "signal_pruned": torch.tensor([1.0, 0.05, 0.0])})
    assert quiet["silenced"] == ["b"] and quiet["moved"] == {} and quiet["moved_fraction"] == 0  # silenced, not moved
    score = mech.role_change_score(roles["correlation"], roles["shift"])
    assert score.tolist() == pytest.approx([0.05, 1.05, 0.5])
    silenced = mech.role_change_score(roles["correlation"], roles["shift"], torch.ones(3), torch.tensor([1, 0.01, 1]))
    assert silenced.tolist() == pytest.approx([0.05, 0.75, 0.5])
    trimmed = mech.summary_for_json({**s, "sign_flipped": list("abcdef")}, max_items=2)
    assert trimmed["sign_flipped"] == ["a", "b"] and trimmed["n_sign_flipped"] == 6


def test_separation_ignores_rounding_noise():
    male = torch.tensor([True, False] * 8)
    x = torch.full((16,), 3.0) + 1e-7 * torch.randn(16)
    assert wt.separation(x, male, mech.ROUNDING_TOL) == 0.0
    y = torch.where(male, 1.0, -1.0) + 0.1 * torch.randn(16)
    assert wt.separation(y, male, mech.ROUNDING_TOL) > 5


# --------------------------------------------------------------------------------- pruning, plots


def test_prune_circuits_keys_and_shared_means(tiny_model_dir):
    loaded = {"tiny": load(tiny_model_dir)}
    configs = [PruneConfig(ablation=a, steps=2, batch_size=2, eval_n=4, search_points=2) for a in ("zero", "mean")]
    e = prune_circuits(loaded, ["pronoun", "ioi"], configs)
    assert list(e) == ["tiny/pronoun/zero", "tiny/pronoun/mean", "tiny/ioi/zero", "tiny/ioi/mean"]
    assert e["tiny/pronoun/zero"]["ablation"] is None
    assert e["tiny/pronoun/mean"]["ablation"] is e["tiny/ioi/mean"]["ablation"]  # computed once per model
    assert all(v["circuit"].meta["ablation"] == v["ablation_kind"] for v in e.values())


def test_plots_draw(setup):
    import matplotlib.pyplot as plt

    model, tok, data, circuit, _ = setup
    slots = mech.slot_positions(data, tok)
    heads = {"c": mech.head_attention(model, circuit, data, None, slots, tok), "empty": []}
    roles = {"c": mech.node_roles(model, circuit, data, None, slots, gender_slot="name_1")}
    figs = [
        mfig.plot_tv_table(heads),
        mfig.plot_entropy_scatter(heads),
        mfig.plot_name_attention(heads),
        mfig.plot_head_rows([("c", heads["c"][0])], n_prompts=3),
        mfig.plot_head_rows([]),
        mfig.plot_role_scatter(roles),
        mfig.plot_role_summary({"c": mech.role_summary(roles["c"])}),
    ]
    assert all(math.isfinite(f.get_figwidth()) for f in figs)
    plt.close("all")


def test_over_circuits_equals_each_circuit_alone(setup):
    model, tok, data, circuit, full = setup
    pron = get_task("pronoun").data("test", tok, 8)
    loaded = {"tiny": (model, tok, None)}
    tests = {("tiny", "ioi"): data, ("tiny", "pronoun"): pron}
    entries = {
        "a": {"model": "tiny", "task": "ioi", "circuit": circuit, "test_ablation": None},
        "b": {"model": "tiny", "task": "pronoun", "circuit": full, "test_ablation": None},
    }
    heads = mech.heads_of_circuits(entries, loaded, tests, sharp=0.6, near_uniform=0.8, name_focus=0.3)
    roles, summaries = mech.roles_of_circuits(entries, loaded, tests, move=0.2, strong=-0.5, quiet=0.2)
    for key, d, slot in (("a", data, "name_1"), ("b", pron, "name")):
        c, slots = entries[key]["circuit"], mech.slot_positions(d, tok)
        alone = mech.head_attention(model, c, d, None, slots, tok)
        assert [(h["layer"], h["head"]) for h in heads[key]] == [(h["layer"], h["head"]) for h in alone]
        for got, want in zip(heads[key], alone):
            assert got["tv_mean"] == pytest.approx(want["tv_mean"])
            flags = mech.head_flags(want, 0.6, 0.8, 0.3)  # the given thresholds, not the module's defaults
            assert {k: got[k] for k in flags} == flags
        r = mech.node_roles(model, c, d, None, slots, gender_slot=slot)
        assert torch.equal(roles[key]["gender_flip"], r["gender_flip"])
        same = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731  (NaN == NaN as text)
        assert same(summaries[key]) == same(mech.role_summary(r, 0.2, -0.5, quiet=0.2))
