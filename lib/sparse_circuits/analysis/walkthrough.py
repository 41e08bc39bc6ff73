"""Numbers for walking through a circuit node by node (notebooks 04-06; their figures are in
``viz.walkthrough_figures``).

The inspector (``inspection``) answers "what does this node do" one node at a time; a walkthrough needs the
same evidence summarized over prompts: where a node fires (which token, which group of prompts), what each
final writer contributes to the answer logits, where a head attends, and how a node's activation depends on
token position. Everything here reads caches of one forward pass of the model and one of the pruned model
(``caches``), so a notebook computes them once.

Conventions: ``values`` are [n_prompts, T] activations of one node (``inspection.node_values``); positions count tokens
of ``data.tokens`` (position 0 is the ``<eos>`` every prompt starts with); attention patterns have the sink as
column 0, so token position p is column p + 1.
"""

from __future__ import annotations

import torch

from ..circuits.layout import NodeLayout, node_label, parse_label, token_text
from ..model.names import NORM_SCALES, hook_name
from ..tasks import TaskData, answer_logits, metrics_from_logits
from .compare import run_pair

FINAL_SCALE_HOOK = hook_name("ln_final.scale")
EMBED_HOOK = hook_name("embed")
WRITER_SITES = ("attn_out", "mlp_out")
READER_NORMS = {"attn_in": "ln1", "mlp_in": "ln2"}


# ------------------------------------------------------------------------------------------ caches


def cache_names(model) -> list[str]:
    """Hooks a walkthrough reads: every node site, every attention pattern, the embedding, every norm's scale."""
    return [s.hook for s in NodeLayout(model).slices] + [hook_name("attn.pattern", "*"), EMBED_HOOK, NORM_SCALES]


def caches(model, circuit, data: TaskData, ablation=None, frozen_ln: bool | None = None) -> tuple[dict, dict]:
    """(original, pruned) caches of ``cache_names`` on the prompts, on the CPU (``compare.run_pair``)."""
    return run_pair(model, circuit, data.tokens, cache_names(model), ablation, frozen_ln)


@torch.no_grad()
def full_answer_logits(model, data: TaskData) -> torch.Tensor:
    """[n, V] logits at the answer positions from a full forward pass. Unlike ``tasks.task_answer_logits`` (which
    runs the last block at the answer positions only), this works inside ``circuit.run`` with per-position
    ablation values (resample), whose shapes fit only the full pass."""
    device = next(model.parameters()).device
    return answer_logits(model(data.tokens.to(device)), data).float().cpu()


def evaluate_full(model, data: TaskData, loss: str) -> dict:
    """``tasks.evaluate`` through ``full_answer_logits`` (any ablation values inside ``circuit.run``)."""
    return metrics_from_logits(full_answer_logits(model, data), data, loss)


# ------------------------------------------------------------------------------------------- heads


def node_heads(labels: list[str]) -> dict[str, tuple[int, int]]:
    """(layer, head) of every q, k or v node among ``labels``, by label (other nodes are left out)."""
    refs = {n: parse_label(n) for n in labels}
    return {n: (r.layer, r.head) for n, r in refs.items() if r.head is not None}


def qk_pairs(labels: list[str], layer: int, head: int) -> dict[str, tuple[str, str]]:
    """The q-k channel pairs of one head among ``labels``: a q node and a k node of the head at the same dimension,
    whose product is the pair's share of the attention score (``pair_score``). Named after the head and dimension,
    in the order of the q labels: {"h5.6": ("L1.q.h5.6", "L1.k.h5.6"), ...}."""
    refs = {n: parse_label(n) for n in labels}
    keys = {r.dim: n for n, r in refs.items() if (r.layer, r.site, r.head) == (layer, "k", head)}
    return {
        f"h{head}.{r.dim}": (n, keys[r.dim])
        for n, r in refs.items()
        if (r.layer, r.site, r.head) == (layer, "q", head) and r.dim in keys
    }


# --------------------------------------------------------------------------------------- positions


def valid_mask(data: TaskData, include_eos: bool = False) -> torch.Tensor:
    """[n, T] True on each prompt's real tokens (up to its answer position), without position 0 unless asked."""
    pos = torch.arange(data.tokens.shape[1])[None]
    mask = pos <= data.last.cpu()[:, None]
    if not include_eos:
        mask &= pos > 0
    return mask


def slot_positions(data: TaskData, tok, slot: str) -> torch.Tensor:
    """[n] position of the token filling ``slot`` (e.g. "name", "name_1") in each prompt: its first occurrence
    after the leading ``<eos>``. The slot's value must be one token (names are)."""
    out = []
    for i, a in enumerate(data.assignments):
        if slot not in a:
            raise KeyError(f"prompt {i} has no slot {slot!r}; slots: {sorted(a)}")
        tid = tok.token_to_id(a[slot])
        if tid is None:
            raise ValueError(f"slot value {a[slot]!r} is not one token of the tokenizer")
        row = data.tokens[i, 1 : int(data.last[i]) + 1].cpu()
        hits = (row == tid).nonzero().flatten()
        if len(hits) == 0:
            raise ValueError(f"prompt {i} ({data.texts[i]!r}) does not contain {a[slot]!r} as a token")
        out.append(int(hits[0]) + 1)
    return torch.tensor(out)


def at_positions(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[n, T] values, [n] positions -> [n] each prompt's value at its position."""
    return values[torch.arange(values.shape[0]), positions.to(values.device)]


def group_means(x: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of [n] values within each group (a [n] bool mask); NaN for an empty group."""
    return {g: float(x[m].float().mean()) if bool(m.any()) else float("nan") for g, m in groups.items()}


def separation(x: torch.Tensor, mask: torch.Tensor, rel_tol: float = 0.0) -> float:
    """Standardized difference of [n] values between two groups (d'): (mean where ``mask`` - mean elsewhere) over
    the pooled standard deviation; 0 when both groups are constant. |d'| > 1 is a usable classifier.
    With ``rel_tol`` > 0 it is also 0 when the pooled standard deviation is below ``rel_tol`` times the largest
    |value|: a node constant up to float rounding must not get a huge d' from rounding noise."""
    a, b = x[mask].float(), x[~mask].float()
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    s = float(((a.var() + b.var()) / 2).sqrt())
    floor = max(1e-12, rel_tol * float(x.abs().max())) if rel_tol > 0 else 1e-12
    return float(a.mean() - b.mean()) / s if s > floor else 0.0


def reordered_pairs(data: TaskData) -> list[tuple[int, int]]:
    """Pairs of prompts made of the same tokens in another order with different answers (e.g. "do you like the
    cake" / "you do like the cake"): (index of the one with the lower answer id, the other), in data order."""
    seen: dict[tuple, list[int]] = {}
    for i in range(len(data)):
        key = tuple(sorted(data.tokens[i, : int(data.last[i]) + 1].tolist()))
        seen.setdefault(key, []).append(i)
    pairs = []
    for idx in seen.values():
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                if int(data.correct[i]) != int(data.correct[j]):
                    pairs.append((i, j) if int(data.correct[i]) < int(data.correct[j]) else (j, i))
    return sorted(pairs)


def selectivity(values: torch.Tensor, data: TaskData, positions: torch.Tensor) -> dict[str, float]:
    """How much a node fires at given positions (one per prompt) compared with every other real token:
    mean |value| at the positions, elsewhere (``<eos>`` excluded), and their ratio."""
    valid = valid_mask(data)
    at = torch.zeros_like(valid)
    at[torch.arange(len(positions)), positions] = True
    a = values.abs()
    on, off = float(a[at].mean()), float(a[valid & ~at].mean()) if bool((valid & ~at).any()) else float("nan")
    return {"at": on, "elsewhere": off, "ratio": on / off if off > 0 else float("inf")}


def token_means(values: torch.Tensor, data: TaskData, tok, min_count: int = 3) -> list[tuple[str, float, int]]:
    """(token, mean value, count) over every real token of the prompts (``<eos>`` excluded), for tokens seen
    at least ``min_count`` times, sorted from the highest mean to the lowest."""
    valid = valid_mask(data)
    ids, vals = data.tokens.cpu()[valid], values[valid].float()
    out = []
    for t in ids.unique().tolist():
        sel = ids == t
        if int(sel.sum()) >= min_count:
            out.append((token_text(tok, t), float(vals[sel].mean()), int(sel.sum())))
    return sorted(out, key=lambda r: -r[1])


def position_trend(values: torch.Tensor, data: TaskData) -> dict:
    """How a node's activation depends on token position (``<eos>`` excluded): Pearson correlation of value and
    position over every real token, and the mean value at each position (NaN where no prompt reaches it)."""
    valid = valid_mask(data)
    pos = torch.arange(values.shape[1])[None].expand_as(values)
    v, p = values[valid].float(), pos[valid].float()
    v0, p0 = v - v.mean(), p - p.mean()
    denom = float(v0.norm() * p0.norm())
    corr = float((v0 * p0).sum()) / denom if denom > 1e-12 else float("nan")
    count = valid.sum(0)
    by_pos = torch.where(count > 0, (values * valid).sum(0) / count.clamp_min(1), torch.tensor(float("nan")))
    return {"corr": corr, "by_position": by_pos.tolist(), "count": count.tolist()}


def pair_score(
    q_values: torch.Tensor, k_values: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, d_head: int
) -> torch.Tensor:
    """[n] contribution of one q-k channel pair (same head and channel) to the attention score of the query at
    ``q_pos`` for the key at ``k_pos``: q * k / sqrt(d_head). A head's score is the sum over its channel pairs, so
    in a circuit that keeps only some pairs, their scores add up to the whole score (before the softmax)."""
    return at_positions(q_values, q_pos) * at_positions(k_values, k_pos) / d_head**0.5


def attention_to(pattern: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[n, 1 + T] patterns from the answer position (sink in column 0), [n] token positions -> [n] weights."""
    return pattern[torch.arange(pattern.shape[0]), positions.to(pattern.device) + 1]


# ------------------------------------------------------------------------------------ logit effects


def _token_list(t) -> list[int]:
    return [int(x) for x in t] if isinstance(t, list | tuple) else [int(t)]


@torch.no_grad()
def direct_logit_effects(model, cache: dict, data: TaskData, plus, minus=None, labels: list[str] | None = None) -> dict:
    """Direct effect of each residual-stream writer on a logit difference at the answer position.

    The difference is ``mean(logit[plus]) - mean(logit[minus])`` (token ids or lists of them; ``minus=None``:
    the mean logit over the vocabulary), e.g. ``plus=he, minus=she``, or ``plus=[he, she]`` for "a pronoun
    comes next". The final residual stream is the embedding plus every attn_out and mlp_out channel, so with
    the final norm's scale s (from the cache) the difference is exactly ``sum_c x_c / s * g_c * u_c + bias``
    with ``u = W_U[plus].mean(0) - W_U[minus].mean(0)``. Returns {"effects": {label: [n]}} for ``labels``
    (default: every writer channel nonzero somewhere), "embed" [n], "rest" [n] (the other writer channels),
    "bias" (float) and "total" [n], which equals the logit difference.
    """
    nl = NodeLayout(model)
    rows, last = torch.arange(len(data)), data.last.cpu()
    W, g = model.unembed.weight.detach().cpu().float(), model.ln_final.weight.detach().cpu().float()
    b = model.unembed.bias.detach().cpu().float() if model.unembed.bias is not None else torch.zeros(W.shape[0])
    p = _token_list(plus)
    m = _token_list(minus) if minus is not None else list(range(W.shape[0]))
    direction = (W[p].mean(0) - W[m].mean(0)) * g  # [D]
    scale = cache[FINAL_SCALE_HOOK][rows, last, 0].float()  # [n]
    per = lambda x: x[rows, last].float() * direction / scale[:, None]  # noqa: E731  [n, D]
    embed = per(cache[EMBED_HOOK]).sum(-1)
    contrib: dict[str, torch.Tensor] = {}
    for layer in range(model.cfg.n_layer):
        for site in WRITER_SITES:
            vals = per(cache[nl.by_key[(layer, site)].hook])
            for c in (vals != 0).any(0).nonzero().flatten().tolist():
                contrib[node_label(layer, site, c, model.cfg.d_head)] = vals[:, c]
    zero = torch.zeros(len(data))
    wanted = list(contrib) if labels is None else list(labels)
    effects = {lab: contrib.get(lab, zero) for lab in wanted}
    rest = sum((v for k, v in contrib.items() if k not in effects), zero.clone())
    bias = float(b[p].mean() - b[m].mean())
    total = embed + rest + bias + sum(effects.values(), zero.clone())
    return {"effects": effects, "embed": embed, "rest": rest, "bias": bias, "total": total}


@torch.no_grad()
def residual_parts(model, cache: dict, label: str, positions: torch.Tensor) -> dict[str, torch.Tensor]:
    """What an attn_in or mlp_in node reads, split by source: the residual stream at its channel c is the
    embedding plus every earlier attn_out / mlp_out channel c, divided by the reading norm's scale and times its
    weight at c. Returns {"embed": [n], "L0.mlp_out.58": [n], ...} at one position per prompt (sources that are
    zero there are left out); the parts sum to the node's value before its AbsTopK."""
    node = parse_label(label)
    layer, site, c = node.layer, node.site, node.dim
    if site not in READER_NORMS:
        raise ValueError(f"{label!r} is not an attn_in or mlp_in node")
    nl = NodeLayout(model)
    rows, pos = torch.arange(len(positions)), positions.cpu()
    norm = getattr(model.blocks[layer], READER_NORMS[site])
    factor = float(norm.weight[c]) / cache[hook_name(f"{READER_NORMS[site]}.scale", layer)][rows, pos, 0].float()
    parts = {"embed": cache[EMBED_HOOK][rows, pos, c].float() * factor}
    for wl in range(layer + 1):
        for ws in WRITER_SITES:
            if wl == layer and (site == "attn_in" or ws == "mlp_out"):
                continue  # not upstream of this reader
            x = cache[nl.by_key[(wl, ws)].hook][rows, pos, c].float() * factor
            if bool((x != 0).any()):
                parts[node_label(wl, ws, c, model.cfg.d_head)] = x
    return parts


def role_change(
    model_values: torch.Tensor,
    pruned_values: torch.Tensor,
    groups: dict[str, torch.Tensor],
    min_abs: float = 0.05,
    min_ratio: float = 3.0,
) -> dict | None:
    """Whether a node fires on a different group in the pruned model than in the model (Drori's D3 example: a
    node active on male names in the model, on female names once pruned). Both [n] value sets must be group
    selective: the active group's mean at least ``min_abs`` in magnitude and ``min_ratio`` times any other
    group's. Returns {"model": (group, means), "pruned": (group, means)} when the active groups differ, else None."""

    def selective(x):
        name, means = active_group(x, groups)
        others = [abs(v) for k, v in means.items() if k != name and v == v]
        ok = abs(means[name]) >= min_abs and all(abs(means[name]) >= min_ratio * o for o in others)
        return (name, means) if ok else None

    a, b = selective(model_values), selective(pruned_values)
    if a is None or b is None or a[0] == b[0]:
        return None
    return {"model": a, "pruned": b}


def active_group(x: torch.Tensor, groups: dict[str, torch.Tensor]) -> tuple[str, dict[str, float]]:
    """The group where [n] values are largest in magnitude on average (e.g. which gender a node fires on), and
    every group's mean."""
    means = group_means(x, groups)
    return max(means, key=lambda k: abs(means[k]) if means[k] == means[k] else -1.0), means
