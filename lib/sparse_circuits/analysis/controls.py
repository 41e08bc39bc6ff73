"""Controls for pruned circuits (docs/method.md, Faithfulness experiments) and helpers of the nonsense-task comparison (D1).

- ``randomize_weights``: the random-weights control. A copy of a model whose weight matrices are redrawn at random
  on the *same* sparsity pattern; pruning it exactly like the trained model shows how much a node mask alone can
  do (masks on random weights can "train" a network: Zhou et al. 2019, Ramanujan et al. 2020).
- ``relaxation_masks`` / ``mask_relaxation``: turn a random fraction of a circuit's ablated nodes back on. A circuit
  that is a faithful part of the model gets no worse when more of the model returns; one that relies on the
  ablated state (e.g. cancellation between kept and ablated nodes) gets worse.
- ``single_node_importance`` / ``top_k_share`` / ``node_activation_stats``: the loss increase when each node alone
  is ablated in the full model, the share of the top-k such nodes that a circuit contains (Drori found low shares),
  and whether those nodes look "bias-like" (dense, nearly constant activations).
- ``size_at_loss`` / ``frontier_size``: the smallest node count at which a loss curve reaches a loss, for reading
  circuit sizes at any target (e.g. Drori's stricter CE < 0.05) off ``pareto_sweep`` curves.

Every function that evaluates masks goes through ``Faithfulness.loss`` (batches of masks, one forward pass per
chunk), never a Python loop of forward passes per node.
"""

from __future__ import annotations

import copy
import math

import torch

from ..circuits.evaluate import toggled_losses
from ..circuits.layout import NodeLayout
from ..core.seeds import derived_seed
from ..model.gpt import SparseGPT
from ..tasks import TaskData

RELAX_FRACTIONS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
RANDOM_SCALES = ("init", "matched")


# ------------------------------------------------------------------------------------- random weights


@torch.no_grad()
def randomize_weights(model: SparseGPT, seed: int = 0, scale: str = "init") -> SparseGPT:
    """A copy of ``model`` with random weights on the same sparsity pattern.

    Re-initialized: every sparsified weight matrix (token embedding, unembedding, W_Q, W_K, W_V, W_O, W_in, W_out,
    and the positional embedding if any) gets fresh values from the model's own initialization (``SparseGPT``
    built under ``seed``), then its entries that are zero in ``model`` are set to zero, so the pattern is
    identical. Biases and attention-sink logits are reset to their initial value 0, norm weights to 1, a bigram
    table to 0: nothing trained survives except which weights are nonzero.

    scale: "init" keeps the initialization's scale (std 0.02, W_O and W_out 0.02 / sqrt(2 n_layer)); "matched"
    rescales each matrix so the RMS of its nonzero entries equals the trained matrix's (same magnitudes, random
    values and signs), the stronger control since trained sparse weights are much larger than at init.
    """
    if scale not in RANDOM_SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {list(RANDOM_SCALES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed("random-weights", seed) % 2**63)
        fresh = SparseGPT(copy.deepcopy(model.cfg))
    fresh.to(next(model.parameters()).device)
    fresh.corpus = model.corpus  # the same training text, for ablation values
    trained = model.sparsifiable_weights()
    for name, (w, _) in fresh.sparsifiable_weights().items():
        ref = trained[name][0]
        keep = ref != 0
        w.mul_(keep.to(w.dtype))
        if scale == "matched" and keep.any():
            rms_ref = ref[keep].float().pow(2).mean().sqrt()
            rms_new = w[keep].float().pow(2).mean().sqrt()
            if rms_new > 0:
                w.mul_((rms_ref / rms_new).to(w.dtype))
    fresh.eval()
    for p in fresh.parameters():
        p.requires_grad_(False)
    return fresh


def same_sparsity_pattern(a: SparseGPT, b: SparseGPT) -> bool:
    """True when every sparsified weight matrix of ``a`` and ``b`` is zero at exactly the same entries."""
    wa, wb = a.sparsifiable_weights(), b.sparsifiable_weights()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k][0] != 0, wb[k][0] != 0) for k in wa)


# ------------------------------------------------------------------------------------ mask relaxation


def relaxation_masks(
    nodes: torch.Tensor, fractions=RELAX_FRACTIONS, n_draws: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks that keep the circuit plus a random fraction r of its ablated nodes.

    Returns (masks [len(fractions) * n_draws, N] float, turned_on [same] long), rows ordered fraction-major.
    Draw d ranks the ablated nodes by one random permutation (seeded by (seed, d)) and turns on its first
    round(r * n_ablated) for every r, so within a draw the sets are nested: r = 0 is the circuit, r = 1 the model.
    """
    nodes = nodes.bool().cpu()
    off = (~nodes).nonzero().flatten()
    fr = torch.as_tensor(list(fractions), dtype=torch.float64)
    if ((fr < 0) | (fr > 1)).any():
        raise ValueError(f"fractions must lie in [0, 1], got {fr.tolist()}")
    counts = (fr * len(off)).round().long()
    perms = [
        off[torch.randperm(len(off), generator=torch.Generator().manual_seed(derived_seed("relax", seed, d) % 2**63))]
        for d in range(n_draws)
    ]
    masks, turned = [], []
    for k in counts.tolist():
        for perm in perms:
            m = nodes.float().clone()
            m[perm[:k]] = 1.0
            masks.append(m)
            turned.append(k)
    return torch.stack(masks), torch.tensor(turned)


def mask_relaxation(fa, nodes: torch.Tensor, fractions=RELAX_FRACTIONS, n_draws: int = 8, seed: int = 0) -> dict:
    """Task loss (``fa``: a ``Faithfulness``) of the circuit with a random fraction r of its ablated nodes restored.

    Returns fractions, turned_on [R], losses [R][D], mean / min / max over draws [R], the circuit's and the
    model's loss, and ``excess``: the largest mean loss at any r above the worse of the two endpoints (> 0 means
    restoring part of the model makes the circuit worse than both the circuit and the model: not smooth).
    """
    masks, turned = relaxation_masks(nodes, fractions, n_draws, seed)
    R = len(list(fractions))
    losses = fa.loss(masks).view(R, n_draws)
    mean = losses.mean(1)
    l_circuit = float(fa.loss(nodes.float()[None])[0])
    l_model = float(fa.loss(torch.ones(1, len(nodes)))[0])
    return {
        "fractions": [float(f) for f in fractions],
        "turned_on": turned.view(R, n_draws)[:, 0].tolist(),
        "n_draws": n_draws,
        "losses": losses.tolist(),
        "mean": mean.tolist(),
        "min": losses.min(1).values.tolist(),
        "max": losses.max(1).values.tolist(),
        "circuit_loss": l_circuit,
        "model_loss": l_model,
        "excess": float(mean.max()) - max(l_circuit, l_model),
    }


# ------------------------------------------------------------------------------------ node importance


def single_node_importance(fa, nodes: torch.Tensor | None = None, chunk: int = 256) -> dict:
    """Loss increase when each node alone is ablated in the full model (every other node kept).

    ``nodes``: indices to evaluate (default: all N). The model's loss is scored on its own, then the masks go
    through ``fa.loss`` ``chunk`` at a time (``toggled_losses`` from the all-ones mask).
    Returns {"model_loss", "index" [M], "delta" [M] (loss with the node ablated minus the model's loss)}.
    """
    index = torch.arange(fa.n_nodes) if nodes is None else nodes
    r = toggled_losses(fa.loss, torch.ones(fa.n_nodes), index, base_apart=True, chunk=chunk)
    return {"model_loss": r["base_loss"], "index": r["index"], "delta": r["delta"]}


def top_k_share(
    delta: torch.Tensor, circuit_nodes: torch.Tensor, k: int = 20, index: torch.Tensor | None = None
) -> dict:
    """The k nodes of largest importance ``delta`` (ties by index) and the share of them inside the circuit.

    Against a size-matched random baseline: a circuit of n of the N nodes drawn at random holds a share n / N of
    the top k on average (``random_share``); ``p_random`` is the chance (hypergeometric upper tail) that such a
    random circuit holds at least as many of them as this one does. A small share can still be far above chance
    when the circuit is a small part of the model.
    """
    index = torch.arange(len(delta)) if index is None else index
    order = torch.argsort(-delta, stable=True)[:k]
    top = index[order]
    mask = circuit_nodes.bool().cpu()
    inside = mask[top]
    n_total, n_circuit, hits = int(mask.numel()), int(mask.sum()), int(inside.sum())
    return {
        "top": top.tolist(),
        "delta": delta[order].tolist(),
        "in_circuit": inside.tolist(),
        "share": float(inside.float().mean()) if len(top) else float("nan"),
        "random_share": n_circuit / n_total if n_total else float("nan"),
        "p_random": hypergeometric_tail(hits, n_total, n_circuit, len(top)),
    }


def hypergeometric_tail(hits: int, population: int, successes: int, draws: int) -> float:
    """P(X >= hits) for X ~ Hypergeometric(population, successes, draws): drawing ``draws`` of ``population``
    items without replacement, ``successes`` of which count."""
    total = math.comb(population, draws)
    upper = min(successes, draws)
    tail = sum(math.comb(successes, x) * math.comb(population - successes, draws - x) for x in range(hits, upper + 1))
    return tail / total if total else float("nan")


@torch.no_grad()
def node_activation_stats(
    model: SparseGPT, data: TaskData, indices, density_min: float = 0.9, constancy_min: float = 0.8
) -> dict:
    """Per node (in the unpruned model, over every real token of the prompts): ``density`` (fraction of tokens where
    it is nonzero), ``constancy`` = |mean| / RMS (1: the same value everywhere, like a bias; 0: zero mean), and
    ``bias_like`` = density >= density_min and constancy >= constancy_min (Drori's suspected "keeping activations
    on-distribution" nodes: dense and nearly constant)."""
    layout = NodeLayout(model)
    indices = [int(i) for i in indices]
    names = sorted({layout.hook_of(i) for i in indices})
    _, cache = model.run_with_cache(data.tokens, names_filter=names)
    valid = (torch.arange(data.tokens.shape[1])[None] <= data.last[:, None].cpu()).flatten()
    density, constancy = [], []
    for i in indices:
        acts = cache[layout.hook_of(i)]
        x = acts.flatten(2).flatten(0, 1)[valid.to(acts.device), layout.describe(i)[2]].float()
        rms = float(x.pow(2).mean().sqrt())
        density.append(float((x != 0).float().mean()))
        constancy.append(abs(float(x.mean())) / rms if rms > 0 else 0.0)
    bias_like = [d >= density_min and c >= constancy_min for d, c in zip(density, constancy)]
    return {
        "index": indices,
        "label": [layout.label(i) for i in indices],
        "density": density,
        "constancy": constancy,
        "bias_like": bias_like,
    }


# ------------------------------------------------------------------------------------ loss-curve sizes


def size_at_loss(grid, curve, target: float) -> int | None:
    """The smallest node count of ``grid`` whose loss in ``curve`` is <= target (None if none is)."""
    for n, loss in zip(grid, curve):
        if loss <= target and math.isfinite(loss):
            return int(n)
    return None


def frontier_size(sweep: dict, target: float) -> int | None:
    """``size_at_loss`` on a ``pareto_sweep`` result's frontier (lowest loss over its runs at each grid count)."""
    return size_at_loss(sweep["grid"], sweep["frontier"], target)


def smallest_circuit(sweep: dict, target: float):
    """(circuit, reached) of a ``pareto_sweep`` result: its smallest circuit with loss <= target, from the runs'
    discretization or from their loss curves on the grid (the loss is not monotone in the node count, so either
    can be smaller); if none reaches the target, the run of lowest discretized loss and False."""
    best = (None, None)  # (nodes, circuit)
    for c in sweep["circuits"]:
        if c.meta["reached_target"] and c.meta["loss"] <= target and (best[0] is None or c.n_nodes < best[0]):
            best = (c.n_nodes, c)
    for c, curve in zip(sweep["circuits"], sweep["curves"]):
        n = size_at_loss(sweep["grid"], curve, target)
        if n is not None and (best[0] is None or n < best[0]):
            best = (n, c.at_count(n))
    if best[1] is not None:
        return best[1], True
    return min(sweep["circuits"], key=lambda c: c.meta["loss"]), False


def size_ratio(num: int | None, den: int | None) -> float | None:
    """num / den when both sizes exist, else None."""
    return num / den if num and den else None
