"""Faithfulness of a circuit to its model (docs/method.md, Faithfulness experiments), measured on fixed held-out prompts.

For a circuit C of model M with ablation values a, the normalized faithfulness is
``f = (L_empty - L_C) / (L_empty - L_M)``: 1 when the circuit does as well as the model, 0 when it does no
better than ablating everything. The tests below perturb what is *outside* the circuit in ways a faithful
circuit should not care about (partial, random or adversarial ablation; removing parts of it from both C
and M). What happens *inside* it (activations, attention) is compared with the model in ``compare``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..circuits.masking import topk_masks, weights_frozen
from ..pruning.pruner import PruneConfig, Pruner
from ..tasks import TaskData, per_example_loss, run_answer_logits

# Masks per forward pass of ``Faithfulness.loss``.
MASKS_PER_PASS = 16
STOCHASTIC_MODES = ("uniform", "bernoulli")
ADVERSARY_TARGETS = ("loss", "kl")


def kl_divergence(logp_model: torch.Tensor, logp_circuit: torch.Tensor) -> torch.Tensor:
    """[..., V] log-probabilities -> [...] KL(p_model || p_circuit)."""
    return (logp_model.exp() * (logp_model - logp_circuit)).sum(-1)


def _repeat_values(values, times: int):
    """Ablation values for one block of prompts -> for ``times`` blocks (per-prompt values repeated)."""
    if values is None or times == 1:
        return values
    return {k: (v.repeat(times, *[1] * (v.dim() - 1)) if v.dim() > 1 else v) for k, v in values.items()}


@dataclass
class Faithfulness:
    """Losses of arbitrary (partial) node masks on fixed prompts under one ablation."""

    pruner: Pruner

    @classmethod
    def build(
        cls,
        model,
        tok,
        task,
        ablation: str,
        split: str = "test",
        n: int = 256,
        frozen_ln: bool = False,
        means: dict | None = None,
    ):
        """``means``: node means of this model computed earlier (mean ablation), to skip recomputing them."""
        cfg = PruneConfig(ablation=ablation, frozen_ln=frozen_ln, eval_split=split, eval_n=n)
        return cls(Pruner(model, tok, task, cfg, means=means))

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
        logits_m = self.model_log_probs()  # [n, V]
        logits_c = p.evaluator.run(nodes.float()[None], p.eval_data, "logits")[0].float().log_softmax(-1)
        return float(kl_divergence(logits_m, logits_c).mean())

    @torch.no_grad()
    def model_log_probs(self) -> torch.Tensor:
        """[n, V] the model's log-probabilities at the answer position of the fixed prompts."""
        return run_answer_logits(self.pruner.model, self.pruner.eval_data).float().log_softmax(-1)

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

    def stochastic(
        self, nodes: torch.Tensor, mode: str = "uniform", n_samples: int = 16, seed: int = 0, per_prompt: bool = False
    ) -> dict:
        """Keep C, ablate the rest only partly: x = a + z (x - a), z ~ U(0, 1) or Bernoulli(1/2) per node.

        One z per node shared by every prompt and position of a sample (``per_prompt``: a fresh z per prompt,
        shared over its positions; ablation values then come from seed 0 for every sample)."""
        if mode not in STOCHASTIC_MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(STOCHASTIC_MODES)}")
        data = self.pruner.eval_data
        g = torch.Generator().manual_seed(seed)
        z = torch.rand(n_samples * (len(data) if per_prompt else 1), self.n_nodes, generator=g)
        if mode == "bernoulli":
            z = (z < 0.5).float()
        masks = torch.where(nodes[None], torch.ones_like(z), z)
        if per_prompt:
            abl = self.pruner.ablation_values([0], data, -1)
            losses = torch.tensor([self.per_prompt_loss(m, abl) for m in masks.view(n_samples, len(data), -1)])
        else:
            losses = self.loss(masks)
        f = self.normalize(losses)
        return {
            "mode": mode,
            "per_prompt": per_prompt,
            "mean_f": float(f.mean()),
            "min_f": float(f.min()),
            "f": f.tolist(),
        }

    @torch.no_grad()
    def per_prompt_loss(self, masks: torch.Tensor, values) -> float:
        """Mean task loss when prompt i of the fixed prompts runs with its own mask ``masks[i]`` ([n, N]), nodes
        ablated to ``values`` (``Pruner.ablation_values`` of the fixed prompts)."""
        p = self.pruner
        return float(p.evaluator.run(masks, p.eval_data, shared=False, values=values, mean=True).mean().cpu())

    def adversarial(
        self,
        nodes: torch.Tensor,
        steps: int = 20,
        step_size: float = 0.1,
        seed: int = 0,
        restarts: int = 1,
        target: str = "loss",
    ) -> dict:
        """Restricted adversary: one pattern z in [0, 1] per non-circuit node, shared by every prompt and position,
        found by sign-gradient ascent on the task loss (``target="loss"``) or on KL(p_model || p_circuit) at the
        answer position (``"kl"``), from ``restarts`` random starting patterns ascended together; returns the
        worst task loss (and f) any iterate reaches, and with ``"kl"`` the largest KL."""
        if target not in ADVERSARY_TARGETS:
            raise ValueError(f"unknown adversary target {target!r}; allowed: {', '.join(ADVERSARY_TARGETS)}")
        p = self.pruner
        data = p.eval_data if restarts == 1 else TaskData.cat([p.eval_data] * restarts)
        abl = _repeat_values(p.ablation_values([0], p.eval_data, -1), restarts)
        measure = "loss"
        if target == "kl":
            logp_model = self.model_log_probs().repeat(restarts, 1)  # [restarts * n, V], rows as in ``data``

            def measure(logits: torch.Tensor, d: TaskData) -> torch.Tensor:  # -> [rows, 2]: task loss, KL
                kl = kl_divergence(logp_model.to(logits.device), logits.float().log_softmax(-1))
                return torch.stack([per_example_loss(logits, d, p.evaluator.loss), kl], -1)

        g = torch.Generator().manual_seed(seed)
        outside = (~nodes).float().to(p.device)
        z = torch.rand(restarts, self.n_nodes, generator=g).to(p.device)
        worst, worst_kl = None, None
        with weights_frozen(p.model):  # gradients for z only
            for _ in range(steps + 1):
                z.requires_grad_(True)
                mask = nodes.float().to(p.device) + outside * z  # [restarts, N]
                out = p.evaluator.run(mask, data, measure, shared=False, values=abl, mean=True)  # [restarts(, 2)]
                loss = out if target == "loss" else out[:, 0]
                objective = out if target == "loss" else out[:, 1]
                step_worst = float(loss.detach().max())
                worst = step_worst if worst is None else max(worst, step_worst)
                if target == "kl":
                    step_kl = float(objective.detach().max())
                    worst_kl = step_kl if worst_kl is None else max(worst_kl, step_kl)
                (grad,) = torch.autograd.grad(objective.sum(), z)  # restarts are independent: one gradient each
                with torch.no_grad():
                    z = (z + step_size * grad.sign()).clamp(0, 1)
        f_worst = float(self.normalize(torch.tensor([worst]))[0])
        res = {"worst_loss": worst, "worst_f": f_worst, "steps": steps, "restarts": restarts, "target": target}
        return {**res, "worst_kl": worst_kl} if target == "kl" else res

    def curve(self, tau: torch.Tensor, counts: list[int]) -> dict:
        """f of the circuits of the ``counts`` highest-ranked nodes by ``tau`` [N] (MIB-style), and the areas under
        f and under |1 - f| against the kept fraction k / N (trapezoids over the given counts). The model, the
        empty circuit and every point share one ablation draw (resample seed 0)."""
        k = torch.tensor(sorted(set(int(c) for c in counts)))
        if len(k) < 2 or k.min() < 0 or k.max() > self.n_nodes:
            raise ValueError(f"a curve needs at least two node counts in [0, {self.n_nodes}], got {counts}")
        masks = torch.cat(
            [
                torch.ones(1, self.n_nodes),
                torch.zeros(1, self.n_nodes),
                topk_masks(tau.float()[None].expand(len(k), -1), k),
            ]
        )
        with torch.no_grad():  # one resample draw for every mask, so that f(0) = 0 and f(N) = 1 exactly
            losses = self.pruner.evaluator.run(
                masks, self.pruner.eval_data, seeds=[0] * len(masks), chunk=MASKS_PER_PASS, mean=True
            ).cpu()
        f = (losses[1] - losses[2:]) / (losses[1] - losses[0])
        x = k.float() / self.n_nodes
        return {
            "counts": k.tolist(),
            "f": f.tolist(),
            "area_f": float(torch.trapezoid(f, x)),
            "area_abs_1_minus_f": float(torch.trapezoid((1 - f).abs(), x)),
        }


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
