"""Does a pruned circuit compute the way its model does? Attention patterns (D2) and node roles (D3), per circuit.

``compare.attention_agreement`` and ``compare.activation_agreement`` give one summary number per head or node.
This module keeps the per-prompt data behind them, so that notebooks 08 and 09 can ask *where* things differ: how
much attention lands on the name tokens, whether a sharp pattern became near-uniform, and at which prompt
positions a node's signal sits in the model and in the pruned model. The verdicts over these numbers are in
``app.verdicts``, the figures in ``viz.mechanism_figures``.

Conventions (as in ``walkthrough``): attention rows are taken from each prompt's answer position, with the sink as
column 0 (token position p is column p + 1); positions count tokens of ``data.tokens`` (0 is the leading
``<eos>``). "Pruned" means the model run with only the circuit's nodes (``circuit.run``), the rest ablated.

Thresholds (documented here, used by the notebooks):

- a pattern is **sharp** when its normalized entropy ``H(p) / log(n_keys)`` (sink included; n_keys = tokens up
  to the answer + 1) is below ``SHARP`` = 0.5, and **near-uniform** above ``NEAR_UNIFORM`` = 0.9; a head whose
  model pattern is sharp and pruned pattern near-uniform has **lost its pattern** (Drori's D2 case);
- a head **attends to a name** when the model puts at least ``NAME_FOCUS`` = 0.5 of its attention on a name token;
- a node's signal **moves** when the total-variation distance between its signal shares over position classes
  (names, the answer position, everything else) in the model and in the pruned model is at least ``MOVE`` = 0.25,
  and its signal is not **silenced** or **awakened** (less than ``QUIET`` = 0.1 times as strong in one model as
  in the other: then where the little that is left sits says nothing).
"""

from __future__ import annotations

import torch

from ..circuits.layout import NodeLayout
from ..data.words import gender_of
from ..tasks import TaskData
from . import walkthrough as wt
from .compare import correlation, entropy, pattern_hook, pattern_keys, pattern_summary, run_pair, total_variation

SHARP = 0.5
NEAR_UNIFORM = 0.9
NAME_FOCUS = 0.5
MOVE = 0.25
QUIET = 0.1
ROUNDING_TOL = 1e-4  # d' is 0 when the spread is below this times the largest |value| (float rounding, not signal)


# ---------------------------------------------------------------------------------------------- slots


def name_slots(data: TaskData) -> list[str]:
    """The slots of the prompts whose values are person names (e.g. ["name"] or ["name_1", "name_2"])."""
    if not data.assignments or not data.assignments[0]:
        return []
    out = []
    for slot, value in data.assignments[0].items():
        try:
            gender_of(value)
        except ValueError:
            continue
        out.append(slot)
    return sorted(out)


def slot_positions(data: TaskData, tok, slots: list[str] | None = None) -> dict[str, torch.Tensor]:
    """slot -> [n] position of its token in each prompt (default: every name slot)."""
    return {s: wt.slot_positions(data, tok, s) for s in (name_slots(data) if slots is None else slots)}


def gender_groups(data: TaskData, slot: str) -> dict[str, torch.Tensor]:
    """{"male": [n] bool, "female": [n] bool} by the gender of the name in ``slot``."""
    male = torch.tensor([gender_of(a[slot]) == "male" for a in data.assignments])
    return {"male": male, "female": ~male}


# ------------------------------------------------------------------------------------ attention (D2)


def normalized_entropy(p: torch.Tensor, n_keys: torch.Tensor) -> torch.Tensor:
    """[n, K] patterns, [n] number of keys each may attend to -> [n] H(p) / log(n_keys), in [0, 1]
    (1: uniform over the keys; 0: all attention on one key). A row with a single key counts as 0."""
    return entropy(p) / n_keys.float().clamp_min(2).log()


def kept_heads(model, circuit) -> list[dict]:
    """Every head with a kept q, k or v node: {"layer", "head", "q", "k", "v"} (numbers of kept nodes of each
    kind), and "qk_pairs" (kept q and k nodes at the same channel: their product is what scores keys)."""
    nl = NodeLayout(model)
    H, E = model.cfg.n_head, model.cfg.d_head
    nodes = circuit.nodes.bool().cpu()
    out = []
    for layer in range(model.cfg.n_layer):
        q, k, v = (nodes[nl.sl(layer, s)].view(H, E) for s in ("q", "k", "v"))
        for h in (q.any(1) | k.any(1) | v.any(1)).nonzero().flatten().tolist():
            out.append(
                {
                    "layer": layer,
                    "head": h,
                    "q": int(q[h].sum()),
                    "k": int(k[h].sum()),
                    "v": int(v[h].sum()),
                    "qk_pairs": int((q[h] & k[h]).sum()),
                }
            )
    return out


@torch.no_grad()
def head_attention(
    model,
    circuit,
    data: TaskData,
    ablation=None,
    slots: dict[str, torch.Tensor] | None = None,
    tok=None,
    frozen_ln: bool | None = None,
) -> list[dict]:
    """Attention from the answer position, model vs pruned model, for every head with a kept q/k/v node.

    One forward pass of each. Per head: "original" and "pruned" rows [n, 1 + T] (sink in column 0), "tv" [n]
    (total-variation distance), mean entropies ("mean_entropy_model", "mean_entropy_pruned", and
    "mean_entropy_uniform" of the uniform distribution over the same keys), mean normalized entropies
    ("norm_entropy_model", "norm_entropy_pruned"), mean attention on the sink ("sink_model", "sink_pruned"), on
    each slot's token ("to_slot": {slot: [model, pruned]}) and on all of them together ("to_names": [model,
    pruned]), the kept node counts of ``kept_heads``, and the flags "sharp_model", "uniform_pruned", "lost" (both)
    and "name_head" (the model puts >= NAME_FOCUS on some name). The keys of ``compare.head_patterns``
    ("entropy_original", "tv_mean", "keys", ...) are there too, so ``walkthrough_figures.plot_patterns`` draws a
    head.
    """
    heads = kept_heads(model, circuit)
    if not heads:
        return []
    names = sorted({pattern_hook(h["layer"]) for h in heads})
    orig, pruned = run_pair(model, circuit, data.tokens, names, ablation, frozen_ln)
    n_keys = data.last.cpu() + 2  # the sink and every token up to the answer
    keys = pattern_keys(tok, data)
    slots = slots or {}
    out = []
    for h in heads:
        summary = pattern_summary(orig, pruned, h["layer"], h["head"], data.last, keys)
        po, pp = summary["original"], summary["pruned"]  # [n, 1 + T]
        ne_m, ne_p = normalized_entropy(po, n_keys), normalized_entropy(pp, n_keys)
        to_slot = {
            s: [float(wt.attention_to(po, pos).mean()), float(wt.attention_to(pp, pos).mean())]
            for s, pos in slots.items()
        }
        r = {
            **h,
            **summary,
            "mean_entropy_model": float(summary["entropy_original"].mean()),
            "mean_entropy_pruned": float(summary["entropy_pruned"].mean()),
            "mean_entropy_uniform": float(n_keys.float().log().mean()),
            "norm_entropy_model": float(ne_m.mean()),
            "norm_entropy_pruned": float(ne_p.mean()),
            "sink_model": float(po[:, 0].mean()),
            "sink_pruned": float(pp[:, 0].mean()),
            "to_slot": to_slot,
            "to_names": [sum(v[0] for v in to_slot.values()), sum(v[1] for v in to_slot.values())],
        }
        out.append({**r, **head_flags(r)})
    return out


def head_flags(
    h: dict, sharp: float = SHARP, near_uniform: float = NEAR_UNIFORM, name_focus: float = NAME_FOCUS
) -> dict:
    """The D2 flags of one ``head_attention`` entry (see the module's thresholds)."""
    s, u = h["norm_entropy_model"] < sharp, h["norm_entropy_pruned"] > near_uniform
    name_model = max((v[0] for v in h["to_slot"].values()), default=0.0)
    return {"sharp_model": s, "uniform_pruned": u, "lost": s and u, "name_head": name_model >= name_focus}


def head_summary(h: dict, circuit_key: str = "") -> dict:
    """A ``head_attention`` entry without its tensors (JSON-ready)."""
    skip = ("original", "pruned", "tv", "entropy_original", "entropy_pruned", "keys")
    return {"circuit": circuit_key, **{k: v for k, v in h.items() if k not in skip}}


# ------------------------------------------------------------------------------------ node roles (D3)


def position_classes(data: TaskData, slots: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
    """[n, T] class of every position and the class names: one class per slot (its token), "answer" (the last
    position), "other" (every other real token); -1 for the leading ``<eos>`` and for padding."""
    names = [*slots, "answer", "other"]
    valid = wt.valid_mask(data)
    cls = torch.where(valid, len(names) - 1, -1)
    rows = torch.arange(len(data))
    cls[rows, data.last.cpu()] = len(slots)
    for i, pos in enumerate(slots.values()):  # a slot wins over "answer" if they coincide
        cls[rows, pos.cpu()] = i
    return cls, names


def signal_shares(values: torch.Tensor, classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Where in the prompt a node's signal sits: [n, T, M] activations of M nodes, [n, T] position classes ->
    [M, n_classes] shares (rows sum to 1).

    The signal is the absolute deviation from the node's median over every classified position (its resting
    value: a constant offset is no signal, and a node that fires rarely rests at its usual value); each class's
    share is its mean signal per position, normalized over the classes, so classes with many positions ("other")
    do not win by count. A node with no signal anywhere gets NaN."""
    c = classes[classes >= 0]
    dev = _deviation(values, classes)
    per = torch.stack(
        [dev[c == k].mean(0) if bool((c == k).any()) else torch.zeros(dev.shape[1]) for k in range(n_classes)], 1
    )
    total = per.sum(1, keepdim=True)
    return torch.where(total > 1e-9, per / total.clamp_min(1e-12), float("nan"))


def _deviation(values: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """[P, M] absolute deviation of each node from its median over the classified positions."""
    x = values.float()[classes >= 0]
    return (x - x.median(0).values).abs()


def signal_strength(values: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """[n, T, M] activations, [n, T] position classes -> [M] mean signal (absolute deviation from the median) per
    classified position: how much a node varies at all."""
    return _deviation(values, classes).mean(0)


@torch.no_grad()
def node_roles(
    model,
    circuit,
    data: TaskData,
    ablation=None,
    slots: dict[str, torch.Tensor] | None = None,
    gender_slot: str | None = None,
    include_eos: bool = False,
    frozen_ln: bool | None = None,
) -> dict:
    """Every circuit node's role in the model and in the pruned model, on the same prompts (one forward pass each).

    Returns "labels"; "correlation" [M] (Pearson over every real position; NaN when the node is constant in
    either). ``<eos>`` is left out by default: it is the same token at position 0 of every prompt, so its value is
    one repeated point that can dominate the correlation; ``include_eos=True`` gives exactly
    ``compare.activation_agreement``'s numbers. Then "classes" (position class names of ``position_classes``),
    "shares_model" / "shares_pruned" [M, C] (``signal_shares``), "shift" [M] (total variation between them),
    "signal_model" / "signal_pruned" [M] (``signal_strength``); with ``gender_slot``, "gender_flip" [M] bool (the
    node fires on the other gender's names at that slot once pruned: ``walkthrough.role_change``) and
    "gender_sep_model" / "gender_sep_pruned" [M] (how well the node separates that name's gender at the answer
    position: d' of ``separation``); "score" [M] (``role_change_score``); and the activations "original" /
    "pruned" [n, T, M] for plots.
    """
    nl = NodeLayout(model)
    idx = circuit.nodes.bool().cpu().nonzero().flatten().tolist()
    labels = [nl.label(i) for i in idx]
    by_site: dict[str, list[tuple[int, int]]] = {}
    for j, i in enumerate(idx):
        layer, site, ch = nl.describe(i)
        by_site.setdefault(nl.by_key[(layer, site)].hook, []).append((j, ch))
    orig, pruned = run_pair(model, circuit, data.tokens, list(by_site), ablation, frozen_ln)
    n, T = data.tokens.shape
    vals = {k: torch.zeros(n, T, len(idx)) for k in ("original", "pruned")}
    for hook, cols in by_site.items():
        j, ch = torch.tensor([a for a, _ in cols]), torch.tensor([b for _, b in cols])
        vals["original"][..., j] = orig[hook].reshape(n, T, -1)[..., ch].float()
        vals["pruned"][..., j] = pruned[hook].reshape(n, T, -1)[..., ch].float()
    real = wt.valid_mask(data, include_eos=include_eos)
    corr = correlation(vals["original"][real], vals["pruned"][real])
    slots = slots or {}
    cls, names = position_classes(data, slots)
    sm = signal_shares(vals["original"], cls, len(names))
    sp = signal_shares(vals["pruned"], cls, len(names))
    shift = total_variation(sm, sp)  # [M]
    out = {
        "labels": labels,
        "correlation": corr,
        "classes": names,
        "shares_model": sm,
        "shares_pruned": sp,
        "shift": shift,
        "signal_model": signal_strength(vals["original"], cls),
        "signal_pruned": signal_strength(vals["pruned"], cls),
        **vals,
    }
    if gender_slot is not None:
        groups, pos = gender_groups(data, gender_slot), slots.get(gender_slot)
        if pos is None:
            raise ValueError(f"gender_slot {gender_slot!r} is not among the slots {list(slots)}")
        flips, seps = [], {"model": [], "pruned": []}
        for j in range(len(idx)):
            xs = [wt.at_positions(vals[k][..., j], pos) for k in ("original", "pruned")]
            flips.append(wt.role_change(*xs, groups) is not None)
            for k, name in (("original", "model"), ("pruned", "pruned")):
                seps[name].append(
                    wt.separation(wt.at_positions(vals[k][..., j], data.last), groups["male"], ROUNDING_TOL)
                )
        out["gender_flip"] = torch.tensor(flips, dtype=torch.bool)
        out["gender_sep_model"], out["gender_sep_pruned"] = torch.tensor(seps["model"]), torch.tensor(seps["pruned"])
    out["score"] = role_change_score(corr, shift, out["signal_model"], out["signal_pruned"])
    return out


def role_change_score(
    corr: torch.Tensor,
    shift: torch.Tensor,
    signal_model: torch.Tensor | None = None,
    signal_pruned: torch.Tensor | None = None,
    quiet: float = QUIET,
) -> torch.Tensor:
    """How much a node's role changes: (1 - correlation) / 2 + shift, in [0, 2]. An undefined correlation (the
    node is constant in one model: it lost or gained all its signal) counts as 0, an undefined shift as 0. Given
    the signal strengths, the shift of a silenced or awakened node (see ``role_summary``) counts as 0: where its
    faint signal sits is noise, so such nodes rank by their correlation alone."""
    c = torch.nan_to_num(corr, nan=0.0)
    sh = torch.nan_to_num(shift, nan=0.0)
    if signal_model is not None and signal_pruned is not None:
        quiet_one = (signal_pruned < quiet * signal_model) | (signal_model < quiet * signal_pruned)
        sh = torch.where(quiet_one, 0.0, sh)
    return (1 - c) / 2 + sh


def role_summary(
    roles: dict,
    move: float = MOVE,
    strong: float = -0.3,
    carries: float = 1.0,
    absent: float = 0.5,
    quiet: float = QUIET,
) -> dict:
    """Per circuit:

    - number of nodes, median correlation, the share of sign-flipped nodes (correlation < 0) and the share of
      nodes constant in one of the two models (no correlation);
    - the sign-flipped nodes and those clearly anti-correlated (correlation < ``strong``);
    - nodes whose signal is silenced (pruned signal < ``quiet`` times the model's) or awakened (the reverse);
    - among the other nodes with a signal in both, the share and list of those whose signal moves (shift >=
      ``move``), each with its dominant position class in the model and in the pruned model;
    - the mean signal share of each position class over the nodes, in each model;
    - with a gender slot: the gender flips, and the nodes that carry the name's gender at the answer position only
      in the pruned model (|d'| >= ``carries`` pruned, < ``absent`` in the model: Drori's attn_out example) or only
      in the model.
    """
    corr, shift = roles["correlation"], roles["shift"]
    s_m, s_p = roles["signal_model"], roles["signal_pruned"]
    silenced, awakened = s_p < quiet * s_m, s_m < quiet * s_p
    both = (~shift.isnan()) & ~silenced & ~awakened
    known_c = corr[~corr.isnan()]
    moved = both & (shift >= move)
    cls = roles["classes"]
    where = lambda s, j: cls[int(s[j].argmax())]  # noqa: E731
    out = {
        "n_nodes": len(roles["labels"]),
        "median_correlation": float(known_c.median()) if len(known_c) else float("nan"),
        "sign_flipped_fraction": float((known_c < 0).float().mean()) if len(known_c) else float("nan"),
        "moved_fraction": float(moved.sum() / both.sum()) if bool(both.any()) else float("nan"),
        "silenced": [roles["labels"][j] for j in silenced.nonzero().flatten().tolist()],
        "awakened": [roles["labels"][j] for j in awakened.nonzero().flatten().tolist()],
        "undefined_fraction": float(corr.isnan().float().mean()) if len(corr) else float("nan"),
        "sign_flipped": [roles["labels"][j] for j in (corr < 0).nonzero().flatten().tolist()],
        "anti_correlated": [roles["labels"][j] for j in (corr < strong).nonzero().flatten().tolist()],
        "mean_shares_model": dict(zip(cls, roles["shares_model"].nanmean(0).tolist())),
        "mean_shares_pruned": dict(zip(cls, roles["shares_pruned"].nanmean(0).tolist())),
        "moved": {
            roles["labels"][j]: [where(roles["shares_model"], j), where(roles["shares_pruned"], j)]
            for j in moved.nonzero().flatten().tolist()
        },
    }
    if "gender_flip" in roles:
        out["gender_flips"] = [roles["labels"][j] for j in roles["gender_flip"].nonzero().flatten().tolist()]
        sm, sp = roles["gender_sep_model"].abs(), roles["gender_sep_pruned"].abs()  # NaN compares False
        out["gender_only_pruned"] = [
            roles["labels"][j] for j in ((sp >= carries) & (sm < absent)).nonzero().flatten().tolist()
        ]
        out["gender_only_model"] = [
            roles["labels"][j] for j in ((sm >= carries) & (sp < absent)).nonzero().flatten().tolist()
        ]
    return out


def summary_for_json(summary: dict, max_items: int = 20) -> dict:
    """A ``role_summary`` with its node lists cut to ``max_items`` (counts kept as "n_<list>")."""
    out = {}
    for k, v in summary.items():
        if isinstance(v, list | dict) and not k.startswith("mean_shares"):
            out[f"n_{k}"] = len(v)
            v = v[:max_items] if isinstance(v, list) else dict(list(v.items())[:max_items])
        out[k] = v
    return out


# ------------------------------------------------------------------------------------- over circuits


def _circuit_inputs(entries: dict[str, dict], loaded: dict, tests: dict[tuple[str, str], TaskData]):
    """(key, model, entry, held-out prompts, their name slots' positions) for each circuit of ``entries``."""
    for key, e in entries.items():
        model, tok, _ = loaded[e["model"]]
        test = tests[(e["model"], e["task"])]
        yield key, model, e, test, slot_positions(test, tok)


def heads_of_circuits(
    entries: dict[str, dict],
    loaded: dict,
    tests: dict[tuple[str, str], TaskData],
    sharp: float = SHARP,
    near_uniform: float = NEAR_UNIFORM,
    name_focus: float = NAME_FOCUS,
) -> dict[str, list[dict]]:
    """``head_attention`` with ``head_flags`` at the given thresholds, for every circuit of ``entries``.

    ``entries`` maps circuit keys to dicts with "model", "task", "circuit" and "test_ablation" (as
    ``app.experiments.prune_and_evaluate`` returns them); ``loaded`` maps model names to ``inference.load``
    results; ``tests`` maps (model, task) to the held-out prompts read. Each circuit's name slots are its prompts'."""
    heads = {}
    for key, model, e, test, slots in _circuit_inputs(entries, loaded, tests):
        hs = head_attention(model, e["circuit"], test, e["test_ablation"], slots, loaded[e["model"]][1])
        heads[key] = [{**h, **head_flags(h, sharp, near_uniform, name_focus)} for h in hs]
    return heads


def roles_of_circuits(
    entries: dict[str, dict],
    loaded: dict,
    tests: dict[tuple[str, str], TaskData],
    move: float = MOVE,
    strong: float = -0.3,
    quiet: float = QUIET,
    include_eos: bool = False,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """``node_roles`` and its ``role_summary`` for every circuit of ``entries`` (see ``heads_of_circuits``).

    The gender is read at each task's first name slot in sorted order ("name", or "name_1": the answer's
    referent in IOI). Returns ({key: roles}, {key: summary})."""
    roles, summaries = {}, {}
    for key, model, e, test, slots in _circuit_inputs(entries, loaded, tests):
        roles[key] = node_roles(
            model, e["circuit"], test, e["test_ablation"], slots, gender_slot=sorted(slots)[0], include_eos=include_eos
        )
        summaries[key] = role_summary(roles[key], move, strong, quiet=quiet)
    return roles, summaries
