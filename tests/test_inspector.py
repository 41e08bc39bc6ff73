import html
import json
import re
import time

import pytest
import torch
from sparse_circuits.analysis import compare, inspection
from sparse_circuits.circuits import evaluate, layout
from sparse_circuits.circuits import graph as cgraph
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.circuits.graph import count_edges
from sparse_circuits.circuits.layout import NodeLayout
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner, prune
from sparse_circuits.tasks import get_task
from sparse_circuits.viz import graph_layout
from sparse_circuits.viz import inspector as insp
from sparse_circuits.viz.graph_plot import plot_circuit_graph
from sparse_circuits.viz.html import circuit_to_html, json_for_html, tokens_html


def make_circuit(model, frac: float = 0.3, seed: int = 0, n: int | None = None, **meta) -> Circuit:
    """A hand-made circuit from a random node mask; tau ranks the kept nodes first, so at_count(n) gives it back."""
    N = NodeLayout(model).n_nodes
    g = torch.Generator().manual_seed(seed)
    score = torch.rand(N, generator=g)
    if n is None:
        nodes = score < frac
    else:
        nodes = torch.zeros(N, dtype=torch.bool)
        nodes[score.topk(n).indices] = True
    tau = torch.where(nodes, 1.0 + score, -score)
    return Circuit(nodes=nodes, tau=tau, meta={"task": "pronoun", "ablation": "zero", **meta})


class ScriptTokenizer:
    """The real tokenizer, except that one token's string is an HTML tag."""

    def __init__(self, tok, token_id: int, text: str = "<script>alert(1)</script>") -> None:
        self._tok, self._id, self._text = tok, token_id, text

    def id_to_token(self, i: int):
        return self._text if i == self._id else self._tok.id_to_token(i)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    task = get_task("pronoun")
    data = task.data("test", tok, 8)
    answers = sorted(set(data.correct.tolist()) | set(data.incorrect.tolist()))
    return model, tok, task, data, answers


@pytest.fixture(scope="module")
def pruned(setup):
    model, tok, task, _, _ = setup
    cfg = PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=8)
    return prune(model, tok, task, cfg, seeds=[0], progress=False)[0]


def test_labels_match_the_node_layout_and_parse_back(setup):
    model = setup[0]
    nl = NodeLayout(model)
    for i in range(nl.n_nodes):
        label = layout.node_label(*nl.describe(i), model.cfg.d_head)
        assert label == nl.label(i) and nl.index(label) == i
        ref = layout.parse_label(label)
        assert (ref.layer, ref.site, ref.channel(model.cfg.d_head)) == nl.describe(i)
    assert layout.parse_label("L1.v.h3.5") == layout.NodeRef(1, "v", 3, 5)
    assert layout.parse_label("L0.mlp_out.7") == layout.NodeRef(0, "mlp_out", None, 7)
    for bad in ("embed.3", "logit.he", "L1.v.5", "L0.mlp_out.h1.2", "L0.bogus.1", "Lx.q.h0.0", ""):
        with pytest.raises(ValueError, match="not a model node label") as e:
            nl.index(bad)
        assert repr(bad) in str(e.value)
    with pytest.raises(ValueError, match="not a node of this model"):
        nl.index(f"L{model.cfg.n_layer}.mlp_out.0")


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.3, 1.0])
def test_graph_edges_agree_with_count_edges(setup, pruned, frac):
    model, tok, _, _, answers = setup
    for c in [make_circuit(model, frac), pruned]:
        g = cgraph.circuit_graph(model, c, answers, tok)
        assert cgraph.edge_counts(g) == count_edges(model, c.nodes, answers)
        assert cgraph.edge_counts(cgraph.circuit_graph(model, c)) == count_edges(model, c.nodes)
        kept = set(c.node_labels(model))
        assert {k for k, v in g["nodes"].items() if v["kind"] == "node"} == kept
        for e in g["edges"]:
            assert e.weight != 0
            assert e.src in kept or e.kind == "embed"
            assert e.dst in kept or e.kind == "unembed"


@torch.no_grad()
def test_graph_weights_are_the_actual_weights(setup):
    model, tok, _, _, answers = setup
    c = make_circuit(model, 0.5)
    g = cgraph.circuit_graph(model, c, answers, tok)
    nodes = g["nodes"]
    kinds = {e.kind for e in g["edges"]}
    assert {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "residual", "embed", "unembed"} <= kinds
    for e in g["edges"]:
        s, d = nodes[e.src], nodes[e.dst]
        if e.kind == "W_in":
            assert e.weight == pytest.approx(
                float(model.blocks[d["layer"]].mlp.W_in.weight[d["channel"], s["channel"]])
            )
        elif e.kind == "W_O":
            assert e.weight == pytest.approx(
                float(model.blocks[d["layer"]].attn.W_O.weight[d["channel"], s["channel"]])
            )
        elif e.kind == "residual":
            norm = model.blocks[d["layer"]].ln1 if d["site"] == "attn_in" else model.blocks[d["layer"]].ln2
            assert s["channel"] == d["channel"] and e.weight == pytest.approx(float(norm.weight[d["channel"]]))
        elif e.kind == "unembed":
            ref = model.unembed.weight[d["channel"], s["channel"]] * model.ln_final.weight[s["channel"]]
            assert e.weight == pytest.approx(float(ref))
        elif e.kind == "qk":
            assert (s["site"], d["site"], s["channel"]) == ("k", "q", d["channel"])


def test_layout_is_in_forward_order(setup):
    model, tok, _, _, answers = setup
    g = cgraph.circuit_graph(model, make_circuit(model, 0.3), answers, tok)
    pos = graph_layout.layout(g)
    assert set(pos) == set(g["nodes"])
    for e in g["edges"]:
        (_, ys), (_, yd) = pos[e.src], pos[e.dst]
        assert yd == ys if e.kind == "qk" else yd > ys, e
    assert all(0 < x < 1 for x, _ in pos.values())
    names = graph_layout.row_names(model.cfg.n_layer)
    assert names[0] == "embed" and names[-1] == "logits" and len(names) == 2 + 6 * model.cfg.n_layer
    row = lambda site: {v["site"]: pos[k][1] for k, v in g["nodes"].items()}[site]  # noqa: E731
    assert row("embed") < row("attn_in") < row("q") == row("k") == row("v") < row("attn_out") < row("logits")


def test_upstream_and_downstream_are_transitive_closures(setup):
    model, tok, _, _, answers = setup
    g = cgraph.circuit_graph(model, make_circuit(model, 0.3, seed=1), answers, tok)
    adj = cgraph.adjacency(g)
    for s, d in cgraph.flow_edges(g):
        assert s in cgraph.upstream(g, d, adj) and d in cgraph.downstream(g, s, adj)
    some = next(k for k, v in g["nodes"].items() if v["site"] == "attn_in")
    down = cgraph.downstream(g, some, adj)
    for d in list(down)[:10]:
        assert cgraph.downstream(g, d, adj) <= down
    assert some not in down and some not in cgraph.upstream(g, some, adj)
    # a head's q node reaches the attn_out nodes its kept v nodes write to
    links = [(s, d) for s, d in cgraph.flow_edges(g) if g["nodes"][s]["site"] == "q"]
    if links:
        assert links[0][1] in cgraph.downstream(g, links[0][0], adj)
    # a hand-made chain: a -> b -> c
    toy = {
        "nodes": {n: {"kind": "node", "site": "mlp_in", "head": None} for n in "abc"},
        "edges": [cgraph.Edge("a", "b", 1.0, "W_in"), cgraph.Edge("b", "c", -1.0, "W_out")],
    }
    assert cgraph.upstream(toy, "c") == {"a", "b"} and cgraph.downstream(toy, "a") == {"b", "c"}


def test_activation_table_original_vs_pruned(setup):
    model, tok, _, data, _ = setup
    c = make_circuit(model, 0.3)
    nl = NodeLayout(model)
    kept, dropped = c.nodes.nonzero().flatten(), (~c.nodes).nonzero().flatten()
    hook = model.node_hook_names(1)["mlp_neuron"]
    _, cache = model.run_with_cache(data.tokens, names_filter=hook)
    idx = next(int(i) for i in dropped if nl.describe(int(i))[:2] == (1, "mlp_neuron"))
    t = inspection.activation_table(model, c, data, nl.label(idx), tok=tok)
    assert t["original"].shape == t["pruned"].shape == data.tokens.shape
    torch.testing.assert_close(t["original"], cache[hook][..., nl.describe(idx)[2]])
    assert (t["pruned"] == 0).all()  # zero-ablated outside the circuit
    assert t["tokens"][0][0] == "<eos>" and len(t["tokens"][0]) == int(data.last[0]) + 1
    full = Circuit(torch.ones_like(c.nodes), c.tau, {})
    t = inspection.activation_table(model, full, data, int(kept[0]), tok=tok)
    torch.testing.assert_close(t["original"], t["pruned"])


def test_head_patterns_include_the_sink(setup):
    model, tok, _, data, _ = setup
    c = make_circuit(model, 0.3)
    p = compare.head_patterns(model, c, data, 1, 0, tok=tok)
    T = data.tokens.shape[1]
    assert p["original"].shape == p["pruned"].shape == (len(data), 1 + T)
    torch.testing.assert_close(p["original"].sum(-1), torch.ones(len(data)))
    torch.testing.assert_close(p["pruned"].sum(-1), torch.ones(len(data)))
    assert (p["original"][:, 0] > 0).all()  # the sink column is there
    assert ((0 <= p["tv"]) & (p["tv"] <= 1)).all() and p["keys"][0][0] == "<sink>"
    full = Circuit(torch.ones_like(c.nodes), c.tau, {})
    assert compare.head_patterns(model, full, data, 1, 0)["tv_mean"] == pytest.approx(0.0, abs=1e-6)


def test_node_weights_in_and_out(setup):
    model, tok, _, _, answers = setup
    c = make_circuit(model, 0.4)
    g = cgraph.circuit_graph(model, c, answers, tok)
    kept = set(c.node_labels(model))
    for site in ("mlp_neuron", "v", "mlp_out", "attn_in"):
        label = next(k for k, v in g["nodes"].items() if v["site"] == site)
        w = cgraph.node_weights(model, c, label, answers, tok)
        for side in ("incoming", "outgoing"):
            mags = [abs(x["weight"]) for x in w[side]]
            assert mags == sorted(mags, reverse=True) and all(m > 0 for m in mags)
            for x in w[side]:
                assert x["kept"] == (x["node"] in kept or x["kind"] in ("embed", "unembed"))
        # kept entries are exactly the graph's edges at this node (q-k pairs and embeddings aside)
        graph_in = sorted(e.src for e in g["edges"] if e.dst == label and e.kind != "embed")
        assert sorted(x["node"] for x in w["incoming"] if x["kept"] and x["kind"] != "embed") == graph_in
        graph_out = sorted(e.dst for e in g["edges"] if e.src == label and e.kind != "qk")
        assert sorted(x["node"] for x in w["outgoing"] if x["kept"] and x["kind"] != "qk") == graph_out
    neuron = next(k for k, v in g["nodes"].items() if v["site"] == "mlp_neuron")
    info = g["nodes"][neuron]
    row = model.blocks[info["layer"]].mlp.W_in.weight[info["channel"]]
    assert len(cgraph.node_weights(model, c, neuron)["incoming"]) == int((row != 0).sum())


@torch.no_grad()
def test_ablation_effect_matches_pruner_losses(setup):
    model, tok, task, data, _ = setup
    c = make_circuit(model, 0.5)
    nl = NodeLayout(model)
    labels = c.node_labels(model)[:3] + [nl.label(int((~c.nodes).nonzero()[0]))]
    r = evaluate.ablation_effects(model, c, data, labels, task.loss)
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_n=8))
    base = float(pr.losses(c.nodes.float()[None], data, None)[0])
    assert r["circuit_loss"] == pytest.approx(base, abs=1e-5)
    for j, label in enumerate(labels):
        m = c.nodes.float().clone()
        i = nl.index(label)
        m[i] = 1 - m[i]
        ref = float(pr.losses(m[None], data, None)[0])
        assert float(r["toggled_loss"][j]) == pytest.approx(ref, abs=1e-5)
        one = evaluate.ablation_effect(model, c, data, label, task.loss)
        assert one["delta"] == pytest.approx(ref - base, abs=1e-5) and one["removed"] == (j < 3)


def test_bias_like_node_is_constant_in_the_pruned_model(setup):
    model, tok, _, data, _ = setup
    nl = NodeLayout(model)
    w_in = model.blocks[1].mlp.W_in.weight
    j = int((w_in != 0).sum(1).argmax())  # a neuron with inputs
    neuron = nl.sl(1, "mlp_neuron").start + j
    nodes = torch.zeros(nl.n_nodes, dtype=torch.bool)
    nodes[neuron] = True
    alone = Circuit(nodes, nodes.float(), {"ablation": "zero"})
    g = cgraph.circuit_graph(model, alone)
    label = nl.label(neuron)
    assert cgraph.is_bias_like(g, label) and cgraph.bias_like_nodes(g) == {label}
    t = inspection.activation_table(model, alone, data, label)
    vals = torch.cat([t["pruned"][i, : int(t["last"][i]) + 1] for i in range(len(data))])
    assert torch.allclose(vals, vals[0].expand_as(vals))  # no kept inputs: the same value everywhere
    fed = nodes.clone()
    fed[nl.sl(1, "mlp_in").start + int(w_in[j].abs().argmax())] = True
    assert not cgraph.is_bias_like(cgraph.circuit_graph(model, Circuit(fed, fed.float(), {})), label)


def test_top_activating_snippets(setup):
    model, tok, *_ = setup
    label = NodeLayout(model).label(NodeLayout(model).sl(0, "attn_out").start + 3)
    s = inspection.top_activating_snippets(model, tok, label, n=4, n_batches=1, batch_size=4)
    assert len(s["top"]) == len(s["bottom"]) == 4
    tops, bottoms = [x["value"] for x in s["top"]], [x["value"] for x in s["bottom"]]
    assert tops == sorted(tops, reverse=True) and bottoms == sorted(bottoms) and tops[-1] >= bottoms[-1]
    for x in s["top"] + s["bottom"]:
        assert x["acts"][x["at"]] == x["value"] and len(x["tokens"]) == len(x["acts"])


def test_inspector_data_answers_fast_and_agrees(setup):
    model, tok, _, data, _ = setup
    c = make_circuit(model, 0.3)
    corpus = inspection.CorpusActivations.compute(model, tok, n_batches=1, batch_size=4)
    view = insp.InspectorData.build(model, tok, c, data, corpus=corpus)
    q = next(k for k in view.node_labels if ".q." in k)
    for label in (view.node_labels[0], q, view.node_labels[-1]):
        t0 = time.perf_counter()
        p = view.panel(label)
        assert time.perf_counter() - t0 < 1.0
        ref = inspection.activation_table(model, c, data, label, tok=tok)
        torch.testing.assert_close(p["activations"]["pruned"], ref["pruned"])
        assert {"weights", "effect", "bias_like", "snippets"} <= set(p)
    assert p is not None and "head" in view.panel(q)
    direct = compare.head_patterns(model, c, data, view.graph["nodes"][q]["layer"], view.graph["nodes"][q]["head"])
    assert view.panel(q)["head"]["tv_mean"] == pytest.approx(direct["tv_mean"])


def test_html_export_escapes_every_token(setup, tmp_path):
    model, tok, _, data, answers = setup
    bad = ScriptTokenizer(tok, int(data.tokens[0, 1]))  # a prompt token
    bad_answer = ScriptTokenizer(tok, answers[0])  # an answer token: a logit node label
    c = make_circuit(model, 0.3)
    for t in (bad, bad_answer):
        text = circuit_to_html(model, t, c, tmp_path / "c.html", data).read_text()
        assert "<script>alert" not in text and "alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert len(re.findall(r"<script", text)) == 2  # the page's own JSON data and script only
    assert tokens_html(["<b>", "a&b"]).count("&lt;b&gt;") == 1 and "a&amp;b" in tokens_html(["a&b"])
    assert "<" not in json_for_html({"x": "</script><script>"})


def test_html_export_500_nodes_is_small_and_offline(setup, tmp_path):
    model, tok, _, data, _ = setup
    c = make_circuit(model, n=500)
    assert c.n_nodes == 500
    t0 = time.perf_counter()
    path = circuit_to_html(model, tok, c, tmp_path / "big.html", data)
    elapsed = time.perf_counter() - t0
    text = path.read_text()
    assert path.stat().st_size <= 5 * 2**20 and elapsed < 10
    assert "<link" not in text and " src=" not in text and "https://" not in text
    assert text.count("<circle") == len(
        cgraph.circuit_graph(model, c, data.correct.tolist() + data.incorrect.tolist())["nodes"]
    )
    for label in c.node_labels(model)[::50]:
        assert f">{html.escape(label)}</option>" in text


def test_plot_circuit_graph(setup):
    import matplotlib

    matplotlib.use("Agg")
    model, tok, _, _, answers = setup
    g = cgraph.circuit_graph(model, make_circuit(model, 0.1), answers, tok)
    node = next(k for k, v in g["nodes"].items() if v["kind"] == "node")
    ax = plot_circuit_graph(g, highlight=node)
    assert node in ax.get_title() and ax.collections
    matplotlib.pyplot.close(ax.figure)


def _hand_graph(nodes: list[str], edges: list[tuple[str, str, float, str]]) -> dict:
    """A small graph in the shape of ``circuit_graph`` from labels and (src, dst, weight, kind) edges."""
    info = {}
    for k in nodes:
        if k.startswith("logit."):
            info[k] = {"index": -1, "layer": 2, "site": "logits", "channel": 0, "head": None, "kind": "logit"}
        else:
            ref = layout.parse_label(k)
            info[k] = {
                "index": 0,
                "layer": ref.layer,
                "site": ref.site,
                "channel": ref.channel(4),
                "head": ref.head,
                "kind": "node",
            }
    return {
        "nodes": info,
        "edges": [cgraph.Edge(*e) for e in edges],
        "n_layer": 2,
        "d_head": 4,
        "answer_tokens": [7],
    }


def test_one_edge_count_convention(setup, pruned):
    model, tok, _, _, answers = setup
    with_answers = cgraph.edge_counts(cgraph.circuit_graph(model, pruned, answers, tok))
    without = count_edges(model, pruned.nodes)
    assert with_answers["unembed"] > 0 and without["unembed"] == 0
    assert with_answers["total"] == without["total"] == pruned.n_edges  # answers never change the count
    assert without["total"] == without["weights"] + without["qk_pairs"] + without["residual"]
    e = {"weights": 10, "qk_pairs": 2, "residual": 3, "unembed": 4, "total": 15}
    assert cgraph.edge_summary(e, "he/she") == "15 edges (10 weights, 2 q-k pairs, 3 residual) + 4 to he/she"
    assert cgraph.edge_summary({**e, "unembed": 0}) == "15 edges (10 weights, 2 q-k pairs, 3 residual)"


def test_compare_graphs_on_a_hand_made_pair():
    a = _hand_graph(
        ["L0.attn_in.1", "L0.q.h0.1", "L0.mlp_out.2", "logit.x"],
        [
            ("L0.attn_in.1", "L0.q.h0.1", 0.5, "W_Q"),
            ("L0.mlp_out.2", "logit.x", 1.0, "unembed"),
        ],
    )
    b = _hand_graph(
        ["L0.attn_in.1", "L0.q.h0.1", "L1.attn_in.2", "logit.x"],
        [
            ("L0.attn_in.1", "L0.q.h0.1", -0.25, "W_Q"),  # same edge, other weight: still shared
            ("L0.attn_in.1", "L0.q.h0.1", 1.0, "qk"),  # not a real pair: only its (src, dst, kind) matters
        ],
    )
    r = inspection.compare_graphs(a, b)
    assert r["nodes_both"] == ["L0.attn_in.1", "L0.q.h0.1"]
    assert r["nodes_only_a"] == ["L0.mlp_out.2"] and r["nodes_only_b"] == ["L1.attn_in.2"]
    assert r["jaccard"] == pytest.approx(2 / 4)  # logit endpoints are not circuit nodes
    assert r["edges_only_a"] == [] and r["edges_only_b"] == [("L0.attn_in.1", "L0.q.h0.1", "qk")]
    assert r["n_edges_a"] == 1 and r["n_edges_b"] == 2 and r["edge_jaccard"] == pytest.approx(1 / 2)
    assert inspection.compare_graphs(a, a)["jaccard"] == 1.0


def test_view_filter_on_a_hand_made_graph():
    g = _hand_graph(
        ["L0.attn_in.1", "L0.q.h0.1", "L0.mlp_out.2", "L1.attn_in.2"],
        [
            ("L0.attn_in.1", "L0.q.h0.1", 0.5, "W_Q"),
            ("L0.mlp_out.2", "L1.attn_in.2", -0.1, "residual"),
        ],
    )
    assert graph_layout.visible(g) == (list(g["nodes"]), [0, 1])
    assert graph_layout.visible(g, "attn_in") == (["L0.attn_in.1", "L1.attn_in.2"], [])
    assert graph_layout.visible(g, "layer=0 site=q") == (["L0.q.h0.1"], [])
    assert graph_layout.visible(g, threshold=0.2)[1] == [0]
    up = graph_layout.visible(g, scope="upstream", selected="L1.attn_in.2")
    assert up == (["L0.mlp_out.2", "L1.attn_in.2"], [1])
    with pytest.raises(ValueError, match="scope 'sideways'"):
        graph_layout.visible(g, scope="sideways")


def test_json_and_graphml_exports(setup, tmp_path):
    import json
    import xml.etree.ElementTree as ET

    from sparse_circuits.viz import graph_widget as gw

    model, tok, _, _, answers = setup
    g = cgraph.circuit_graph(model, make_circuit(model, 0.2), answers, tok)
    node = next(iter(g["nodes"]))
    back, sel = gw.graph_from_json(json.loads(gw.export_view(g, tmp_path / "g.json", node).read_text()))
    assert back == g and sel == node  # nodes, edges with weights and the selection round-trip
    root = ET.parse(gw.export_view(g, tmp_path / "g.graphml", node)).getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == len(g["nodes"])
    edges = root.findall(".//g:edge", ns)
    assert len(edges) == len(g["edges"])
    weight = edges[0].find("g:data[@key='edge_weight']", ns).text
    assert float(weight) == g["edges"][0].weight and edges[0].get("source") == g["edges"][0].src
    chosen = [
        n.get("id") for n in root.findall(".//g:node", ns) if n.find("g:data[@key='node_selected']", ns).text == "true"
    ]
    assert chosen == [node]
    with pytest.raises(ValueError, match="suffix must be one of"):
        gw.export_view(g, tmp_path / "g.pdf")


def test_html_page_zooms_opens_on_a_node_and_rounds(setup, tmp_path):
    model, tok, _, data, _ = setup
    c = make_circuit(model, n=30)
    c.meta["loss"] = 0.123456789
    target = c.node_labels(model)[7]
    text = circuit_to_html(model, tok, c, tmp_path / "p.html", data, initial_node=target).read_text()
    assert "function scZoomPan" in text and 'id="sc-reset"' in text and '"wheel"' in text  # zoom and pan
    assert 'id="sc-scope"' in text and "up- and downstream" in text  # the up/downstream filter
    payload = json.loads(re.search(r'id="sc-data">(.*?)</script>', text).group(1))
    assert payload["labels"][payload["first"]] == target and payload["label_limit"] == 60
    assert "loss on the pruning set 0.123" in text and "shown prompts" in text  # both losses, labelled
    assert "0.1234" not in text
    weights = re.findall(r'<td style="color:#[0-9a-f]+">([^<]+)</td>', text)
    assert weights and all(len(w.lstrip("+-").replace(".", "").lstrip("0")) <= 3 or "e" in w for w in weights)
    assert "width:100%" in text and "resize:vertical" in text  # scales with the window
    with pytest.raises(ValueError, match="initial_node 'L9.bogus'"):
        circuit_to_html(model, tok, c, tmp_path / "q.html", data, initial_node="L9.bogus")
