"""Circuit extraction by pruning with learned node masks (SPEC section 5), many seeds in one run.

Each mask logit tau_i gates one node: forward value a_i + H(tau_i) (x_i - a_i) (Heaviside), backward through
d/dtau sigmoid(tau_i / T) (straight-through). Loss = task loss + k_coef * (number of kept nodes). S
independent runs (different seeds and/or k_coef values) share one forward pass: the batch holds S blocks
of B prompts and the mask has a leading dimension S. Then each run is discretized: nodes ranked by tau,
the smallest top-k whose loss on fixed evaluation prompts is <= the target found by a vectorized search.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..circuits.ablation import Ablation, Resampler, check_ablation
from ..circuits.circuit import Circuit
from ..circuits.evaluate import MaskEvaluator
from ..circuits.layout import NodeLayout
from ..circuits.masking import topk_masks, weights_frozen
from ..core.config import strict_from_dict
from ..core.seeds import derived_seed
from ..data.sources import CorpusConfig
from ..model.gpt import SparseGPT
from ..tasks import SPLITS, Task, TaskData, filter_prompts


@dataclass
class PruneConfig:
    """Hyperparameters of one pruning run (Drori's defaults where the SPEC gives them)."""

    ablation: str
    """How pruned nodes are ablated: "zero", "mean" (pretraining mean through the model) or "resample"."""
    frozen_ln: bool = False
    """Use the unpruned model's norm scales (1/RMS) on the same batch in the pruned forward pass."""
    steps: int = 2000
    batch_size: int = 64
    """Task prompts per step and run (fresh each step)."""
    lr: float = 3e-3
    weight_decay: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.95
    k_coef: float = 1e-4
    """Penalty per kept node."""
    temperature: float = 1.0
    """Temperature T of the sigmoid surrogate gradient."""
    init_mean: float = 0.1
    init_std: float = 0.01
    target_loss: float = 0.15
    """Discretization keeps the fewest nodes whose task loss is <= this."""
    train_split: str = "train"
    eval_split: str = "train"
    """Split of the fixed prompts used for discretization (the same prompts for every k)."""
    eval_n: int = 256
    """Fixed prompts used for discretization."""
    search_points: int = 6
    """Node counts evaluated at once per round of the discretization search."""
    objective: str = "standard"
    """How non-kept nodes are ablated while masks are learned: "standard" (fully), "stochastic" (x = a + z (x - a)
    with z ~ U(0, 1) per node, fresh each step) or "adversarial" (z in [0, 1] per node chosen by a restricted
    adversary: one pattern per run and batch, updated by sign-gradient ascent on the task loss). Discretization
    always evaluates full ablation."""
    adversary_steps: int = 1
    adversary_lr: float = 0.1
    seed_chunk: int = 8
    """Runs per forward/backward pass within a step (gradients accumulate over chunks before one optimizer step).
    Exact, since runs are independent; keeps activations cache-sized, which is faster than one huge batch on CPU."""
    search_trained_count: bool = False
    """Discretization also tries each run's count of nodes with tau > 0. The loss is not monotone in k, so this can
    find a smaller passing circuit; off by default until the walkthrough notebooks are re-verified with it."""
    filter_prompts: bool = False
    """Prune only on train prompts the model itself gets right (p > 0.3 full, > 0.8 binary; Drori's filter)."""

    def __post_init__(self) -> None:
        check_ablation(self.ablation)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; allowed: {list(OBJECTIVES)}")
        for s in (self.train_split, self.eval_split):
            if s not in SPLITS:
                raise ValueError(f"PruneConfig split {s!r} unknown; allowed: {list(SPLITS)}")
        for name in ("steps", "batch_size", "eval_n", "search_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"PruneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.k_coef < 0 or self.target_loss <= 0:
            raise ValueError("PruneConfig needs temperature > 0, k_coef >= 0 and target_loss > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PruneConfig:
        return strict_from_dict(cls, d)


OBJECTIVES = ("standard", "stochastic", "adversarial")


def ste_mask(tau: torch.Tensor, temperature: float) -> torch.Tensor:
    """Heaviside(tau) forward, d sigmoid(tau / T) / d tau backward."""
    soft = torch.sigmoid(tau / temperature)
    return (tau > 0).to(tau.dtype) + soft - soft.detach()


class Pruner:
    """Everything pruning needs for one (model, task, ablation): layout, ablation values, evaluation prompts."""

    def __init__(
        self,
        model: SparseGPT,
        tokenizer,
        task: Task,
        cfg: PruneConfig,
        corpus: CorpusConfig | None = None,
        means: dict | None = None,
    ) -> None:
        """``means``: node means of this model from an earlier Pruner (mean ablation), to skip recomputing them."""
        self.model, self.tok, self.task, self.cfg = model, tokenizer, task, cfg
        self.device = next(model.parameters()).device
        self.layout = NodeLayout(model)
        self.pool = task.data(cfg.train_split, tokenizer).to(self.device)
        self.kept_fraction = 1.0
        if cfg.filter_prompts:
            self.pool, self.kept_fraction = filter_prompts(model, self.pool)
            if len(self.pool) == 0:
                raise ValueError(f"no {task.name} train prompts pass the filter: the model does not know the task")
        self.eval_data = task.data(cfg.eval_split, tokenizer, cfg.eval_n).to(self.device)
        self.ablation = Ablation(model, self.layout, tokenizer, cfg.ablation, corpus, means)
        self.evaluator = MaskEvaluator(model, self.layout, task.loss, self.ablation, cfg.frozen_ln)

    @property
    def n_nodes(self) -> int:
        return self.layout.n_nodes

    @property
    def means(self) -> dict | None:
        """Node means of the model (mean ablation), else None."""
        return self.ablation.means

    @property
    def resampler(self) -> Resampler | None:
        return self.ablation.resampler

    # ---- ablation values and batches ---------------------------------------------------------------
    def ablation_values(self, seeds: list[int], data: TaskData, step: int):
        """Values for ablated nodes on ``data`` (S blocks of prompts), shaped for the answer-position forward."""
        return self.ablation.values(seeds, data, step)

    def batch(self, seeds: list[int], step: int) -> TaskData:
        """S blocks of batch_size prompts from the train pool; block s depends only on (seeds[s], step)."""
        idx = []
        for s in seeds:
            g = torch.Generator().manual_seed(derived_seed("prune-batch", s, step) % 2**63)
            idx.append(torch.randint(len(self.pool), (self.cfg.batch_size,), generator=g))
        return self.pool.index(torch.cat(idx).to(self.pool.tokens.device))

    def losses(self, mask: torch.Tensor, data: TaskData, ablation) -> torch.Tensor:
        """[S] mean task loss of each mask [S, N] on its own block of ``data`` (S blocks of equal size), with
        ``ablation`` values for that batch (``ablation_values``); differentiable in the mask."""
        return self.evaluator.run(mask, data, shared=False, values=ablation, mean=True)

    # ---- training -------------------------------------------------------------------------------------
    def init_tau(self, seeds: list[int]) -> torch.Tensor:
        rows = []
        for s in seeds:
            g = torch.Generator().manual_seed(derived_seed("prune-init", s) % 2**63)
            rows.append(self.cfg.init_mean + self.cfg.init_std * torch.randn(self.n_nodes, generator=g))
        return torch.stack(rows).to(self.device)

    def train_masks(
        self,
        seeds: list[int],
        k_coefs: list[float] | None = None,
        lrs: list[float] | None = None,
        progress: bool = True,
    ) -> tuple[torch.Tensor, list[dict]]:
        """Learn mask logits for len(seeds) runs at once; returns tau [S, N] and a per-step history.

        Run s has its own seed, penalty k_coefs[s] and learning rate lrs[s] (one AdamW parameter group per
        run, so runs never interact); the forward pass is shared.
        """
        c = self.cfg
        S = len(seeds)
        k_coefs = list(k_coefs) if k_coefs is not None else [c.k_coef] * S
        lrs = list(lrs) if lrs is not None else [c.lr] * S
        if len(k_coefs) != S or len(lrs) != S:
            raise ValueError(f"got {len(k_coefs)} k_coef and {len(lrs)} lr values for {S} seeds")
        k_coef = torch.tensor(k_coefs, device=self.device)
        init = self.init_tau(seeds)
        taus = [torch.nn.Parameter(init[s].clone()) for s in range(S)]
        opt = torch.optim.AdamW(
            [{"params": [t], "lr": lr} for t, lr in zip(taus, lrs)],
            betas=(c.beta1, c.beta2),
            weight_decay=c.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / c.steps))
        history = []
        z_adv = None
        if c.objective == "adversarial":  # the adversary's starting pattern, per run from its own seed
            z_adv = torch.stack(
                [
                    torch.rand(
                        self.n_nodes, generator=torch.Generator().manual_seed(derived_seed("adversary", s) % 2**63)
                    )
                    for s in seeds
                ]
            ).to(self.device)
        B = c.batch_size
        with weights_frozen(self.model):  # only the mask logits learn
            for step in tqdm(range(c.steps), desc=f"prune {self.task.name} x{S}", disable=not progress, unit="step"):
                data = self.batch(seeds, step)
                losses, kepts = [], []
                for lo in range(0, S, c.seed_chunk):  # chunks of runs; gradients accumulate
                    hi = min(S, lo + c.seed_chunk)
                    part = data.index(range(lo * B, hi * B))
                    abl = self.ablation_values(seeds[lo:hi], part, step)
                    m = ste_mask(torch.stack(taus[lo:hi]), c.temperature)
                    if c.objective == "stochastic":
                        z = torch.stack(
                            [
                                torch.rand(
                                    self.n_nodes,
                                    generator=torch.Generator().manual_seed(
                                        derived_seed("stochastic", s, step) % 2**63
                                    ),
                                )
                                for s in seeds[lo:hi]
                            ]
                        ).to(self.device)
                        m = m + (1 - m) * z  # kept nodes stay whole; the rest are only partly ablated
                    elif c.objective == "adversarial":
                        z_adv[lo:hi] = self.adversary(m.detach(), z_adv[lo:hi], part, abl)
                        m = m + (1 - m) * z_adv[lo:hi]
                    task_loss = self.losses(m, part, abl)
                    kept = m.sum(1)
                    (task_loss + k_coef[lo:hi] * kept).sum().backward()
                    losses.append(task_loss.detach())
                    kepts.append(kept.detach())
                task_loss, kept = torch.cat(losses), torch.cat(kepts)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for t in taus:
                        t.clamp_(-1.0, 1.0)
                if step % 50 == 0 or step == c.steps - 1:
                    history.append(
                        {
                            "step": step,
                            "task_loss": task_loss.detach().cpu().tolist(),
                            "kept": kept.detach().cpu().tolist(),
                        }
                    )
        return torch.stack([t.detach() for t in taus]), history

    def adversary(self, m: torch.Tensor, z: torch.Tensor, data: TaskData, abl) -> torch.Tensor:
        """Restricted adversary: per run one ablation pattern z in [0, 1]^N for the non-kept nodes, shared by the
        whole batch and every position, moved by sign-gradient ascent on the task loss."""
        for _ in range(self.cfg.adversary_steps):
            z = z.detach().requires_grad_(True)
            loss = self.losses(m + (1 - m) * z, data, abl).sum()
            (grad,) = torch.autograd.grad(loss, z)
            z = (z + self.cfg.adversary_lr * grad.sign()).clamp(0.0, 1.0)
        return z.detach()

    # ---- discretization -------------------------------------------------------------------------------
    @torch.no_grad()
    def loss_at_counts(
        self, tau: torch.Tensor, counts: torch.Tensor, data: TaskData | None = None, chunk: int = 32
    ) -> torch.Tensor:
        """[M] task loss on fixed prompts when each tau row keeps its top counts[m] nodes (rows paired with counts)."""
        data = data or self.eval_data
        out = []
        for s in range(0, len(counts), chunk):
            t, k = tau[s : s + chunk], counts[s : s + chunk]
            seeds = [derived_seed("eval", i) for i in range(len(k))]  # resample values per row of the chunk
            out.append(self.evaluator.run(topk_masks(t, k), data, seeds=seeds, mean=True).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def discretize(self, tau: torch.Tensor) -> dict:
        """Per run, the fewest top-ranked nodes whose loss on the fixed evaluation prompts is <= target.

        A vectorized search: first, for every run at once, a log-spaced grid of counts from 1 to N (plus, with
        ``search_trained_count``, the run's own count of nodes with tau > 0: the loss is not monotone in k, and
        adding back nodes that training switched off can raise it sharply); then rounds of ``search_points`` counts
        between the largest failing candidate below the first passing one and that one. (A circuit can beat
        the full model, so the full model is not assumed to pass.) A run where no count passes keeps the
        count of lowest loss and has ``reached_target`` False.
        """
        S, N, G = tau.shape[0], self.n_nodes, self.cfg.search_points
        target = self.cfg.target_loss
        grid = torch.cat(
            [torch.logspace(0, torch.log10(torch.tensor(float(N))), 2 * G).round().long(), torch.tensor([N])]
        ).unique()
        trained = (tau > 0).sum(1).clamp(1, N).cpu()
        extra = (lambda s: trained[s : s + 1]) if self.cfg.search_trained_count else (lambda s: grid[:0])
        cands = [torch.cat([grid, extra(s)]).unique() for s in range(S)]  # sorted, per run
        rows = torch.cat([torch.full((len(c),), s) for s, c in enumerate(cands)])
        losses = self.loss_at_counts(tau[rows], torch.cat(cands)).split([len(c) for c in cands])
        full_loss = torch.stack([ls[-1] for ls in losses])
        reached = torch.tensor([bool((ls <= target).any()) for ls in losses])
        hi, lo, loss_hi = torch.zeros(S, dtype=torch.long), torch.zeros(S, dtype=torch.long), torch.zeros(S)
        for s, (c, ls) in enumerate(zip(cands, losses)):
            first = int((ls <= target).nonzero()[0]) if reached[s] else int(ls.argmin())
            hi[s], loss_hi[s] = c[first], ls[first]
            lo[s] = c[first - 1] if first > 0 else 0
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
            losses = self.loss_at_counts(tau[rows], ks)
            for s in active.nonzero().flatten().tolist():
                sel = rows == s
                k_s, l_s = ks[sel], losses[sel]
                ok = l_s <= target
                if ok.any():
                    f = int(ok.nonzero()[0])
                    hi[s], loss_hi[s] = k_s[f], l_s[f]
                    if f > 0:
                        lo[s] = k_s[f - 1]
                else:
                    lo[s] = k_s[-1]
        return {
            "n_nodes": hi.tolist(),
            "loss": loss_hi.tolist(),
            "reached_target": reached.tolist(),
            "full_loss": full_loss.tolist(),
        }


def prune(
    model: SparseGPT,
    tokenizer,
    task: Task,
    cfg: PruneConfig,
    seeds: list[int] | int = 1,
    k_coefs: list[float] | None = None,
    lrs: list[float] | None = None,
    corpus: CorpusConfig | None = None,
    progress: bool = True,
    model_name: str | None = None,
    pruner: Pruner | None = None,
) -> list:
    """Prune ``model`` on ``task`` for several seeds (and optionally k_coef values) in one batched run.

    Returns one Circuit per run, with nodes, edges, mask logits and all metadata.
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    pruner = pruner or Pruner(model, tokenizer, task, cfg, corpus)
    t0 = time.perf_counter()
    tau, history = pruner.train_masks(seeds, k_coefs, lrs, progress)
    t1 = time.perf_counter()
    disc = pruner.discretize(tau)
    t2 = time.perf_counter()
    circuits = []
    for i, seed in enumerate(seeds):
        k = disc["n_nodes"][i]
        nodes = topk_masks(tau[i : i + 1], torch.tensor([k]))[0].bool().cpu()
        meta = {
            "model": model_name,
            "task": task.name,
            "task_loss_kind": task.loss,
            "ablation": cfg.ablation,
            "frozen_ln": cfg.frozen_ln,
            "seed": seed,
            "k_coef": (k_coefs[i] if k_coefs else cfg.k_coef),
            "lr": (lrs[i] if lrs else cfg.lr),
            "prune_config": cfg.to_dict(),
            "loss": disc["loss"][i],
            "full_model_loss": disc["full_loss"][i],
            "reached_target": disc["reached_target"][i],
            "target_loss": cfg.target_loss,
            "n_seeds_in_run": len(seeds),
            "train_prompts": len(pruner.pool),
            "filter_kept_fraction": pruner.kept_fraction,
            "train_seconds": t1 - t0,
            "discretize_seconds": t2 - t1,
            "final_train_loss": history[-1]["task_loss"][i],
            "final_kept_during_training": history[-1]["kept"][i],
        }
        circuits.append(Circuit(nodes=nodes, tau=tau[i].cpu(), meta=meta).with_edges(model))
    return circuits
