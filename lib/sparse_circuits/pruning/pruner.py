"""Circuit extraction by pruning with learned node masks (docs/method.md, Pruning), many seeds in one run.

Each mask logit tau_i gates one node: forward value a_i + H(tau_i) (x_i - a_i) (Heaviside), backward through
d/dtau sigmoid(tau_i / T) (straight-through). Loss = task loss + k_coef * (number of kept nodes), the task loss
with the non-kept nodes ablated fully (standard), stochastically or by a restricted adversary (the faithful
objectives), the count always of the keep mask itself. S independent runs (different seeds and/or k_coef values)
share one forward pass: the batch holds S blocks of B prompts and the mask has a leading dimension S. Then each
run is discretized (``discretize``): nodes ranked by tau, the smallest top-k meeting the criterion on fixed
evaluation prompts, found by a vectorized search.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..circuits.ablation import Ablation, Resampler, check_ablation
from ..circuits.circuit import Circuit, task_record
from ..circuits.evaluate import MaskEvaluator, Measure, masks_per_pass
from ..circuits.layout import NodeLayout
from ..circuits.masking import topk_masks, weights_frozen
from ..core.config import check_numbers, strict_from_dict
from ..core.progress import tqdm
from ..core.seeds import derived_seed
from ..data.sources import CorpusConfig
from ..model.gpt import SparseGPT
from ..model.sparse_exec import MODES as EXECUTION_MODES
from ..model.sparse_exec import sparse_execution
from ..tasks import SPLITS, Task, TaskData, filter_prompts, run_answer_logits
from .discretize import Discretization


@dataclass
class PruneConfig:
    """Hyperparameters of one pruning run (Drori's defaults where the method (docs/method.md) gives them)."""

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
    with z drawn per node, fresh each step, see ``stochastic_z``) or "adversarial" (z in [0, 1] per node chosen by a
    restricted persistent adversary: one pattern per run and batch, carried over steps and moved by sign-gradient
    ascent on ``adversary_loss``) or "stochastic+adversarial" (both: the task loss is the mean of the two mixed
    losses). The size penalty and the logged counts always use the keep mask H(tau) itself."""
    stochastic_z: str = "uniform"
    """Distribution of the stochastic objective's z: "uniform" (U(0, 1)) or "bernoulli" (0 or 1 with p = 1/2)."""
    stochastic_per_prompt: bool = False
    """Draw the stochastic z per prompt instead of once per run and batch (shared by every position either way)."""
    adversary_steps: int = 1
    adversary_lr: float = 0.1
    adversary_loss: str = "task"
    """What the adversary maximizes: "task" (the task loss) or "kl" (KL from the model's next-token distribution to
    the pruned one at the answer position, over the whole vocabulary)."""
    seed_chunk: int | None = None
    """Runs per forward/backward pass within a step (gradients accumulate over chunks before one optimizer step).
    Runs are independent, so any value gives the same circuits up to float rounding; smaller passes keep the
    activations cache-sized, which is faster than one huge batch on CPU. None: 8 where every matrix runs dense
    (the narrow models, bitwise as all their results were made), fewer where some run sparse
    (``circuits.evaluate.masks_per_pass``: 1 at d512 with batch 64)."""
    search_trained_count: bool = False
    """Discretization also tries each run's count of nodes with tau > 0. The loss is not monotone in k, so this can
    find a smaller passing circuit; off by default until the walkthrough notebooks are re-verified with it."""
    filter_prompts: bool = False
    """Prune only on train prompts the model itself gets right (p > 0.3 full, > 0.8 binary; Drori's filter)."""
    split_names: bool = False
    """Divide the task's names into train/val/test too (``TaskSpec.split_names``), so held-out prompts have unseen
    names as well as unseen templates."""
    min_stochastic_f: float | None = None
    """Discretization also requires normalized faithfulness f >= this with the non-kept nodes ablated stochastically
    (z as ``stochastic_z`` / ``stochastic_per_prompt``, averaged over ``check_samples`` draws)."""
    min_adversarial_f: float | None = None
    """Discretization also requires f >= this under the restricted adversary (``check_adversary_steps`` steps of
    sign-gradient ascent on ``adversary_loss`` from a seeded start)."""
    check_samples: int = 4
    """z draws per candidate circuit for ``min_stochastic_f``."""
    check_adversary_steps: int = 10
    """Adversary steps per candidate circuit for ``min_adversarial_f``."""
    check_adversary_restarts: int = 1
    """Seeded starting patterns of the ``min_adversarial_f`` adversary; a circuit's loss is the worst over all."""
    execution: str = "auto"
    """How the model's weight-sparse matrices run (``model.sparse_exec``): "auto" (CSR matmuls where the measured
    rule says they pay: sparse and large enough; the shipped models stay dense), "dense" or "sparse". Sparse and
    dense agree at fp32 tolerance, and each choice is deterministic run to run."""

    def __post_init__(self) -> None:
        check_ablation(self.ablation)
        for name, allowed in (
            ("objective", OBJECTIVES),
            ("stochastic_z", STOCHASTIC_Z),
            ("adversary_loss", ADVERSARY_LOSSES),
            ("execution", EXECUTION_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; allowed: {list(allowed)}")
        for s in (self.train_split, self.eval_split):
            if s not in SPLITS:
                raise ValueError(f"PruneConfig split {s!r} unknown; allowed: {list(SPLITS)}")
        check_numbers(
            self,
            counts=(
                "steps",
                "batch_size",
                "eval_n",
                "search_points",
                "check_samples",
                "check_adversary_steps",
                "check_adversary_restarts",
            ),
            integers=("adversary_steps",),
            positive=("lr", "temperature", "target_loss"),
            non_negative=("weight_decay", "k_coef", "init_std", "adversary_lr"),
            fractions=("beta1", "beta2"),
        )
        if self.seed_chunk is not None:
            check_numbers(self, counts=("seed_chunk",))
        if not math.isfinite(self.init_mean):
            raise ValueError(f"PruneConfig.init_mean must be finite, got {self.init_mean!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PruneConfig:
        return strict_from_dict(cls, d)


OBJECTIVES = ("standard", "stochastic", "adversarial", "stochastic+adversarial")
STOCHASTIC_Z = ("uniform", "bernoulli")
ADVERSARY_LOSSES = ("task", "kl")


def mix_ablation(keep: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Kept nodes stay whole, the rest are ablated only by 1 - z: keep [S, N] with z [S, N] -> [S, N], or with
    z [S, B, N] (per prompt) -> [S, B, N]."""
    keep = keep[:, None] if z.dim() == 3 else keep
    return keep + (1 - keep) * z


def ste_mask(tau: torch.Tensor, temperature: float) -> torch.Tensor:
    """Heaviside(tau) forward, d sigmoid(tau / T) / d tau backward."""
    soft = torch.sigmoid(tau / temperature)
    return (tau > 0).to(tau.dtype) + soft - soft.detach()


class Pruner(Discretization):
    """Everything pruning needs for one (model, task, ablation): layout, ablation values, evaluation prompts;
    training the masks, and (``Discretization``) turning them into circuits."""

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
        task = task.with_names_split() if cfg.split_names else task
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
        self.evaluator = MaskEvaluator(
            model, self.layout, task.loss, self.ablation, cfg.frozen_ln, execution=cfg.execution
        )

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

    def losses(self, mask: torch.Tensor, data: TaskData, ablation, measure: str | Measure = "loss") -> torch.Tensor:
        """[S] mean ``measure`` (default the task loss) of each mask on its own block of ``data`` (S blocks of equal
        size), with ``ablation`` values for that batch (``ablation_values``); differentiable in the mask. The mask is
        [S, N], or [S, B, N] with one row per prompt of the block."""
        if mask.dim() == 3:  # one mask per prompt: S*B blocks of one prompt each
            S, B = mask.shape[:2]
            per_prompt = self.evaluator.run(mask.reshape(S * B, -1), data, measure, shared=False, values=ablation)
            return per_prompt.view(S, B).mean(1)
        return self.evaluator.run(mask, data, measure, shared=False, values=ablation, mean=True)

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
        if "adversarial" in c.objective:  # the adversary's starting pattern, per run from its own seed
            z_adv = torch.stack(
                [
                    torch.rand(
                        self.n_nodes, generator=torch.Generator().manual_seed(derived_seed("adversary", s) % 2**63)
                    )
                    for s in seeds
                ]
            ).to(self.device)
        B = c.batch_size
        chunk = c.seed_chunk or masks_per_pass(self.model, c.execution, B * self.pool.tokens.shape[1], 8)
        # Only the mask logits learn; the frozen weights may run as sparse matrices.
        with weights_frozen(self.model), sparse_execution(self.model, c.execution):
            for step in tqdm(range(c.steps), desc=f"prune {self.task.name} x{S}", disable=not progress, unit="step"):
                data = self.batch(seeds, step)
                losses, kepts = [], []
                for lo in range(0, S, chunk):  # chunks of runs; gradients accumulate
                    hi = min(S, lo + chunk)
                    part = data.index(range(lo * B, hi * B))
                    abl = self.ablation_values(seeds[lo:hi], part, step)
                    z = None if z_adv is None else z_adv[lo:hi]
                    task_loss, kept, z = self.objective_losses(
                        torch.stack(taus[lo:hi]), seeds[lo:hi], step, part, abl, z
                    )
                    if z_adv is not None:
                        z_adv[lo:hi] = z
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

    # ---- faithful objectives ---------------------------------------------------------------------------
    def draw_z(self, seeds: list[int], step: int, n_prompts: int) -> torch.Tensor:
        """The stochastic objective's z from (seed, step) alone: [S, N], or [S, n_prompts, N] with
        ``stochastic_per_prompt``; U(0, 1) or Bernoulli(1/2) as ``stochastic_z`` says."""
        shape = (n_prompts, self.n_nodes) if self.cfg.stochastic_per_prompt else (self.n_nodes,)
        z = torch.stack(
            [
                torch.rand(shape, generator=torch.Generator().manual_seed(derived_seed("stochastic", s, step) % 2**63))
                for s in seeds
            ]
        ).to(self.device)
        return (z < 0.5).to(z.dtype) if self.cfg.stochastic_z == "bernoulli" else z

    def objective_losses(
        self, tau: torch.Tensor, seeds: list[int], step: int, data: TaskData, abl, z_adv: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step's terms for runs with logits tau [S, N] on ``data`` (S blocks): the task loss [S] with the
        non-kept nodes ablated as the objective says, the kept-node count [S] of the keep mask H(tau) (what the
        penalty counts: its gradient does not depend on z), and the adversary's moved patterns [S, N] (adversarial;
        else None). Both faithful objectives together: the mean of the two mixed losses."""
        keep = ste_mask(tau, self.cfg.temperature)  # [S, N]
        kept = keep.sum(1)
        if self.cfg.objective == "standard":
            return self.losses(keep, data, abl), kept, None
        terms = []
        if "stochastic" in self.cfg.objective:
            terms.append(self.mixed_losses(keep, self.draw_z(seeds, step, len(data) // len(seeds)), data, abl))
        if "adversarial" in self.cfg.objective:
            z_adv = self.adversary(keep.detach(), z_adv, data, abl)
            terms.append(self.mixed_losses(keep, z_adv, data, abl))
        else:
            z_adv = None
        return torch.stack(terms).mean(0), kept, z_adv

    def mixed_losses(self, keep: torch.Tensor, z: torch.Tensor, data: TaskData, abl, measure="loss") -> torch.Tensor:
        """[S] mean ``measure`` of keep masks [S, N] whose other nodes are ablated only by 1 - z (z [S, N], or
        [S, B, N] per prompt), each mask on its own block of ``data``."""
        return self.losses(mix_ablation(keep, z), data, abl, measure)

    def adversary_measure(self, data: TaskData) -> str | Measure:
        """What the adversary ascends on ``data`` (or on masks' repeats of it): "loss", or the per-prompt KL from the
        unpruned model's answer distribution to the pruned one."""
        if self.cfg.adversary_loss == "task":
            return "loss"
        with torch.no_grad():
            ref = run_answer_logits(self.model, data).float().log_softmax(-1)  # [n, V]

        def kl_to_model(logits: torch.Tensor, _data: TaskData) -> torch.Tensor:
            log_q = logits.float().log_softmax(-1)  # [C*n, V], C repeats of the n prompts
            p = ref.repeat(len(log_q) // len(ref), 1)
            return F.kl_div(log_q, p, log_target=True, reduction="none").sum(-1)

        return kl_to_model

    def adversary(
        self, m: torch.Tensor, z: torch.Tensor, data: TaskData, abl, steps: int | None = None
    ) -> torch.Tensor:
        """Restricted adversary: per run one ablation pattern z in [0, 1]^N for the non-kept nodes, shared by the
        whole batch and every position, moved by ``steps`` (default ``adversary_steps``) of sign-gradient ascent on
        ``adversary_loss``."""
        measure = self.adversary_measure(data)
        for _ in range(self.cfg.adversary_steps if steps is None else steps):
            z = z.detach().requires_grad_(True)
            loss = self.mixed_losses(m, z, data, abl, measure).sum()
            (grad,) = torch.autograd.grad(loss, z)
            z = (z + self.cfg.adversary_lr * grad.sign()).clamp(0.0, 1.0)
        return z.detach()


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
            **task_record(pruner.task),
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
            **{key: disc[key][i] for key in ("stochastic_f", "adversarial_f") if key in disc},
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
