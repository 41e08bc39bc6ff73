"""Where each node of a circuit graph sits in the layered view: one row per step of the forward pass.

Row 0 is the embedding, then six rows per layer (attn_in, q/k/v side by side, attn_out, mlp_in, mlp_neuron,
mlp_out, in the forward order of ``circuits.graph.site_row``), and the logits last. Within a row nodes are
spread evenly over x in (0, 1).
"""

from __future__ import annotations

from ..circuits.graph import site_row

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
