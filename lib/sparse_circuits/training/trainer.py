"""Weight-sparse training (docs/method.md, Weight-sparse training), resumable and deterministic.

Every optimizer step: loss -> gradients rescaled to RMS 1 -> AdamW with the warmup/decay x sharkfin rate ->
each weight matrix projected onto its top-k entries at the current L0 (annealed from dense). The dense
baseline is the same trainer with ``l0_target = 1`` and a model without AbsTopK. Under torchrun the same
trainer runs data-parallel (``training.distributed``), equal to one process at the same global batch.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch
import yaml

from ..core import storage
from ..core.config import check_numbers, strict_from_dict
from ..core.device import default_device
from ..core.progress import tqdm
from ..data.batches import BatchStream
from ..data.sources import CorpusConfig, iter_texts
from ..data.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer, train_tokenizer
from ..model import checkpoint as ckpt
from ..model import sparse_exec
from ..model.gpt import ModelConfig, SparseGPT
from ..model.inference import evaluate_lm, lm_loss, nonzero_fraction
from . import distributed
from .sparsity import L0_SCHEDULES, l0_at, lr_at, normalize_grad_rms_, project_


@dataclass
class TrainConfig:
    """Optimization of one model. Defaults follow Gao et al. where the method (docs/method.md) names them."""

    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 32
    """Rows per step; each row has the model's n_ctx tokens."""
    lr: float = 3e-3
    """Base learning rate (before warmup/decay and the sharkfin 1/sqrt(L0) factor)."""
    warmup_frac: float = 0.01
    """Fraction of steps of linear warmup."""
    l0_target: float = 1.0
    """Final fraction of nonzero weights per matrix; 1 trains a dense model."""
    l0_schedule: str = "linear"
    """Annealing from dense to the target: "linear" or "exponential" (target ** progress)."""
    anneal_start: float = 0.01
    """Fraction of training at which annealing starts."""
    anneal_end: float = 0.5
    """Fraction of training at which L0 reaches its target."""
    min_per_neuron: int = 4
    """Nonzero weights every neuron keeps (inputs of q/k/v channels and MLP neurons, outputs of v channels and MLP neurons)."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay."""
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 0.1
    """Adam epsilon; large (Gao) because gradients are normalized to RMS 1."""
    grad_rms_norm: bool = True
    """Rescale gradients every step so that their RMS over all parameters is 1."""
    seed: int = 0
    """Seed of the initialization (the data order comes from the corpus seed)."""
    eval_every: int = 250
    eval_batches: int = 8
    """Held-out batches (fixed) for the validation loss."""
    log_every: int = 10
    checkpoint_every: int = 250
    """Steps between atomic resumable checkpoints."""
    bf16: bool | None = None
    """bf16 autocast of the forward pass (weights, gradients and optimizer stay fp32); None: on CUDA, off on CPU."""

    def __post_init__(self) -> None:
        check_numbers(
            self,
            counts=("steps", "batch_size", "eval_every", "eval_batches", "log_every", "checkpoint_every"),
            integers=("min_per_neuron", "seed"),
            positive=("lr", "eps"),
            non_negative=("weight_decay",),
            fractions=("warmup_frac", "l0_target", "anneal_start", "anneal_end", "beta1", "beta2"),
        )
        if self.l0_schedule not in L0_SCHEDULES:
            raise ValueError(
                f"TrainConfig.l0_schedule: unknown schedule {self.l0_schedule!r}; allowed: {list(L0_SCHEDULES)}"
            )
        if not 0.0 < self.l0_target <= 1.0:
            raise ValueError(f"TrainConfig.l0_target must be in (0, 1], got {self.l0_target}")
        if not 0.0 <= self.anneal_start < self.anneal_end <= 1.0:
            raise ValueError("TrainConfig needs 0 <= anneal_start < anneal_end <= 1")
        if self.bf16 not in (None, True, False):
            raise ValueError(f"TrainConfig.bf16 must be true, false or null, got {self.bf16!r}")


@dataclass
class RunConfig:
    """Everything that defines a trained model: its name, architecture, optimization and data."""

    name: str
    model: dict
    """ModelConfig fields except vocab_size, which comes from the tokenizer."""
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def __post_init__(self) -> None:
        self.model = dict(self.model)
        if "vocab_size" in self.model:
            raise ValueError("model.vocab_size comes from the tokenizer; remove it from the config")

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A run from its dict form (a config file); an unknown field in any section is an error naming it."""
        return strict_from_dict(cls, d, what="run config")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text()
        try:
            d = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as e:
            reason = " ".join(str(e).split())  # the parser's multi-line message on one line
            raise ValueError(f"{path}: not valid YAML or JSON: {reason}") from e
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "model": dict(self.model),
            "train": asdict(self.train),
            "corpus": asdict(self.corpus),
        }


def make_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW as the method sets it, as one fused kernel over all parameters where the device has one (it
    equals the per-parameter loop to fp32 rounding), else one foreach pass (bitwise equal to the loop)."""
    kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if device.type in ("cpu", "cuda"):
        return torch.optim.AdamW(params, fused=True, **kw)
    return torch.optim.AdamW(params, foreach=True, **kw)


def make_tokenizer(corpus: CorpusConfig, n_texts: int = 20000):
    """The synthetic corpus's tokenizer covers its whole vocabulary; a real corpus's is trained on its first texts."""
    if corpus.source == "synthetic":
        return build_tokenizer()
    return train_tokenizer(islice(iter_texts(corpus, "train"), n_texts))


class Trainer:
    """Holds the model, optimizer and streams of one run; ``run()`` trains to the end, resuming if possible."""

    CKPT = "checkpoint"

    def __init__(
        self,
        run: RunConfig,
        out_dir: str | Path,
        device: str | torch.device | None = None,
        execution: str = "auto",
    ) -> None:
        """execution: how the sparsified Linears multiply (``model.sparse_exec``): "auto" (CSR forward and input
        gradient where the measured rule says it pays at the current L0; the shipped narrow models stay dense),
        "dense" or "sparse". The weight gradient is dense either way; bf16 autocast always runs dense."""
        self.run_cfg, self.cfg = run, run.train
        self.out = Path(out_dir)
        self._refuse_finished_model()
        self.world = distributed.init()
        self.rows = distributed.rank_rows(self.cfg.batch_size, self.world)  # this rank's rows of every batch
        self.device = torch.device(device) if device is not None else default_device()
        if self.world.distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.world.local_rank)
        tok_path = self.out / ckpt.TOKENIZER_FILE
        # A busy directory is refused before the tokenizer is built; rank 0 builds it, the others read it.
        with distributed.main_rank_lock(self.out, self.world):
            if self.world.is_main:
                self.tokenizer = load_tokenizer(tok_path) if tok_path.exists() else make_tokenizer(run.corpus)
                if not tok_path.exists():
                    save_tokenizer(self.tokenizer, tok_path)
        distributed.barrier(self.world)
        if not self.world.is_main:
            self.tokenizer = load_tokenizer(tok_path)
        torch.manual_seed(self.cfg.seed)
        mcfg = ModelConfig(vocab_size=self.tokenizer.get_vocab_size(), **run.model)
        self.model = SparseGPT(mcfg).to(self.device)
        # The module the loss runs through: DDP (averaging gradients over ranks) or the model itself. Buffers
        # are never trained, so they need no broadcast.
        self.net = self.model
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        self.bf16 = self.cfg.bf16 if self.cfg.bf16 is not None else self.device.type == "cuda"
        self.sparse = self.model.sparsifiable_weights()
        self.execution = sparse_exec.enable_sparse_training(
            self.model, len(range(self.cfg.batch_size)[self.rows]) * mcfg.n_ctx, "dense" if self.bf16 else execution
        )
        self.opt = make_optimizer(self.model.parameters(), self.cfg, self.device)
        self.train_stream = BatchStream(run.corpus, self.tokenizer, mcfg.n_ctx, self.cfg.batch_size, "train")
        self.val_stream = BatchStream(run.corpus, self.tokenizer, mcfg.n_ctx, self.cfg.batch_size, "val")
        self.step = 0
        self.tokens = 0

    # --- schedules -------------------------------------------------------------------------------------
    def l0(self, step: int) -> float:
        c = self.cfg
        return l0_at(step / c.steps, c.l0_target, c.l0_schedule, c.anneal_start, c.anneal_end)

    def lr(self, step: int) -> float:
        return lr_at(step, self.cfg.steps, self.cfg.lr, self.l0(step), self.cfg.warmup_frac)

    # --- one step --------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict:
        batch = self.train_stream.batch(step)  # the global batch [batch_size, n_ctx + 1]
        rows = batch[self.rows].to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = lm_loss(self.net, rows)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients arrive averaged over ranks: the global batch's gradient
        grad_rms = normalize_grad_rms_(self.model.parameters()) if self.cfg.grad_rms_norm else float("nan")
        lr, l0 = self.lr(step), self.l0(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        for w, axis in self.sparse.values():
            project_(w.data, l0, axis, self.cfg.min_per_neuron)
        self.execution.refresh()  # the next forward multiplies by the projected weights
        self.tokens += batch.shape[0] * (batch.shape[1] - 1)
        return {
            "step": step + 1,
            "tokens": self.tokens,
            "loss": float(distributed.mean(loss.detach(), self.world)),
            "lr": lr,
            "l0": l0,
            "grad_rms": grad_rms,
        }

    # --- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write a complete checkpoint to a temporary directory, then swap it in with renames."""
        final, tmp, old = self.out / self.CKPT, self.out / (self.CKPT + ".tmp"), self.out / (self.CKPT + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        storage.save_tensors(tmp / "model.safetensors", self.model.state_dict())
        names = {id(p): n for n, p in self.model.named_parameters()}
        opt_tensors = {}
        for p, st in self.opt.state.items():
            for key, val in st.items():
                opt_tensors[f"{names[id(p)]}::{key}"] = val.reshape(1) if val.ndim == 0 else val
        storage.save_tensors(tmp / "optimizer.safetensors", opt_tensors, sparse_below=0.0)
        state = {"step": self.step, "tokens": self.tokens, "run": self._resume_settings()}
        storage.write_json(tmp / "state.json", state)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _refuse_finished_model(self) -> None:
        """A directory with model files and no checkpoint holds a finished model, which is never overwritten."""
        if (self.out / ckpt.WEIGHTS_FILE).exists() and self._checkpoint_dir() is None:
            raise FileExistsError(
                f"{self.out} already holds a trained model ({ckpt.WEIGHTS_FILE}); choose another --out or delete it"
            )

    def _checkpoint_dir(self) -> Path | None:
        for name in (self.CKPT, self.CKPT + ".old"):  # .old survives a kill between the two renames
            if (self.out / name / "state.json").exists():
                return self.out / name
        return None

    def _resume_settings(self) -> dict:
        """What a checkpoint may only be continued under: the architecture, optimization and data (not the name)."""
        return {key: value for key, value in self.run_cfg.to_dict().items() if key != "name"}

    def _check_resume(self, state_file: Path, state: dict) -> None:
        """Refuse to continue a checkpoint under other settings, or with fewer steps than it already has."""
        recorded, current = state.get("run"), self._resume_settings()
        if recorded is not None and "bf16" not in recorded.get("train", {"bf16": None}):
            # Written before the bf16 setting existed: it trained under the default.
            recorded = {**recorded, "train": {**recorded["train"], "bf16": None}}
        if recorded is not None and recorded != current:
            changed = [
                f"{section}.{key}: {recorded[section].get(key)!r} -> {value!r}"
                for section, fields in current.items()
                for key, value in fields.items()
                if recorded.get(section, {}).get(key) != value
            ]
            raise storage.CheckpointError(
                f"{state_file}: the checkpoint was written under another run config ({'; '.join(changed)}); "
                "resume with the same settings or choose another --out"
            )
        if state["step"] > self.cfg.steps:
            raise storage.CheckpointError(
                f"{state_file}: the checkpoint is at step {state['step']}, beyond steps={self.cfg.steps}"
            )

    def load_checkpoint(self) -> bool:
        d = self._checkpoint_dir()
        if d is None:
            return False
        state = storage.read_json(d / "state.json")
        self._check_resume(d / "state.json", state)
        expected = {k: tuple(t.shape) for k, t in self.model.state_dict().items()}
        self.model.load_state_dict(storage.load_tensors(d / "model.safetensors", expected))
        opt_t = storage.load_tensors(d / "optimizer.safetensors")
        params = dict(self.model.named_parameters())
        for key, val in opt_t.items():
            pname, field_ = key.split("::")
            p = params[pname]
            # A fused optimizer keeps its step counts on the parameters' device.
            on = self.device if field_ != "step" or self.opt.defaults.get("fused") else "cpu"
            self.opt.state[p][field_] = (val.reshape(()) if field_ == "step" else val).to(on)
        self.step, self.tokens = state["step"], state["tokens"]
        self.execution.refresh()
        return True

    def _metrics_append(self, rec: dict) -> None:
        with open(self.out / ckpt.METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be written again)."""
        path = self.out / ckpt.METRICS_FILE
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
        storage.atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    # --- the loop --------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None, progress: bool = True) -> dict:
        """Train to ``cfg.steps`` (or stop after ``stop_after`` steps, for tests), then write the model files;
        the output directory is locked against a second writer meanwhile (by rank 0, the only writer)."""
        with distributed.main_rank_lock(self.out, self.world):
            result = self._run(stop_after, progress)
        distributed.barrier(self.world)  # no rank returns before rank 0's files are complete
        return result

    def _run(self, stop_after: int | None, progress: bool) -> dict:
        self._refuse_finished_model()  # again under the lock: another writer may have finished meanwhile
        resumed = self.load_checkpoint()
        main = self.world.is_main
        if main:
            self._truncate_metrics() if resumed else (self.out / ckpt.METRICS_FILE).unlink(missing_ok=True)
        c = self.cfg
        end = c.steps if stop_after is None else min(c.steps, stop_after)
        bar = tqdm(
            total=c.steps, initial=self.step, desc=self.run_cfg.name, disable=not (progress and main), unit="step"
        )
        t0 = time.perf_counter()
        while self.step < end:
            rec = self.train_step(self.step)
            self.step += 1
            bar.update(1)
            if not main:
                continue
            if self.step % c.log_every == 0 or self.step == c.steps:
                rec["time_s"] = round(time.perf_counter() - t0, 3)
                self._metrics_append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", l0=f"{rec['l0']:.3g}")
            if self.step % c.eval_every == 0 or self.step == c.steps:
                val = evaluate_lm(self.model, self.val_stream, c.eval_batches, self.device)
                self._metrics_append({"step": self.step, "val_loss": val})
            if self.step % c.checkpoint_every == 0 and self.step < c.steps:
                self.save_checkpoint()
        bar.close()
        if self.step < c.steps:
            if main:
                self.save_checkpoint()
            return {"finished": False, "step": self.step}
        return self.finish() if main else {"finished": True, "step": self.step}

    def finish(self) -> dict:
        val = evaluate_lm(self.model, self.val_stream, self.cfg.eval_batches, self.device)
        weights = {n: w for n, (w, _) in self.sparse.items()}
        nz, total = nonzero_fraction(weights)
        config = self.run_cfg.to_dict()
        config["results"] = {
            "train_tokens": self.tokens,
            "val_loss": val,
            "n_nonzero_sparsified": nz,
            "nonzero_fraction": nz / total,
            "steps": self.step,
        }
        ckpt.save_model(self.model.cpu(), self.out, config)
        self.model.to(self.device)
        shutil.rmtree(self.out / self.CKPT, ignore_errors=True)
        return {"finished": True, **config["results"]}


def train(run: RunConfig, out_dir: str | Path, device=None, progress: bool = True, execution: str = "auto") -> dict:
    """Train (or resume) the run into ``out_dir``; returns final results (``execution``: see ``Trainer``)."""
    return Trainer(run, out_dir, device, execution).run(progress=progress)
