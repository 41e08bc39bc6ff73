import re

import pytest
import torch
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.circuits.masking import NodeLayout
from sparse_circuits.model.inference import load
from sparse_circuits.tasks import get_task

pytest.importorskip("ipywidgets")
from sparse_circuits.viz.widgets import CircuitInspector  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


def circuit(model, frac: float, seed: int, **meta) -> Circuit:
    """A random node mask whose logits rank exactly its nodes first (so at_count(n_nodes) gives it back)."""
    N = NodeLayout(model).n_nodes
    score = torch.rand(N, generator=torch.Generator().manual_seed(seed))
    nodes = score < frac
    return Circuit(nodes, torch.where(nodes, 1.0 + score, -score), {"task": "pronoun", "ablation": "zero", **meta})


class ScriptTokenizer:
    """The real tokenizer, except that one token's string is an HTML tag."""

    def __init__(self, tok, token_id: int) -> None:
        self._tok, self._id = tok, token_id

    def id_to_token(self, i: int):
        return "<script>alert(1)</script>" if i == self._id else self._tok.id_to_token(i)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module")
def inspector(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    circuits = {"seed 0": circuit(model, 0.2, 0), "seed 1 (mean)": circuit(model, 0.1, 1, ablation="mean")}
    w = CircuitInspector(
        {"tiny": (model, tok)},
        circuits,
        tasks=["pronoun", "nonsense"],
        n_prompts=6,
        snippet_batches=1,
        snippet_batch_size=4,
    )
    return w, model, tok, circuits


def test_initial_state_shows_the_first_circuit(inspector):
    w, model, _, circuits = inspector
    c = circuits["seed 0"]
    assert w.circuit.value == "seed 0" and w.k.value == c.n_nodes and w.task.value == "pronoun"
    assert f"<b>{c.n_nodes} nodes</b>" in w.summary.value
    assert list(w.node.options) == c.node_labels(model)
    assert w.graph.graph is w.view.graph and len(w.graph.data["nodes"]) == len(w.view.graph["nodes"])
    assert len(w.graph.shown_nodes) == len(w.view.graph["nodes"])  # nothing filtered yet
    assert w.node.value in w.node_panel.value and w.graph.selected == w.node.value


def test_selecting_a_head_node_shows_its_patterns_and_tv(inspector):
    w, *_ = inspector
    q = next(x for x in w.node.options if ".q." in x or ".v." in x)
    w.node.value = q
    panel = w.node_panel.value
    assert q in panel and "TV =" in panel and "&lt;sink&gt;" in panel
    assert "original model" in panel and "pruned model" in panel and "incoming" in panel
    tv = float(re.search(r"TV = ([0-9.]+) \(mean", panel).group(1))
    layer, head = int(q[1]), int(q.split(".")[2][1:])
    assert tv == pytest.approx(w.view.head_patterns(layer, head)["tv_mean"], abs=1e-3)
    ids = [n["id"] for n in w.graph.data["nodes"]]
    assert w.graph.selected == q and ids.index(q) in w.graph.lit  # the selected node is lit in the graph


def test_selecting_a_node_shows_activations_weights_effect_and_snippets(inspector):
    w, *_ = inspector
    label = next(x for x in w.node.options if "mlp_neuron" in x)
    w.node.value = label
    p = w.node_panel.value
    assert f"<h3>{label}</h3>" in p and "Loss on the shown prompts" in p and "corpus snippets" in p
    assert ("bias-like" in p) == w.view.panel(label)["bias_like"]


def test_changing_k_changes_the_node_count(inspector):
    w, *_ = inspector
    w.k.value = 10
    assert "<b>10 nodes</b>" in w.summary.value and len(w.node.options) == 10
    w.k.value = 25
    assert "<b>25 nodes</b>" in w.summary.value and len(w.node.options) == 25


def test_changing_circuit_task_and_prompts(inspector):
    w, _, _, circuits = inspector
    w.circuit.value = "seed 1 (mean)"
    c = circuits["seed 1 (mean)"]
    assert w.k.value == c.n_nodes and f"<b>{c.n_nodes} nodes</b>" in w.summary.value
    assert "ablation: mean" in w.summary.value and w.view.ablation is not None
    w.task.value = "nonsense"
    w.split.value = "val"
    w.n_prompts.value = 3
    assert len(w.view.data) == 3 and "3 prompts" in w.summary.value and "3 shown prompts" in w.summary.value
    assert w.view.data.texts == get_task("nonsense").data("val", w.models["tiny"][1], 3).texts


def test_tokens_are_escaped_in_the_widget(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    data = get_task("pronoun").data("test", tok, 2)
    bad = ScriptTokenizer(tok, int(data.tokens[0, 1]))
    w = CircuitInspector(
        {"tiny": (model, bad)}, {"c": circuit(model, 0.2, 0)}, n_prompts=2, snippet_batches=1, snippet_batch_size=2
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in w.node_panel.value and "<script" not in w.node_panel.value


def test_circuits_of_another_architecture_are_not_offered(inspector):
    w, model, tok, circuits = inspector
    wrong = Circuit(torch.ones(7, dtype=torch.bool), torch.ones(7), {"task": "pronoun"})
    w2 = CircuitInspector(
        {"tiny": (model, tok)}, {**circuits, "wrong": wrong}, snippet_batches=1, snippet_batch_size=2, n_prompts=2
    )
    assert "wrong" not in w2.circuit.options


def test_saved_notebooks_get_a_static_graph_besides_the_live_view(inspector):
    from IPython.core.interactiveshell import InteractiveShell
    from sparse_circuits.viz.graph_plot import graph_svg
    from sparse_circuits.viz.html import summary_html
    from sparse_circuits.viz.widgets import STATIC_HINT

    w, *_ = inspector
    data, _ = InteractiveShell.instance().display_formatter.format(w)  # what a notebook stores for the cell
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id  # live view kept
    static = data["text/html"]
    svg = graph_svg(w.view.graph, w.view.positions, adj=w.view.adj, max_edges=w.max_edges)
    assert static == summary_html(w.view) + svg + f"<p><i>{STATIC_HINT}</i></p>"
    assert static.count("<circle") == len(w.view.graph["nodes"]) and "live kernel" in static


def test_static_view_without_a_fitting_circuit_says_why(tiny_model_dir):
    model, tok, _ = load(tiny_model_dir)
    wrong = Circuit(torch.ones(7, dtype=torch.bool), torch.ones(7), {"task": "pronoun"})
    w = CircuitInspector({"tiny": (model, tok)}, {"wrong": wrong}, snippet_batches=1, snippet_batch_size=2)
    html = w._repr_mimebundle_()["text/html"]
    assert "no circuit fits model" in html and "<svg" not in html and "live kernel" in html


def test_clicking_a_node_shows_its_panel(inspector):
    w, *_ = inspector
    w.circuit.value = "seed 0"
    first, other = w.node.options[0], w.node.options[-1]
    w.node.value = first
    w.graph.selected = other  # what a click in the browser does
    assert w.node.value == other and f"<h3>{other}</h3>" in w.node_panel.value
    logit = next(k for k, v in w.view.graph["nodes"].items() if v["kind"] == "logit")
    w.graph.selected = logit  # an endpoint, not in the node list: a short panel
    assert f"<h3>{logit}</h3>" in w.node_panel.value.replace("&#x27;", "'") and w.node.value == other
    w.node.value = first  # and the dropdown moves the graph's selection
    assert w.graph.selected == first


def test_search_threshold_and_scope_change_what_the_graph_shows(inspector):
    w, *_ = inspector
    w.circuit.value = "seed 0"
    g = w.view.graph
    all_nodes, all_edges = len(w.graph.shown_nodes), len(w.graph.shown_edges)
    assert all_nodes == len(g["nodes"]) and all_edges == len(g["edges"])
    w.search.value = "mlp_neuron"
    shown = [w.graph.data["nodes"][i]["id"] for i in w.graph.shown_nodes]
    assert shown and all("mlp_neuron" in k for k in shown) and len(shown) < all_nodes
    w.search.value = "layer=0 site=attn_in"
    shown = [w.graph.data["nodes"][i]["id"] for i in w.graph.shown_nodes]
    assert shown == [k for k, v in g["nodes"].items() if v["layer"] == 0 and v["site"] == "attn_in"]
    w.search.value = ""
    weights = sorted(abs(e.weight) for e in g["edges"])
    w.threshold.value = weights[len(weights) // 2]
    kept = [g["edges"][i] for i in w.graph.shown()[1]]
    assert 0 < len(kept) < all_edges and all(abs(e.weight) >= w.threshold.value for e in kept)
    assert len(w.graph.shown_edges) == len(kept)
    w.threshold.value = 0.0
    w.scope.value = "upstream"
    nodes, _ = w.graph.shown()
    up = w.view.panel(w.node.value, snippets=False)["n_upstream"]
    assert len(nodes) == up + 1 and w.node.value in nodes
    w.scope.value = "all"
    assert len(w.graph.shown_nodes) == all_nodes


def test_export_writes_the_view(inspector, tmp_path):
    import json
    import xml.etree.ElementTree as ET

    w, *_ = inspector
    w.circuit.value = "seed 0"
    w.search.value = "L1"
    nodes, edges = w.graph.shown()
    data = json.loads(w.export(tmp_path / "v.json").read_text())
    assert [n["label"] for n in data["nodes"]] == nodes and len(data["edges"]) == len(edges)
    assert data["selected"] == w.node.value
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    root = ET.parse(w.export(tmp_path / "v.graphml")).getroot()
    assert len(root.findall(".//g:node", ns)) == len(nodes) and len(root.findall(".//g:edge", ns)) == len(edges)
    assert w.export(tmp_path / "v.svg").read_text().lstrip().startswith("<?xml")
    assert w.export(tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
    w.export_path.value = str(tmp_path / "v.txt")
    w.export_button.click()
    assert "suffix must be one of" in w.status.value
    w.search.value = ""


def test_compare_view_of_two_circuits(inspector):
    from sparse_circuits.viz.widgets import compare_view

    w, model, tok, circuits = inspector
    a, b = circuits["seed 0"], circuits["seed 1 (mean)"]
    box = compare_view(model, a, b, names=("seed 0", "seed 1"), tok=tok)
    r = box.compare
    la, lb = set(a.node_labels(model)), set(b.node_labels(model))
    assert r["jaccard"] == pytest.approx(len(la & lb) / len(la | lb))
    assert set(r["nodes_only_a"]) == la - lb and set(r["nodes_only_b"]) == lb - la
    ga, gb = box.graphs
    assert len(ga.marked) == len(la - lb) and len(gb.marked) == len(lb - la)
    shared = r["nodes_both"][0]
    ga.selected = shared
    assert gb.selected == shared  # selections are linked
    assert "Jaccard" in box.children[0].value
