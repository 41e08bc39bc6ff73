"""The model and its pruned model on the same prompts: caches of both, and the measures that compare them.

Every comparison starts from ``run_pair``: one forward pass of the model and one of the model pruned to a
circuit (``circuit.run``: nodes outside it ablated, norms frozen at the model's scales when the circuit was
pruned with them), both through the model's own AbsTopK. The measures here are the only definitions of
entropy, total-variation distance and activation correlation in the package, so that every notebook and
figure reports the same numbers for the same question.

Attention rows are read at each prompt's answer position with the sink as column 0 (token position p is column
p + 1); positions count tokens of ``data.tokens`` (0 is the leading ``<eos>``).
"""

from __future__ import annotations

import torch

from ..circuits.evaluate import circuit_frozen_ln
from ..circuits.layout import NodeLayout, token_text
from ..model.gpt import SparseGPT
from ..model.names import hook_name
from ..tasks import TaskData


@torch.no_grad()
def run_pair(
    model: SparseGPT, circuit, tokens: torch.Tensor, names, ablation=None, frozen_ln: bool | None = None
) -> tuple[dict, dict]:
    """(original cache, pruned cache) of the hooks ``names`` on ``tokens``, on the CPU. The pruned pass is
    ``circuit.run`` (with frozen norms when the circuit was pruned with them); both keep the model's AbsTopK."""
    tokens = tokens.to(next(model.parameters()).device)
    _, orig = model.run_with_cache(tokens, names_filter=names)
    with circuit.run(model, ablation, frozen_ln_tokens=tokens if circuit_frozen_ln(circuit, frozen_ln) else None):
        _, pruned = model.run_with_cache(tokens, names_filter=names)
    return {k: v.cpu() for k, v in orig.items()}, {k: v.cpu() for k, v in pruned.items()}


def answer_residual_rms(model: SparseGPT, circuit, data: TaskData, ablation=None) -> tuple[torch.Tensor, torch.Tensor]:
    """([n] model, [n] pruned) RMS of the residual stream entering the final norm at each prompt's answer
    position: the activation itself, not the scale the norm divides by (``run_pair``: norms frozen when the
    circuit was pruned with them). Drori's App. C: pruning shrinks it and the final norm scales it back up."""
    name = hook_name("resid_post", model.cfg.n_layer - 1)
    orig, pruned = run_pair(model, circuit, data.tokens, [name], ablation)
    rows = torch.arange(len(data))
    rms = lambda x: x[rows, data.last.cpu()].float().pow(2).mean(-1).sqrt()  # noqa: E731
    return rms(orig[name]), rms(pruned[name])


def prompt_tokens(tok, data: TaskData) -> list[list[str]]:
    """Each prompt's token strings up to its answer position."""
    return [[token_text(tok, t) for t in row[: int(last) + 1].tolist()] for row, last in zip(data.tokens, data.last)]


# ----------------------------------------------------------------------------------------- measures


def entropy(p: torch.Tensor) -> torch.Tensor:
    """[..., K] distributions -> [...] entropies (nats); zero probabilities contribute nothing."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """[..., K] distributions -> [...] total-variation distance, in [0, 1]."""
    return 0.5 * (p - q).abs().sum(-1)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of matching columns of [P, M] a and b; NaN where either is constant (e.g. a node
    always zeroed by AbsTopK has no defined correlation)."""
    a, b = a - a.mean(0), b - b.mean(0)
    norms = a.norm(dim=0) * b.norm(dim=0)
    return torch.where(norms > 1e-9, (a * b).sum(0) / norms.clamp_min(1e-12), float("nan"))


# ---------------------------------------------------------------------------------------- attention


def pattern_hook(layer: int | str) -> str:
    """The cache name of a layer's attention pattern ([B, H, T, 1 + T], sink in column 0); ``"*"``: every layer."""
    return hook_name("attn.pattern", layer)


def patterns_at_answer(cache: dict, layer: int, head: int, last: torch.Tensor) -> torch.Tensor:
    """[B, 1 + T] attention of one head from each prompt's answer position ``last`` [B], sink in column 0."""
    pat = cache[pattern_hook(layer)][:, head]  # [B, T, 1 + T]
    return pat[torch.arange(pat.shape[0]), last.cpu()].float()


def pattern_summary(original: dict, pruned: dict, layer: int, head: int, last: torch.Tensor, keys) -> dict:
    """One head's answer-position attention from the two caches of ``run_pair``: both rows ("original",
    "pruned", [n, 1 + T]), their total-variation distance per prompt ("tv") and its mean ("tv_mean"), the
    entropies, and the column names ``keys`` (``pattern_keys``)."""
    po, pp = patterns_at_answer(original, layer, head, last), patterns_at_answer(pruned, layer, head, last)
    tv = total_variation(po, pp)
    return {
        "layer": layer,
        "head": head,
        "original": po,
        "pruned": pp,
        "tv": tv,
        "tv_mean": float(tv.mean()),
        "entropy_original": entropy(po),
        "entropy_pruned": entropy(pp),
        "keys": keys,
    }


def pattern_keys(tok, data: TaskData) -> list[list[str]]:
    """Column names of answer-position attention rows per prompt: the sink, then the prompt's tokens."""
    return [["<sink>", *t] for t in prompt_tokens(tok, data)]


def head_patterns(
    model: SparseGPT,
    circuit,
    data: TaskData,
    layer: int,
    head: int,
    ablation=None,
    tok=None,
    frozen_ln: bool | None = None,
) -> dict:
    """Attention from each prompt's answer position in the original and the pruned model, sink included.

    original / pruned are [n_prompts, 1 + T] (column 0 the sink, column j + 1 token j); tv [n] is the
    total-variation distance between them, tv_mean its mean; keys are the column names per prompt.
    """
    orig, pruned = run_pair(model, circuit, data.tokens, [pattern_hook(layer)], ablation, frozen_ln)
    return pattern_summary(orig, pruned, layer, head, data.last, pattern_keys(tok, data))


# ------------------------------------------------------------------------------ per-circuit summaries


@torch.no_grad()
def activation_agreement(model, circuit, data, ablation: dict | None = None, frozen_ln: bool = False) -> dict:
    """Per circuit node: Pearson correlation of its activations in the model and in the pruned model over every
    prompt and position (D3), and whether it flips sign (correlation < 0)."""
    layout = NodeLayout(model)
    orig, pruned = run_pair(model, circuit, data.tokens, [s.hook for s in layout.slices], ablation, frozen_ln)
    valid = (torch.arange(data.tokens.shape[1])[None] <= data.last[:, None]).flatten()  # real tokens, not padding
    idx = circuit.nodes.nonzero().flatten().tolist()
    corr = torch.full((len(idx),), float("nan"))
    for s in layout.slices:  # one vectorized correlation per site
        sel = [(i, n - s.start) for i, n in enumerate(idx) if s.start <= n < s.stop]
        if not sel:
            continue
        rows, ch = torch.tensor([a for a, _ in sel]), torch.tensor([b for _, b in sel])
        a = orig[s.hook].flatten(2).flatten(0, 1)[valid][:, ch]  # [real positions, nodes of this site]
        b = pruned[s.hook].flatten(2).flatten(0, 1)[valid][:, ch]
        corr[rows] = correlation(a, b)
    known = corr[~corr.isnan()]
    return {
        "labels": [layout.label(i) for i in idx],
        "correlation": corr.tolist(),
        "median_correlation": float(known.median()) if len(known) else float("nan"),
        "sign_flipped_fraction": float((known < 0).float().mean()) if len(known) else float("nan"),
    }


@torch.no_grad()
def attention_agreement(model, circuit, data, ablation: dict | None = None, frozen_ln: bool = False) -> list[dict]:
    """For every head with a kept q, k or v node: attention from the answer position in the model and the pruned
    model (sink column included), their total-variation distance and entropies (D2)."""
    layout = NodeLayout(model)
    H, E = model.cfg.n_head, model.cfg.d_head
    names = [pattern_hook(layer) for layer in range(model.cfg.n_layer)]
    orig, pruned = run_pair(model, circuit, data.tokens, names, ablation, frozen_ln)
    n_keys = (data.last + 2).float()  # sink + tokens up to the answer
    out = []
    for layer in range(model.cfg.n_layer):
        kept = torch.stack([circuit.nodes[layout.sl(layer, s)].view(H, E).any(1) for s in ("q", "k", "v")])  # [3, H]
        for h in kept.any(0).nonzero().flatten().tolist():
            po = patterns_at_answer(orig, layer, h, data.last)  # [N, 1 + T]
            pp = patterns_at_answer(pruned, layer, h, data.last)
            out.append(
                {
                    "layer": layer,
                    "head": h,
                    "q": bool(kept[0, h]),
                    "k": bool(kept[1, h]),
                    "v": bool(kept[2, h]),
                    "tv": float(total_variation(po, pp).mean()),
                    "entropy_model": float(entropy(po).mean()),
                    "entropy_pruned": float(entropy(pp).mean()),
                    "entropy_uniform": float(n_keys.log().mean()),
                }
            )
    return out
