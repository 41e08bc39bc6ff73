"""Discretization (docs/method.md, Pruning): per pruning run, the fewest top-ranked nodes that meet the criterion.

Nodes are ranked by their mask logit tau. A count k passes when the top-k circuit's task loss on the fixed
evaluation prompts is <= ``target_loss`` and, where ``PruneConfig`` asks for them, its normalized faithfulness
``f = (L_empty - L) / (L_empty - L_model)`` is >= ``min_stochastic_f`` with the non-kept nodes ablated stochastically
and >= ``min_adversarial_f`` under the restricted adversary (the worst over its seeded restarts). The faithfulness checks run only on counts whose loss
passes; every check scores masks through the pruner's ``MaskEvaluator``.
"""

from __future__ import annotations

import torch

from ..circuits.evaluate import masks_per_pass
from ..circuits.masking import topk_masks, weights_frozen
from ..core.seeds import derived_seed
from ..tasks import TaskData


def eval_seeds(n: int) -> list[int]:
    """Ablation seeds of the n masks of one evaluation pass (resample rows per position in the pass)."""
    return [derived_seed("eval", i) for i in range(n)]


class Discretization:
    """Discretizing mask logits; a part of ``Pruner``, whose evaluator, evaluation prompts, config, z draws,
    mixed-mask losses and adversary it uses."""

    @torch.no_grad()
    def loss_at_counts(
        self, tau: torch.Tensor, counts: torch.Tensor, data: TaskData | None = None, chunk: int | None = None
    ) -> torch.Tensor:
        """[M] task loss on fixed prompts when each tau row keeps its top counts[m] nodes (rows paired with counts);
        ``chunk`` masks per pass (default: 32, fewer on a model that runs sparse, ``masks_per_pass``)."""
        data = data or self.eval_data
        chunk = chunk or masks_per_pass(self.model, self.cfg.execution, data.tokens.numel(), 32)
        out = []
        for s in range(0, len(counts), chunk):
            t, k = tau[s : s + chunk], counts[s : s + chunk]
            # resample values per row of the chunk
            out.append(self.evaluator.run(topk_masks(t, k), data, seeds=eval_seeds(len(k)), mean=True).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def faithfulness_bounds(self) -> tuple[float, float]:
        """(L_empty, L_model): task loss on the evaluation prompts with every node ablated and with every node kept."""
        ends = torch.stack([torch.zeros(self.n_nodes), torch.ones(self.n_nodes)])
        losses = self.evaluator.run(ends, self.eval_data, seeds=[eval_seeds(1)[0]] * 2, mean=True).cpu()
        return float(losses[0]), float(losses[1])

    def _pass(self, n_masks: int) -> tuple[TaskData, object]:
        """The evaluation prompts repeated for n_masks masks, and their ablation values as the loss search draws them."""
        data = self.eval_data
        part = data if n_masks == 1 else TaskData.cat([data] * n_masks)
        return part, self.evaluator.values(eval_seeds(n_masks), part, -1, n_masks)

    @torch.no_grad()
    def stochastic_losses(self, masks: torch.Tensor) -> torch.Tensor:
        """[M] task loss of ``masks`` [M, N] with the non-kept nodes ablated by 1 - z, averaged over ``check_samples``
        seeded draws of z (the same draws for every mask, so counts are compared on equal terms)."""
        M, n = masks.shape[0], len(self.eval_data)
        part, values = self._pass(M)
        losses = []
        for j in range(self.cfg.check_samples):
            z = self.draw_z([derived_seed("check-stochastic", j)], -1, n)[0]  # [N], or [n, N] per prompt
            losses.append(self.mixed_losses(masks, z.expand(M, *z.shape), part, values))
        return torch.stack(losses).mean(0)

    def adversary_starts(self) -> torch.Tensor:
        """[R, N] the seeded starting patterns of the discretization's adversary, R = ``check_adversary_restarts``
        (the first is the single-start pattern)."""
        keys = [("check-adversary",)] + [("check-adversary", r) for r in range(1, self.cfg.check_adversary_restarts)]
        return torch.stack(
            [torch.rand(self.n_nodes, generator=torch.Generator().manual_seed(derived_seed(*k) % 2**63)) for k in keys]
        )

    @torch.no_grad()
    def adversary_worst(self, masks: torch.Tensor, start: torch.Tensor, part: TaskData, values) -> torch.Tensor:
        """[M] worst task loss of ``masks`` [M, N] over the patterns the restricted adversary (``adversary``) visits
        in ``check_adversary_steps`` steps from ``start`` [N] (one pattern per mask, shared by prompts and
        positions), on ``part`` / ``values`` from ``_pass``."""
        z = start.to(masks.device).expand_as(masks).clone()  # [M, N]
        worst = self.mixed_losses(masks, z, part, values)
        for _ in range(self.cfg.check_adversary_steps):
            with weights_frozen(self.model), torch.enable_grad():
                z = self.adversary(masks, z, part, values, steps=1)
            worst = torch.maximum(worst, self.mixed_losses(masks, z, part, values))
        return worst

    @torch.no_grad()
    def adversarial_losses(self, masks: torch.Tensor) -> torch.Tensor:
        """[M] worst task loss of ``masks`` [M, N] under the restricted adversary: the worst of ``adversary_worst``
        over the ``adversary_starts`` (every mask ascends from the same starts)."""
        part, values = self._pass(masks.shape[0])
        return torch.stack([self.adversary_worst(masks, z, part, values) for z in self.adversary_starts()]).amax(0)

    @torch.no_grad()
    def score_counts(self, tau: torch.Tensor, counts: torch.Tensor, bounds, chunk: int = 32) -> dict:
        """Each tau row [M, N] at its count [M]: "loss" [M], "ok" [M] (every criterion met) and, where asked for and
        computed (counts whose loss passes), "stochastic_f" / "adversarial_f" [M] (NaN elsewhere)."""
        c = self.cfg
        loss = self.loss_at_counts(tau, counts)
        out = {"loss": loss, "ok": loss <= c.target_loss}
        for name, threshold, fn in (
            ("stochastic_f", c.min_stochastic_f, self.stochastic_losses),
            ("adversarial_f", c.min_adversarial_f, self.adversarial_losses),
        ):
            if threshold is None:
                continue
            f = torch.full_like(loss, torch.nan)
            idx = out["ok"].nonzero().flatten()
            if len(idx):
                masks = topk_masks(tau[idx].to(self.device), counts[idx])
                lx = torch.cat([fn(m).cpu() for m in masks.split(chunk)])
                empty, full = bounds
                if empty != full:  # else f is undefined: NaN, which fails
                    f[idx] = (empty - lx) / (empty - full)
                out["ok"][idx] = f[idx] >= threshold
            out[name] = f
        return out

    @torch.no_grad()
    def discretize(self, tau: torch.Tensor) -> dict:
        """Per run, the fewest top-ranked nodes meeting the criterion on the fixed evaluation prompts.

        A vectorized search: first, for every run at once, a log-spaced grid of counts from 1 to N (plus, with
        ``search_trained_count``, the run's own count of nodes with tau > 0: the loss is not monotone in k, and adding
        back nodes that training switched off can raise it sharply); then rounds of ``search_points`` counts between the
        largest failing candidate below the first passing one and that one. (A circuit can beat the full model, so the
        full model is not assumed to pass.) A run where no count passes keeps the count of lowest loss and has
        ``reached_target`` False; the chosen count of a run that reached it met every criterion.
        """
        c = self.cfg
        S, N, G = tau.shape[0], self.n_nodes, c.search_points
        checks = [
            n
            for n, t in (("stochastic_f", c.min_stochastic_f), ("adversarial_f", c.min_adversarial_f))
            if t is not None
        ]
        bounds = self.faithfulness_bounds() if checks else None
        grid = torch.cat(
            [torch.logspace(0, torch.log10(torch.tensor(float(N))), 2 * G).round().long(), torch.tensor([N])]
        ).unique()
        trained = (tau > 0).sum(1).clamp(1, N).cpu()
        extra = (lambda s: trained[s : s + 1]) if c.search_trained_count else (lambda s: grid[:0])
        cands = [torch.cat([grid, extra(s)]).unique() for s in range(S)]  # sorted, per run
        rows = torch.cat([torch.full((len(k),), s) for s, k in enumerate(cands)])
        scores = self.score_counts(tau[rows], torch.cat(cands), bounds)
        split = {key: v.split([len(k) for k in cands]) for key, v in scores.items()}
        full_loss = torch.stack([ls[-1] for ls in split["loss"]])
        reached = torch.tensor([bool(ok.any()) for ok in split["ok"]])
        hi, lo = torch.zeros(S, dtype=torch.long), torch.zeros(S, dtype=torch.long)
        best = {key: torch.full((S,), torch.nan) for key in ["loss", *checks]}

        def take(s: int, ks: torch.Tensor, sc: dict, i: int) -> None:
            hi[s] = ks[i]
            for key in best:
                best[key][s] = sc[key][i]

        for s, ks in enumerate(cands):
            sc = {key: v[s] for key, v in split.items()}
            first = int(sc["ok"].nonzero()[0]) if reached[s] else int(sc["loss"].argmin())
            take(s, ks, sc, first)
            lo[s] = ks[first - 1] if first > 0 else 0
        while True:
            active = (hi - lo > 1) & reached
            if not active.any():
                break
            cand_rows, cand_k = [], []
            for s in active.nonzero().flatten().tolist():  # a few candidates per run, never a loop over nodes
                ks = torch.linspace(float(lo[s]), float(hi[s]), G + 2).round().long()[1:-1].unique()
                ks = ks[(ks > lo[s]) & (ks < hi[s])]
                cand_rows += [s] * len(ks)
                cand_k.append(ks)
            ks = torch.cat(cand_k)
            rows = torch.tensor(cand_rows)
            scores = self.score_counts(tau[rows], ks, bounds)
            for s in active.nonzero().flatten().tolist():
                sel = rows == s
                sc = {key: v[sel] for key, v in scores.items()}
                if sc["ok"].any():
                    f = int(sc["ok"].nonzero()[0])
                    take(s, ks[sel], sc, f)
                    if f > 0:
                        lo[s] = ks[sel][f - 1]
                else:
                    lo[s] = ks[sel][-1]
        return {
            "n_nodes": hi.tolist(),
            "loss": best["loss"].tolist(),
            "reached_target": reached.tolist(),
            "full_loss": full_loss.tolist(),
            **{key: best[key].tolist() for key in checks},
        }
