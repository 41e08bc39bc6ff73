"""Discretizing a pruned circuit again from its own mask logits, with another search (docs/pruning.md,
"Discretization").

The pruned circuit stores every node's logit tau, so the search that turned the logits into a node count can be
redone without training the masks again: with the circuit's own ``PruneConfig`` it gives back the same circuit;
with ``search_trained_count`` switched it shows how much a result depends on the search (after long runs, logits
tied at the clamp can send the log-spaced search to thousands of nodes).
"""

from __future__ import annotations

from dataclasses import replace

from ..circuits.circuit import Circuit
from ..pruning.pruner import PruneConfig, Pruner


def rediscretize(model, tokenizer, circuit: Circuit, means: dict | None = None, **overrides) -> Circuit:
    """``circuit``'s logits discretized again by ``Pruner.discretize`` with the config it was pruned with and
    ``overrides`` on top (fields of ``PruneConfig``, e.g. ``search_trained_count=True``), on its own task.

    Returns a new Circuit with the same logits and metadata, except the node set and what the search decides
    (``loss``, ``reached_target``, ``full_model_loss`` and any faithfulness checks), ``prune_config`` with the
    overrides, ``rediscretized_from`` (the node count before) and edges recounted. ``means``: node means of this
    model for mean ablation (``Pruner.means``), to skip recomputing them."""
    if "prune_config" not in circuit.meta:
        raise ValueError(
            "the circuit records no prune_config: it was not made by prune(), so it cannot be re-discretized"
        )
    cfg = replace(PruneConfig.from_dict(circuit.meta["prune_config"]), **overrides)
    pruner = Pruner(model, tokenizer, circuit.task(), cfg, means=means)
    if pruner.n_nodes != circuit.total_nodes:
        raise ValueError(f"circuit has {circuit.total_nodes} nodes, model has {pruner.n_nodes}: wrong model?")
    found = pruner.discretize(circuit.tau[None].to(pruner.device))
    out = circuit.at_count(found["n_nodes"][0])
    out.meta.update(
        {key: v[0] for key, v in found.items() if key not in ("n_nodes", "full_loss")},
        full_model_loss=found["full_loss"][0],
        prune_config=cfg.to_dict(),
        rediscretized_from=circuit.n_nodes,
    )
    return out.with_edges(model)
