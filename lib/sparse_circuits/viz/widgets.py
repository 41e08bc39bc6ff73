"""``CircuitInspector``: explore a circuit node by node in Jupyter (ipywidgets).

    from sparse_circuits.viz.widgets import CircuitInspector
    CircuitInspector({"sparse-d128": (model, tok)}, {"pronoun seed 0": circuit}, tasks=["pronoun"])

Controls pick the model, task (whose prompts are shown), circuit, node budget k (``circuit.at_count(k)``),
prompt split and count, and the node; clicking a node of the graph (``graph_widget.GraphWidget``) selects it
too. A search box, an edge-weight threshold and a scope (up/downstream of the selection) filter the graph, and
``export`` writes the view as JSON, GraphML, SVG or PNG. Everything a view needs is computed once per choice
of those (``inspector.InspectorData``, cached), so selecting a node only slices caches and runs one small
forward pass. ``compare_view`` shows two circuits side by side. Widget state is not kept in executed
notebooks, so the widget also offers a static HTML view (the summary and the circuit's graph as SVG) that a
saved notebook shows instead; for papers use ``graph_plot.plot_circuit_graph`` or ``html.circuit_to_html``.
"""

from __future__ import annotations

import time
from pathlib import Path

import ipywidgets as W

from ..analysis.inspection import CorpusActivations, compare_graphs
from ..circuits.ablation import node_means
from ..circuits.graph import circuit_graph
from ..circuits.layout import NodeLayout
from ..model.gpt import SparseGPT
from ..tasks import SPLITS, Task, TaskSpecError, get_task
from .graph_layout import SCOPES
from .graph_plot import esc, graph_svg
from .graph_widget import GraphWidget
from .html import compare_html, node_panel_html, summary_html
from .inspector import InspectorData

STATIC_HINT = "Static view of the circuit inspector: run the notebook with a live kernel to select nodes."


class CircuitInspector(W.VBox):
    """The inspector widget. Its parts are attributes, so code (and tests) can drive it: ``model``,
    ``task``, ``circuit``, ``k``, ``split``, ``n_prompts``, ``node``, ``search``, ``threshold``, ``scope``,
    ``export_path`` (controls), ``graph`` (the clickable ``GraphWidget``; a click sets ``graph.selected``),
    ``summary``, ``node_panel``, ``status`` (HTML outputs); ``view`` is the current InspectorData."""

    def __init__(
        self,
        models: dict[str, tuple],
        circuits: dict[str, object],
        tasks: list[str | Task] | None = None,
        n_prompts: int = 16,
        snippet_batches: int = 2,
        snippet_batch_size: int = 16,
        max_edges: int = 5000,
    ) -> None:
        if not models or not circuits:
            raise ValueError("CircuitInspector needs at least one model and one circuit")
        self.models, self.circuits = dict(models), dict(circuits)
        if tasks:
            self.tasks = {
                t.name if isinstance(t, Task) else t: (t if isinstance(t, Task) else get_task(t)) for t in tasks
            }
        else:  # the circuits' own tasks, from their recorded specs (user tasks need no registry entry)
            recorded = {c.meta["task"]: c for c in circuits.values() if c.meta.get("task")}
            self.tasks = {name: recorded[name].task() for name in sorted(recorded)} or {"pronoun": get_task("pronoun")}
        self.snippet_args = (snippet_batches, snippet_batch_size)
        self.max_edges = max_edges  # the browser draws every shown edge: keep it light
        self._views: dict[tuple, InspectorData] = {}
        self._means: dict[str, dict] = {}
        self._corpus: dict[str, CorpusActivations] = {}
        self._quiet = False  # set while one control updates others, so the view is rebuilt once
        self.view: InspectorData | None = None
        self.last_latency = 0.0

        style = {"description_width": "initial"}
        self.model = W.Dropdown(options=list(self.models), description="model", style=style)
        self.task = W.Dropdown(options=list(self.tasks), description="task prompts", style=style)
        self.circuit = W.Dropdown(options=[], description="circuit", style=style)
        self.k = W.IntSlider(value=1, min=1, max=1, description="nodes k", continuous_update=False, style=style)
        self.split = W.Dropdown(options=list(SPLITS), value="test", description="split", style=style)
        self.n_prompts = W.BoundedIntText(
            value=n_prompts, min=1, max=512, description="prompts", style=style, layout=W.Layout(width="140px")
        )
        self.node = W.Dropdown(options=[], description="node", style=style)
        self.search = W.Text(description="find", placeholder="L1.v.h3  layer=1  site=attn_out", style=style)
        self.threshold = W.FloatSlider(
            value=0.0, min=0.0, max=1.0, step=0.001, description="hide |weight| <", readout_format=".3g", style=style
        )
        self.scope = W.Dropdown(options=[(t, v) for v, t in SCOPES.items()], description="show", style=style)
        self.export_path = W.Text(value="circuit.graphml", description="export to", style=style)
        self.export_button = W.Button(description="export view", tooltip=".json, .graphml, .svg or .png")
        self.graph = GraphWidget(max_edges=max_edges)
        self.summary, self.node_panel, self.status = W.HTML(), W.HTML(), W.HTML()
        super().__init__(
            [
                W.HBox([self.model, self.circuit, self.task]),
                W.HBox([self.k, self.split, self.n_prompts]),
                self.summary,
                W.HBox([self.search, self.threshold, self.scope]),
                self.graph,
                W.HBox([self.node, self.export_path, self.export_button]),
                self.status,
                self.node_panel,
            ]
        )
        for control, trait in ((self.search, "query"), (self.threshold, "threshold"), (self.scope, "scope")):
            W.link((control, "value"), (self.graph, trait))
        self.graph.observe(lambda _: self._on_click(), "selected")
        self.export_button.on_click(lambda _: self._on_export())

        self.model.observe(self._on_model, "value")
        self.circuit.observe(self._on_circuit, "value")
        for w in (self.task, self.k, self.split, self.n_prompts):
            w.observe(lambda _: self._reload(), "value")
        self.node.observe(lambda _: self._show_node(), "value")
        self._on_model()

    # ---- display -----------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widget view plus a static ``text/html`` fallback: front ends with a live kernel render
        the widget, while a saved notebook (no widget state) shows the circuit's summary and graph."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        return {**bundle, "text/html": self.static_html()}

    def static_html(self) -> str:
        """The current circuit as static HTML: its summary, its whole graph as SVG and how to get the live view."""
        hint = f"<p><i>{STATIC_HINT}</i></p>"
        if self.view is None:
            return self.status.value + hint
        svg = graph_svg(self.view.graph, self.view.positions, adj=self.view.adj, max_edges=self.max_edges)
        return summary_html(self.view) + svg + hint

    # ---- controls -----------------------------------------------------------------------------------
    def _on_model(self, _=None) -> None:
        model, _tok = self.models[self.model.value]
        n = NodeLayout(model).n_nodes
        fits = [name for name, c in self.circuits.items() if c.total_nodes == n]  # circuits of this architecture
        self._quiet = True
        try:
            self.circuit.options = fits
            self.circuit.value = fits[0] if fits else None
        finally:
            self._quiet = False
        self._on_circuit()

    def _on_circuit(self, _=None) -> None:
        if self._quiet:
            return
        c = self.circuits.get(self.circuit.value)
        if c is None:
            self._clear(f"no circuit fits model {self.model.value!r}")
            return
        self._quiet = True
        try:
            self.k.max = c.total_nodes
            self.k.value = c.n_nodes
            if c.meta.get("task") in self.tasks:
                self.task.value = c.meta["task"]
        finally:
            self._quiet = False
        self._reload()

    def _clear(self, message: str) -> None:
        self.view = None
        self.node.options = []
        self.summary.value = self.node_panel.value = ""
        self.graph.set_graph({"nodes": {}, "edges": [], "n_layer": 0, "d_head": 0, "answer_tokens": []})
        self.status.value = f"<span style='color:#b2182b'>{esc(message)}</span>"

    # ---- building the view --------------------------------------------------------------------------
    def _current_circuit(self):
        c = self.circuits[self.circuit.value]
        return c if self.k.value == c.n_nodes else c.at_count(self.k.value)

    def _build(self, key: tuple) -> InspectorData:
        model_name, task_name = key[0], key[1]
        model, tok = self.models[model_name]
        circuit = self._current_circuit()
        data = self.tasks[task_name].data(self.split.value, tok, self.n_prompts.value)
        kind = circuit.meta.get("ablation", "zero")
        means = None
        if kind == "mean":
            if model_name not in self._means:
                self._means[model_name] = node_means(model, NodeLayout(model), tok)
            means = self._means[model_name]
        if model_name not in self._corpus:
            self._corpus[model_name] = CorpusActivations.compute(model, tok, *self.snippet_args)
        return InspectorData.build(
            model,
            tok,
            circuit,
            data,
            loss=self.tasks[task_name].loss,
            ablation=kind,
            means=means,
            corpus=self._corpus[model_name],
        )

    def _reload(self) -> None:
        if self._quiet or self.circuit.value is None:
            return
        key = (
            self.model.value,
            self.task.value,
            self.circuit.value,
            self.k.value,
            self.split.value,
            self.n_prompts.value,
        )
        try:
            if key not in self._views:
                self._views[key] = self._build(key)
        except (TaskSpecError, ValueError) as e:  # e.g. a task whose words the model's tokenizer lacks
            self._clear(str(e))
            return
        self.view = self._views[key]
        self.summary.value = summary_html(self.view)
        labels = self.view.node_labels
        keep = self.node.value if self.node.value in labels else (labels[0] if labels else None)
        weights = [abs(e.weight) for e in self.view.graph["edges"]]
        self._quiet = True
        try:
            self.node.options = labels
            self.node.value = keep
            self.threshold.max = max(weights, default=1.0) or 1.0
            self.graph.set_graph(self.view.graph, self.view.positions, self.view.adj, selected=keep or "")
        finally:
            self._quiet = False
        self._show_node()

    def _on_click(self) -> None:
        """A node clicked in the graph (or ``graph.selected`` set): select it as the dropdown does."""
        if self._quiet or self.view is None:
            return
        label = self.graph.selected
        if label in self.node.options and label != self.node.value:
            self.node.value = label  # its observer shows the panel
        else:  # the current node again, or an embedding / logit endpoint (not in the dropdown)
            self._show_label(label)

    def _show_node(self) -> None:
        if self._quiet or self.view is None:
            return
        self._show_label(self.node.value)

    def _show_label(self, label: str | None) -> None:
        """The panel of one graph node (embedding and logit endpoints get a short one) and its selection."""
        t0 = time.perf_counter()
        self._quiet = True
        try:
            self.graph.selected = label or ""
        finally:
            self._quiet = False
        self.node_panel.value = node_panel_html(self.view.panel(label)) if label else ""
        self.last_latency = time.perf_counter() - t0
        self.status.value = f"<small>node view in {1000 * self.last_latency:.0f} ms</small>"

    # ---- export -------------------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the graph as shown (search, threshold and scope applied; the selection marked) to ``path``:
        .json, .graphml, .svg or .png (``graph_widget.export_view``)."""
        return self.graph.export(path)

    def _on_export(self) -> None:
        try:
            self.status.value = f"<small>wrote {esc(self.export(self.export_path.value))}</small>"
        except (ValueError, OSError) as e:
            self.status.value = f"<span style='color:#b2182b'>{esc(e)}</span>"


def compare_view(
    model: SparseGPT,
    circuit_a,
    circuit_b,
    names: tuple[str, str] = ("A", "B"),
    answer_tokens: list[int] | None = None,
    tok=None,
    max_edges: int | None = 5000,
) -> W.VBox:
    """Two circuits of one model side by side: the numbers of ``analysis.inspection.compare_graphs`` (kept-node
    diff, Jaccard of the node sets, edges only in one) above both graphs, the nodes only one keeps ringed.
    Selecting a node in one graph selects it in the other. The result's ``compare`` attribute holds the numbers
    and ``graphs`` the two ``GraphWidget``s."""
    graphs = [circuit_graph(model, c, answer_tokens, tok) for c in (circuit_a, circuit_b)]
    result = compare_graphs(*graphs)
    widgets = [GraphWidget(g, max_edges=max_edges) for g in graphs]
    widgets[0].mark(result["nodes_only_a"])
    widgets[1].mark(result["nodes_only_b"])
    W.link((widgets[0], "selected"), (widgets[1], "selected"))
    heads = [W.HTML(f"<b>{esc(n)}</b>") for n in names]
    box = W.VBox(
        [
            W.HTML(compare_html(result, names)),
            W.HBox([W.VBox([h, g], layout=W.Layout(width="50%")) for h, g in zip(heads, widgets)]),
        ]
    )
    box.compare, box.graphs = result, widgets
    return box
