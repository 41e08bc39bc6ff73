"""Where each node of a circuit graph sits in the layered view (one row per step of the forward pass), and which
nodes and edges a view shows.

Row 0 is the embedding, then six rows per layer (attn_in, q/k/v side by side, attn_out, mlp_in, mlp_neuron,
mlp_out, in the forward order of ``circuits.graph.site_row``), and the logits last. Within a row nodes are
spread evenly over x in (0, 1). ``visible`` filters a view (search query, edge-weight threshold, up/downstream
scope); the widget and the HTML page offer the same scopes.
"""

from __future__ import annotations

from ..circuits.graph import adjacency, downstream, site_row, upstream

# Names of the six rows of a layer; q, k and v share one row (``site_row`` gives them the same step).
ROW_NAMES = ("attn_in", "q/k/v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")
# Order of the head sites within the q/k/v row, so that a head's nodes sit together.
HEAD_SITE_ORDER = {"q": 0, "k": 1, "v": 2}


def row_of(info: dict, n_layer: int) -> int:
    """Row of a node in the layered view: 0 embed, 1 + 6 * layer + site row, last the logits."""
    if info["kind"] == "embed":
        return 0
    if info["kind"] == "logit":
        return 1 + len(ROW_NAMES) * n_layer
    return site_row(info["layer"], info["site"])


def row_names(n_layer: int) -> list[str]:
    """Names of every row of the layered view, bottom (embed) to top (logits)."""
    return ["embed", *(f"L{layer} {name}" for layer in range(n_layer) for name in ROW_NAMES), "logits"]


def layout(graph: dict) -> dict[str, tuple[float, float]]:
    """label -> (x, y): y the forward row (embed 0 ... logits), x in (0, 1) spread evenly within a row.

    In the q/k/v row nodes are grouped by head, then q, k, v, then channel, so a head's nodes sit together.
    """
    rows: dict[int, list[tuple]] = {}
    for label, info in graph["nodes"].items():
        key = (info["head"] if info["head"] is not None else -1, HEAD_SITE_ORDER.get(info["site"], 0), info["channel"])
        rows.setdefault(row_of(info, graph["n_layer"]), []).append((key, label))
    pos = {}
    for y, members in rows.items():
        members.sort()
        for i, (_, label) in enumerate(members):
            pos[label] = ((i + 0.5) / len(members), float(y))
    return pos


# ---------------------------------------------------------------------------------- what a view shows

# A view shows everything, or only what is upstream and/or downstream of the selected node (key: its label).
SCOPES = {"all": "everything", "up+down": "up- and downstream", "upstream": "upstream", "downstream": "downstream"}


def node_matches(label: str, info: dict, query: str) -> bool:
    """True when a node matches every whitespace-separated term of ``query``: ``layer=N``, ``site=NAME`` or
    ``kind=node|embed|logit`` compare with the node's info, any other term is a case-insensitive substring of the
    label (so ``L1.v.h3`` finds head 3's value nodes)."""
    for term in query.lower().split():
        key, eq, value = term.partition("=")
        if eq and key in ("layer", "site", "kind"):
            if str(info[key]).lower() != value:
                return False
        elif term not in label.lower():
            return False
    return True


def visible(
    graph: dict,
    query: str = "",
    threshold: float = 0.0,
    scope: str = "all",
    selected: str | None = None,
    adj: tuple | None = None,
) -> tuple[list[str], list[int]]:
    """(node labels, edge indices) a view shows: nodes that match ``query`` (``node_matches``) and lie in
    ``scope`` of the selected node (``SCOPES``; the selected node itself is always in scope), and the edges
    between shown nodes whose |weight| is at least ``threshold``. Both lists in the graph's order."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {tuple(SCOPES)}")
    keep = {k for k, info in graph["nodes"].items() if node_matches(k, info, query)}
    if scope != "all" and selected in graph["nodes"]:
        adj = adj or adjacency(graph)
        near = {selected}
        if scope in ("up+down", "upstream"):
            near |= upstream(graph, selected, adj)
        if scope in ("up+down", "downstream"):
            near |= downstream(graph, selected, adj)
        keep &= near
    edges = [i for i, e in enumerate(graph["edges"]) if e.src in keep and e.dst in keep and abs(e.weight) >= threshold]
    return [k for k in graph["nodes"] if k in keep], edges


def subgraph(graph: dict, nodes: list[str], edges: list[int]) -> dict:
    """The graph restricted to some nodes and edges (from ``visible``); other keys are kept."""
    return {**graph, "nodes": {k: graph["nodes"][k] for k in nodes}, "edges": [graph["edges"][i] for i in edges]}
