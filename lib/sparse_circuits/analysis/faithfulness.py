"""Faithfulness of a circuit to its model (SPEC section 7), measured on fixed held-out prompts.

For a circuit C of model M with ablation values a, the normalized faithfulness is
``f = (L_empty - L_C) / (L_empty - L_M)``: 1 when the circuit does as well as the model, 0 when it does no
better than ablating everything. The tests below perturb what is *outside* the circuit in ways a faithful
circuit should not care about (partial, random or adversarial ablation; removing parts of it from both C
and M). What happens *inside* it (activations, attention) is compared with the model in ``compare``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..circuits.masking import weights_frozen
from ..pruning.pruner import PruneConfig, Pruner
from ..tasks import run_answer_logits

# Masks per forward pass of ``Faithfulness.loss``.
MASKS_PER_PASS = 16


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
        seeds = [i % MASKS_PER_PASS for i in range(mask.shape[0])]  # resample seeds count from 0 in every pass
        ev = self.pruner.evaluator
        return ev.run(mask, self.pruner.eval_data, seeds=seeds, chunk=MASKS_PER_PASS, mean=True).cpu()

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
        logits_m = run_answer_logits(p.model, p.eval_data).float().log_softmax(-1)  # [n, V]
        logits_c = p.evaluator.run(nodes.float()[None], p.eval_data, "logits")[0].float().log_softmax(-1)
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
        return {
            "mean_gap": float(gap.mean()),
            "max_gap": float(gap.max()),
            "f_circuit_minus_k": f[:n_subsets].tolist(),
            "f_model_minus_k": f[n_subsets:].tolist(),
        }

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
        with weights_frozen(p.model):  # gradients for z only
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


def pairwise_jaccard(nodes: torch.Tensor) -> torch.Tensor:
    """[S, N] bool node sets -> [S, S] Jaccard overlaps |A & B| / |A | B| (two empty sets count as identical)."""
    x = nodes.float()
    inter = x @ x.T
    size = x.sum(1)
    union = size[:, None] + size[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Overlap of two node sets (bool [N]): ``pairwise_jaccard`` of the pair."""
    return float(pairwise_jaccard(torch.stack([a, b]))[0, 1])
