"""Loading a model directory with its tokenizer, sampling, and its summary (``sparse-circuits info``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.config import strict_from_dict
from ..core.storage import CheckpointError
from ..data.batches import BatchStream
from ..data.sources import CorpusConfig
from ..data.tokenizer import decode, encode, eos_id, load_tokenizer
from . import checkpoint as ckpt
from .gpt import NODE_SITES, SparseGPT
from .sparse_exec import sparse_execution


def load(model_dir: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer, config) from a model directory; ``model.corpus`` is the corpus it was trained on."""
    model, config = ckpt.load_model(model_dir, device)
    ckpt.check_tokenizer(model_dir, config)
    tok = load_tokenizer(Path(model_dir) / ckpt.TOKENIZER_FILE)
    if tok.get_vocab_size() != model.cfg.vocab_size:
        raise CheckpointError(
            f"{Path(model_dir) / ckpt.TOKENIZER_FILE} has {tok.get_vocab_size()} tokens, model expects {model.cfg.vocab_size}"
        )
    model.corpus = strict_from_dict(CorpusConfig, config.get("corpus", {}), what="corpus config")
    return model, tok, config


def model_corpus(model: SparseGPT, corpus: CorpusConfig | None = None) -> CorpusConfig:
    """The corpus held-out text comes from: ``corpus`` if given, else the one the model was trained on
    (``model.corpus``, recorded by ``load``), else the default (synthetic) corpus for a model built in memory."""
    if corpus is not None:
        return corpus
    return model.corpus if model.corpus is not None else CorpusConfig()


def lm_loss(model: SparseGPT, rows: torch.Tensor) -> torch.Tensor:
    logits = model(rows[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())


@torch.no_grad()
def evaluate_lm(model: SparseGPT, stream: BatchStream, n_batches: int, device, execution: str = "auto") -> float:
    """Mean next-token loss over the first ``n_batches`` batches of a (held-out) stream; ``execution``: how the
    weight-sparse matrices run ("auto", "dense" or "sparse", see ``sparse_exec``)."""
    was_training = model.training
    model.eval()
    with sparse_execution(model, execution):
        losses = [float(lm_loss(model, stream.batch(i).to(device))) for i in range(n_batches)]
    model.train(was_training)
    return sum(losses) / len(losses)


def prompt_ids(tok, text: str) -> list[int]:
    """A prompt as the model saw text in training: <eos> then the tokens."""
    return [eos_id(tok), *encode(tok, text)]


@torch.no_grad()
def sample(
    model: SparseGPT,
    tok,
    prompt: str,
    max_new_tokens: int = 40,
    temperature: float = 0.8,
    seed: int = 0,
    stop_at_eos: bool = True,
) -> str:
    """Prompt plus a sampled continuation (greedy when temperature is 0)."""
    if not temperature >= 0 or max_new_tokens < 0:  # "not >=" also refuses NaN
        raise ValueError(f"sample needs temperature >= 0 and max_new_tokens >= 0, got {temperature}, {max_new_tokens}")
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = prompt_ids(tok, prompt)
    eos = eos_id(tok)
    start = len(ids)
    for _ in range(max_new_tokens):
        ctx = torch.tensor([ids[-model.cfg.n_ctx :]], device=device)
        logits = model(ctx)[0, -1].float().cpu()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen))
        if nxt == eos and stop_at_eos:
            break
        ids.append(nxt)
    return decode(tok, ids[1:start]) + " || " + decode(tok, ids[start:])


def model_info(model_dir: str | Path, val_batches: int = 8, device: str | torch.device = "cpu") -> dict:
    """Summary of a model directory; the nonzero fraction is measured over the sparsified matrices and the
    validation loss is recomputed on held-out corpus text."""
    model, tok, config = load(model_dir, device)
    weights = {n: w for n, (w, _) in model.sparsifiable_weights().items()}
    nz, total = nonzero_fraction(weights)
    corpus = model.corpus
    stream = BatchStream(corpus, tok, model.cfg.n_ctx, config.get("train", {}).get("batch_size", 32), "val")
    n_params = model.n_params
    dense_rest = n_params - total  # biases, norms, sinks, bigram: never sparsified
    results = config.get("results", {})
    return {
        "name": config.get("name", Path(model_dir).name),
        "d_model": model.cfg.d_model,
        "n_layer": model.cfg.n_layer,
        "n_head": model.cfg.n_head,
        "l0_target": config.get("train", {}).get("l0_target", 1.0),
        "nonzero_fraction": nz / total,
        "n_params": n_params,
        "n_nonzero": nz + int(sum(int((p != 0).sum()) for n, p in model.named_parameters() if n not in weights)),
        "n_nonzero_sparsified": nz,
        "n_dense_other": dense_rest,
        "abstopk_sites": list(model.cfg.abstopk_sites),
        "val_loss": evaluate_lm(model, stream, val_batches, device),
        "train_tokens": results.get("train_tokens"),
        "vocab_size": model.cfg.vocab_size,
        "package_version": config.get("package_version"),
        "git_commit": config.get("git_commit"),
    }


@torch.no_grad()
def activation_density(
    model: SparseGPT,
    tok,
    corpus: CorpusConfig | None = None,
    n_batches: int = 2,
    batch_size: int = 16,
    execution: str = "auto",
) -> dict[str, list[float]]:
    """Fraction of nonzero activations at each node site (per layer) on held-out corpus text (``execution`` as
    in ``evaluate_lm``)."""
    device = next(model.parameters()).device
    stream = BatchStream(model_corpus(model, corpus), tok, model.cfg.n_ctx, batch_size, "val")
    hooks = {
        (layer, site): name for layer in range(model.cfg.n_layer) for site, name in model.node_hook_names(layer).items()
    }
    nonzero = dict.fromkeys(hooks, 0.0)
    total = dict.fromkeys(hooks, 0)
    with sparse_execution(model, execution):
        for i in range(n_batches):
            _, cache = model.run_with_cache(stream.batch(i).to(device)[:, :-1], names_filter=list(hooks.values()))
            for key, name in hooks.items():
                nonzero[key] += float((cache[name] != 0).sum())
                total[key] += cache[name].numel()
    return {
        site: [nonzero[(layer, site)] / total[(layer, site)] for layer in range(model.cfg.n_layer)]
        for site in NODE_SITES
    }


def weight_density(model: SparseGPT) -> dict[str, float]:
    """Fraction of nonzero entries of each sparsified weight matrix."""
    return {name: float((w != 0).float().mean()) for name, (w, _) in model.sparsifiable_weights().items()}


def nonzero_fraction(weights: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(nonzero count, total count) over the given matrices."""
    nz = sum(int((w != 0).sum()) for w in weights.values())
    return nz, sum(w.numel() for w in weights.values())
