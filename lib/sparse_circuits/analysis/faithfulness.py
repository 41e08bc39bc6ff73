"""Faithfulness of a circuit to its model (SPEC section 7), measured on fixed held-out prompts.

For a circuit C of model M with ablation values a, the normalized faithfulness is
``f = (L_empty - L_C) / (L_empty - L_M)``: 1 when the circuit does as well as the model, 0 when it does no
better than ablating everything. The tests below perturb what is *outside* the circuit in ways a faithful
circuit should not care about (partial, random or adversarial ablation; removing parts of it from both C
and M), and compare what happens *inside* it (activations, attention) with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..circuits.masking import NodeLayout, masked, record_norm_scales
from ..pruning.pruner import PruneConfig, Pruner
from ..tasks import TaskData, run_answer_logits


@dataclass
class Faithfulness:
    """Losses of arbitrary (partial) node masks on fixed prompts under one ablation."""

    pruner: Pruner

    @classmethod
    def build(cls, model, tok, task, ablation: str, split: str = "test", n: int = 256, frozen_ln: bool = False):
        cfg = PruneConfig(ablation=ablation, frozen_ln=frozen_ln, eval_split=split, eval_n=n)
        return cls(Pruner(model, tok, task, cfg))

    @property
    def n_nodes(self) -> int:
        return self.pruner.n_nodes

    @torch.no_grad()
    def loss(self, mask: torch.Tensor) -> torch.Tensor:
        """[S, N] masks with values in [0, 1] -> [S] task loss (every mask on the same prompts)."""
        mask = mask.to(self.pruner.device, torch.float32)
        data = self.pruner.eval_data
        out = []
        for m in mask.split(16):
            rep = TaskData.cat([data] * len(m))
            abl = self.pruner.ablation_values(list(range(len(m))), rep, -1)
            out.append(self.pruner.losses(m, rep, abl).cpu())
        return torch.cat(out)

    def reference_losses(self) -> tuple[float, float]:
        """(L_M, L_empty): every node kept, every node ablated."""
        ones = torch.ones(1, self.n_nodes)
        both = self.loss(torch.cat([ones, torch.zeros_like(ones)]))
        return float(both[0]), float(both[1])

    def normalize(self, losses: torch.Tensor) -> torch.Tensor:
        l_m, l_e = self.reference_losses()
        if abs(l_e - l_m) < 1e-6:
            raise ValueError(f"the task loss barely changes when every node is ablated ({l_m:.4g} vs {l_e:.4g})")
        return (l_e - losses) / (l_e - l_m)

    def normalized(self, nodes: torch.Tensor) -> float:
        """f of a circuit (bool [N])."""
        return float(self.normalize(self.loss(nodes.float()[None]))[0])

    @torch.no_grad()
    def kl_to_model(self, nodes: torch.Tensor) -> float:
        """Mean KL(p_model || p_circuit) over the full vocabulary at the answer position."""
        p = self.pruner
        data = p.eval_data
        logits_m = run_answer_logits(p.model, data).float().log_softmax(-1)
        abl = p.ablation_values([0], data, -1)
        scales = record_norm_scales(p.model, data.tokens, data.last) if p.cfg.frozen_ln else None
        with masked(p.model, p.layout, nodes.float().to(p.device)[None], abl, scales):
            logits_c = run_answer_logits(p.model, data).float().log_softmax(-1)
        return float((logits_m.exp() * (logits_m - logits_c)).sum(-1).mean())

    def completeness(self, nodes: torch.Tensor, n_subsets: int = 16, frac: float = 0.5, seed: int = 0) -> dict:
        """For random subsets K of C: |f(C minus K) - f(M minus K)|; a complete circuit loses what the model loses."""
        g = torch.Generator().manual_seed(seed)
        idx = nodes.nonzero().flatten()
        masks_c, masks_m = [], []
        for _ in range(n_subsets):
            k = idx[torch.rand(len(idx), generator=g) < frac]
            mc, mm = nodes.float().clone(), torch.ones(self.n_nodes)
            mc[k], mm[k] = 0.0, 0.0
            masks_c.append(mc)
            masks_m.append(mm)
        f = self.normalize(self.loss(torch.stack(masks_c + masks_m)))
        gap = (f[:n_subsets] - f[n_subsets:]).abs()
        return {"mean_gap": float(gap.mean()), "max_gap": float(gap.max()), "f_circuit_minus_k": f[:n_subsets].tolist(),
                "f_model_minus_k": f[n_subsets:].tolist()}  # fmt: skip

    def stochastic(self, nodes: torch.Tensor, mode: str = "uniform", n_samples: int = 16, seed: int = 0) -> dict:
        """Keep C, ablate the rest only partly: x = a + z (x - a), z ~ U(0, 1) or Bernoulli(1/2) per node."""
        if mode not in ("uniform", "bernoulli"):
            raise ValueError(f"unknown mode {mode!r}; allowed: uniform, bernoulli")
        g = torch.Generator().manual_seed(seed)
        z = torch.rand(n_samples, self.n_nodes, generator=g)
        if mode == "bernoulli":
            z = (z < 0.5).float()
        masks = torch.where(nodes[None], torch.ones_like(z), z)
        f = self.normalize(self.loss(masks))
        return {"mode": mode, "mean_f": float(f.mean()), "min_f": float(f.min()), "f": f.tolist()}

    def adversarial(self, nodes: torch.Tensor, steps: int = 20, step_size: float = 0.1, seed: int = 0) -> dict:
        """Restricted adversary: one pattern z in [0, 1] per non-circuit node, shared by every prompt and position,
        found by sign-gradient ascent on the task loss; returns the worst f it reaches."""
        p = self.pruner
        data = p.eval_data
        abl = p.ablation_values([0], data, -1)
        g = torch.Generator().manual_seed(seed)
        outside = (~nodes).float().to(p.device)
        z = torch.rand(self.n_nodes, generator=g).to(p.device)
        worst = None
        for _ in range(steps + 1):
            z.requires_grad_(True)
            mask = nodes.float().to(p.device) + outside * z
            loss = p.losses(mask[None], data, abl)[0]
            worst = float(loss.detach()) if worst is None else max(worst, float(loss.detach()))
            (grad,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                z = (z + step_size * grad.sign()).clamp(0, 1)
        f_worst = float(self.normalize(torch.tensor([worst]))[0])
        return {"worst_loss": worst, "worst_f": f_worst, "steps": steps}


@torch.no_grad()
def activation_agreement(model, circuit, data, ablation: dict | None = None, frozen_ln: bool = False) -> dict:
    """Per circuit node: Pearson correlation of its activations in the model and in the pruned model over every
    prompt and position (D3), and whether it flips sign (correlation < 0)."""
    layout = NodeLayout(model)
    names = [s.hook for s in layout.slices]
    _, orig = model.run_with_cache(data.tokens, names_filter=names)
    scales = record_norm_scales(model, data.tokens) if frozen_ln else None
    with masked(model, layout, circuit.nodes.float()[None], ablation, scales):
        _, pruned = model.run_with_cache(data.tokens, names_filter=names)
    valid = (torch.arange(data.tokens.shape[1])[None] <= data.last[:, None]).flatten()  # real tokens, not padding
    idx = circuit.nodes.nonzero().flatten().tolist()
    corr = torch.full((len(idx),), float("nan"))
    for s in layout.slices:  # one vectorized correlation per site
        sel = [(i, n - s.start) for i, n in enumerate(idx) if s.start <= n < s.stop]
        if not sel:
            continue
        rows, ch = torch.tensor([a for a, _ in sel]), torch.tensor([b for _, b in sel])
        a = orig[s.hook].flatten(2).flatten(0, 1)[valid][:, ch]
        b = pruned[s.hook].flatten(2).flatten(0, 1)[valid][:, ch]
        a, b = a - a.mean(0), b - b.mean(0)
        norms = a.norm(dim=0) * b.norm(dim=0)
        # a node constant in either model (e.g. always zeroed by AbsTopK) has no defined correlation
        corr[rows] = torch.where(norms > 1e-9, (a * b).sum(0) / norms.clamp_min(1e-12), float("nan"))
    known = corr[~corr.isnan()]
    return {"labels": [layout.label(i) for i in idx], "correlation": corr.tolist(),
            "median_correlation": float(known.median()) if len(known) else float("nan"),
            "sign_flipped_fraction": float((known < 0).float().mean()) if len(known) else float("nan")}  # fmt: skip


@torch.no_grad()
def attention_agreement(model, circuit, data, ablation: dict | None = None, frozen_ln: bool = False) -> list[dict]:
    """For every head with a kept q, k or v node: attention from the answer position in the model and the pruned
    model (sink column included), their total-variation distance and entropies (D2)."""
    layout = NodeLayout(model)
    H, E = model.cfg.n_head, model.cfg.d_head
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layer)]
    _, orig = model.run_with_cache(data.tokens, names_filter=names)
    scales = record_norm_scales(model, data.tokens) if frozen_ln else None
    with masked(model, layout, circuit.nodes.float()[None], ablation, scales):
        _, pruned = model.run_with_cache(data.tokens, names_filter=names)
    rows = torch.arange(len(data))
    out = []
    for layer in range(model.cfg.n_layer):
        kept = torch.stack([circuit.nodes[layout.sl(layer, s)].view(H, E).any(1) for s in ("q", "k", "v")])  # [3, H]
        for h in kept.any(0).nonzero().flatten().tolist():
            po = orig[names[layer]][rows, h, data.last]  # [N, 1+T]
            pp = pruned[names[layer]][rows, h, data.last]
            ent = lambda p: float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())  # noqa: E731
            n_keys = (data.last + 2).float()  # sink + tokens up to the answer
            out.append({"layer": layer, "head": h, "q": bool(kept[0, h]), "k": bool(kept[1, h]), "v": bool(kept[2, h]),
                        "tv": float(0.5 * (po - pp).abs().sum(-1).mean()), "entropy_model": ent(po),
                        "entropy_pruned": ent(pp), "entropy_uniform": float(n_keys.log().mean())})  # fmt: skip
    return out


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Overlap of two node sets (bool [N])."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0
