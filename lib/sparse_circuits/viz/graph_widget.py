"""The circuit graph as a clickable notebook widget, what it shows, and exports of that view.

``GraphWidget`` (anywidget) draws a ``circuits.graph.circuit_graph`` as SVG in the browser from the JSON this
side sends; clicking a node sets its ``selected`` trait. Which nodes and edges it shows is decided here, in
Python, by ``graph_layout.visible``: a search query, an edge-weight threshold and a scope (everything, or only what is upstream
and/or downstream of the selected node). Exports write the same view as JSON, GraphML, SVG or PNG
(``export_view``). The browser module is packaged with the library (``static/``): nothing is loaded from the
network.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import anywidget
import traitlets as T

from ..circuits.graph import Edge, adjacency, downstream, upstream
from .graph_layout import SCOPES, layout, row_names, subgraph, visible
from .graph_plot import SITE_COLOURS, drawn_edges, plot_circuit_graph

STATIC = Path(__file__).with_name("static")
# Node labels are drawn when at most this many nodes are shown (beyond, they overlap).
LABEL_LIMIT = 60
EXPORT_FORMATS = ("json", "graphml", "svg", "png")


# ---------------------------------------------------------------------------------------- exports


def graph_json(graph: dict, selected: str | None = None) -> dict:
    """A graph (or a ``subgraph``) as plain JSON data: nodes with their info, edges with weights, the
    selection. ``graph_from_json`` reads it back."""
    return {
        "nodes": [{"label": k, **info} for k, info in graph["nodes"].items()],
        "edges": [e._asdict() for e in graph["edges"]],
        "n_layer": graph["n_layer"],
        "d_head": graph["d_head"],
        "answer_tokens": list(graph["answer_tokens"]),
        "selected": selected,
    }


def graph_from_json(data: dict) -> tuple[dict, str | None]:
    """(graph, selected) back from ``graph_json`` data."""
    nodes = {n["label"]: {k: v for k, v in n.items() if k != "label"} for n in data["nodes"]}
    graph = {
        "nodes": nodes,
        "edges": [Edge(**e) for e in data["edges"]],
        "n_layer": data["n_layer"],
        "d_head": data["d_head"],
        "answer_tokens": data["answer_tokens"],
    }
    return graph, data.get("selected")


def graph_graphml(graph: dict, selected: str | None = None) -> str:
    """A graph as GraphML (directed; node attributes layer, site, channel, head, kind, selected; edge
    attributes weight and kind), for Gephi, Cytoscape or networkx."""
    ns = "http://graphml.graphdrawing.org/xmlns"
    root = ET.Element("graphml", xmlns=ns)
    keys = [("node", "layer", "int"), ("node", "site", "string"), ("node", "channel", "int")]
    keys += [("node", "head", "int"), ("node", "kind", "string"), ("node", "selected", "boolean")]
    keys += [("edge", "weight", "double"), ("edge", "kind", "string")]
    for where, name, kind in keys:
        ET.SubElement(root, "key", {"id": f"{where}_{name}", "for": where, "attr.name": name, "attr.type": kind})
    g = ET.SubElement(root, "graph", id="circuit", edgedefault="directed")

    def data(parent, key: str, value) -> None:
        if value is not None:
            ET.SubElement(parent, "data", key=key).text = str(value).lower() if isinstance(value, bool) else str(value)

    for label, info in graph["nodes"].items():
        n = ET.SubElement(g, "node", id=label)
        for name in ("layer", "site", "channel", "head", "kind"):
            data(n, f"node_{name}", info[name])
        data(n, "node_selected", label == selected)
    for i, e in enumerate(graph["edges"]):
        x = ET.SubElement(g, "edge", id=f"e{i}", source=e.src, target=e.dst)
        data(x, "edge_weight", repr(float(e.weight)))
        data(x, "edge_kind", e.kind)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def export_view(graph: dict, path: str | Path, selected: str | None = None) -> Path:
    """Write a graph (a view's ``subgraph``) to ``path``; its suffix picks the format (``EXPORT_FORMATS``):
    JSON (``graph_json``), GraphML (``graph_graphml``), or the static matplotlib drawing as SVG or PNG."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {path.name!r}: the suffix must be one of {EXPORT_FORMATS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(graph_json(graph, selected), indent=1), encoding="utf-8")
    elif fmt == "graphml":
        path.write_text(graph_graphml(graph, selected), encoding="utf-8")
    else:
        import matplotlib.pyplot as plt

        n_nodes = sum(v["kind"] == "node" for v in graph["nodes"].values())
        ax = plot_circuit_graph(graph, highlight=selected, labels=n_nodes <= LABEL_LIMIT)
        ax.figure.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(ax.figure)
    return path


# ---------------------------------------------------------------------------------------- widget


def view_data(graph: dict, positions: dict | None = None, max_edges: int | None = None) -> dict:
    """What the browser module draws: nodes (label, layout x and row y, colour), edges (endpoint indices,
    weight, kind; only the ``max_edges`` strongest relative to their kind), row names and the label limit."""
    pos = positions or layout(graph)
    index = {k: i for i, k in enumerate(graph["nodes"])}
    nodes = [
        {"id": k, "x": pos[k][0], "y": pos[k][1], "colour": SITE_COLOURS[info["site"]]}
        for k, info in graph["nodes"].items()
    ]
    edges = [
        {"s": index[e.src], "d": index[e.dst], "w": e.weight, "kind": e.kind}
        for e in (graph["edges"][i] for i in drawn_edges(graph, max_edges))
    ]
    return {"nodes": nodes, "edges": edges, "rows": row_names(graph["n_layer"]), "label_limit": LABEL_LIMIT}


class GraphWidget(anywidget.AnyWidget):
    """A circuit graph in the notebook: click a node to select it (``selected``), type in ``query``, raise
    ``threshold`` or narrow ``scope`` to hide nodes and edges (``visible``); ``marked`` nodes get a ring.
    ``shown_nodes``/``shown_edges``/``lit`` are computed here and drawn by the browser module."""

    _esm = (STATIC / "zoom_pan.js").read_text() + "\n" + (STATIC / "graph_widget.js").read_text()
    _css = STATIC / "graph_widget.css"
    data = T.Dict().tag(sync=True)
    selected = T.Unicode("").tag(sync=True)
    query = T.Unicode("").tag(sync=True)
    threshold = T.Float(0.0).tag(sync=True)
    scope = T.Enum(tuple(SCOPES), default_value="all").tag(sync=True)
    shown_nodes = T.List(T.Int()).tag(sync=True)
    shown_edges = T.List(T.Int()).tag(sync=True)
    lit = T.List(T.Int()).tag(sync=True)
    marked = T.List(T.Int()).tag(sync=True)

    def __init__(self, graph: dict | None = None, positions=None, adj=None, max_edges: int | None = 5000, **kw):
        super().__init__(**kw)
        self.max_edges = max_edges
        self.graph: dict | None = None
        self.observe(lambda _: self._refresh(), ["query", "threshold", "scope", "selected"])
        if graph is not None:
            self.set_graph(graph, positions, adj)

    def set_graph(self, graph: dict, positions=None, adj=None, selected: str = "") -> None:
        """Show another graph (the selection is kept when the new graph has that node; marks are cleared)."""
        self.graph, self.adj = graph, adj or adjacency(graph)
        self._drawn = drawn_edges(graph, self.max_edges)  # edge indices of the graph the browser has
        self._index = {k: i for i, k in enumerate(graph["nodes"])}
        keep = selected or (self.selected if self.selected in graph["nodes"] else "")
        with self.hold_trait_notifications():
            self.data = view_data(graph, positions, self.max_edges)
            self.marked = []
        if keep != self.selected:
            self.selected = keep  # its observer refreshes the view
        else:
            self._refresh()

    def shown(self) -> tuple[list[str], list[int]]:
        """(node labels, edge indices into graph["edges"]) of the current view (``visible``)."""
        return visible(self.graph, self.query, self.threshold, self.scope, self.selected or None, self.adj)

    def mark(self, labels) -> None:
        """Ring these nodes (e.g. the nodes only one of two circuits keeps)."""
        self.marked = [self._index[k] for k in labels if k in self._index]

    def _refresh(self) -> None:
        if self.graph is None:
            return
        nodes, edges = self.shown()
        drawn = {k: j for j, k in enumerate(self._drawn)}
        sel = self.selected if self.selected in self.graph["nodes"] else None
        near = {sel} | upstream(self.graph, sel, self.adj) | downstream(self.graph, sel, self.adj) if sel else set()
        with self.hold_trait_notifications():
            self.shown_nodes = [self._index[k] for k in nodes]
            self.shown_edges = [drawn[i] for i in edges if i in drawn]
            self.lit = sorted(self._index[k] for k in near)

    def export(self, path: str | Path) -> Path:
        """Write the current view (shown nodes and edges, the selection) to ``path`` (``export_view``)."""
        return export_view(subgraph(self.graph, *self.shown()), path, self.selected or None)
