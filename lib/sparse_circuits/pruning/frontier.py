"""Circuit size against task loss (Gao Fig. 2, Drori's Pareto plots), and necessity / sufficiency (C4).

``pareto_sweep`` prunes one (model, task, ablation) for every (k_coef, seed) pair in a single batched run,
then evaluates each run's node ranking at a grid of node counts on the fixed evaluation prompts: the lower
envelope over runs is the loss-vs-size frontier, and each run's discretized circuit gives the size at the
target loss.
"""

from __future__ import annotations

import math

import torch

from ..circuits.circuit import Circuit
from .pruner import PruneConfig, Pruner, prune


def count_grid(n_nodes: int, points: int = 16) -> torch.Tensor:
    return torch.logspace(0, math.log10(n_nodes), points).round().long().unique()


def pareto_sweep(
    model,
    tokenizer,
    task,
    ablation: str,
    k_coefs: list[float],
    n_seeds: int = 2,
    grid_points: int = 16,
    progress: bool = False,
    model_name: str | None = None,
    **prune_kw,
) -> dict:
    """Prune for every (k_coef, seed) at once; returns the runs' circuits, loss curves and the frontier."""
    cfg = PruneConfig(ablation=ablation, **prune_kw)
    pruner = Pruner(model, tokenizer, task, cfg)
    k_list = [k for k in k_coefs for _ in range(n_seeds)]
    seeds = [s for _ in k_coefs for s in range(n_seeds)]
    circuits = prune(
        model,
        tokenizer,
        task,
        cfg,
        seeds=seeds,
        k_coefs=k_list,
        pruner=pruner,
        progress=progress,
        model_name=model_name,
    )
    grid = count_grid(pruner.n_nodes, grid_points)
    taus = torch.stack([c.tau for c in circuits]).to(pruner.device)
    S, G = len(circuits), len(grid)
    curves = pruner.loss_at_counts(taus.repeat_interleave(G, 0), grid.repeat(S)).view(S, G).cpu()
    reached = [c for c in circuits if c.meta["reached_target"]]
    best = min(reached, key=lambda c: c.n_nodes) if reached else None
    return {
        "task": task.name,
        "ablation": ablation,
        "total_nodes": pruner.n_nodes,
        "target_loss": cfg.target_loss,
        "k_coefs": k_list,
        "seeds": seeds,
        "grid": grid.tolist(),
        "curves": curves.tolist(),
        "frontier": curves.min(0).values.tolist(),
        "nodes": [c.n_nodes for c in circuits],
        "edges": [c.n_edges for c in circuits],
        "reached": [c.meta["reached_target"] for c in circuits],
        "best_nodes": best.n_nodes if best else None,
        "best_edges": best.n_edges if best else None,
        "circuits": circuits,
        "pruner": pruner,
        "best": best,
    }


@torch.no_grad()
def necessity_sufficiency(pruner: Pruner, circuit: Circuit, split: str = "test", n: int = 256) -> dict:
    """Task loss with: every node (the model), only the circuit (complement ablated: sufficiency), everything
    but the circuit (circuit ablated: necessity), and nothing (all ablated), on held-out prompts; under
    "p_correct" the same four as binary P_correct (the correct answer's probability against the incorrect one's:
    0.5 is chance, whatever the rest of the vocabulary does)."""
    data = pruner.task.data(split, pruner.tok, n)
    keep = circuit.nodes.float()
    masks = {
        "model": torch.ones_like(keep),
        "circuit_only": keep,
        "circuit_ablated": 1 - keep,
        "all_ablated": torch.zeros_like(keep),
    }
    stacked = torch.stack(list(masks.values()))
    # one mask per pass, each with the resample values of seed 0
    losses, p_correct = (
        pruner.evaluator.run(stacked, data, measure, seeds=[0] * len(masks), chunk=1, mean=True)
        for measure in ("loss", "p_correct")
    )
    return {name: float(loss) for name, loss in zip(masks, losses)} | {
        "p_correct": {name: float(p) for name, p in zip(masks, p_correct)}
    }
