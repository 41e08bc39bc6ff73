"""Whether a claim from the papers holds here, and the claims rows the README shows.

Every notebook judges its claims with one rule, ``verdict``: "n/a" when there is nothing to judge, "yes" when
the claim's full criterion is met, "partly" when only its weaker criterion is, "no" otherwise. The criteria are
measured values against thresholds fixed before the run (named constants here, or the notebooks' parameters).
Most claims are judged per cell of an experiment (a model, task or ablation): ``verdict_of_cells`` says "yes"
when every judged cell holds, "partly" when some do. The claim-specific rules below (circuit size, D2, D3, D4,
D5) are written once in terms of ``verdict``, so a notebook only states its evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from ..analysis.generalization import GOOD_THRESHOLD

HOLDS = ("yes", "partly", "no", "n/a")

GAO_CIRCUIT_NODES = 30
"""C3 holds fully for a circuit about the size of Gao's (12 nodes for the quote task; Drori ~10 for pronouns)."""
READABLE_CORE_SHARE = 0.5
"""... and partly for a larger one where one writer carries at least this share of the answer (a readable core)."""
BAD_SEED_SHARE = 0.2
"""D4 holds in a cell when at least this share of the seeds reaching the target gives a bad circuit."""


def verdict(yes: bool, partly: bool = False, judged: bool = True) -> str:
    """The one verdict rule: "n/a" unless ``judged``; else "yes" if ``yes``, "partly" if ``partly``, "no"."""
    if not judged:
        return "n/a"
    return "yes" if yes else "partly" if partly else "no"


def verdict_of_cells(holds_by_cell: Iterable[bool | None]) -> str:
    """Over cells where the claim holds (True), fails (False) or cannot be judged (None): "yes" when every judged
    cell holds, "partly" when some do, "no" when none does, "n/a" when no cell is judged."""
    known = [bool(h) for h in holds_by_cell if h is not None]
    return verdict(all(known), any(known), judged=bool(known))


def verdict_of_count(good: int, total: int) -> str:
    """``good`` of ``total`` cells pass: "yes" all, "partly" some, "no" none, "n/a" no cells."""
    return verdict(good == total, good > 0, judged=total > 0)


def bootstrap_ci(
    values: Iterable[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): ``statistic`` of ``values`` (one per seed) and its percentile bootstrap interval.

    Seeded, so a notebook prints the same interval every run. One value gives a zero-width interval; no
    values is an error, since a verdict must not rest on nothing.
    """
    x = np.asarray([float(v) for v in values], dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci level must be in (0, 1), got {level}")
    estimate = float(statistic(x))
    draws = np.random.default_rng(seed).integers(0, x.size, size=(n_resamples, x.size))
    stats = np.array([statistic(x[row]) for row in draws])
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate from ``k`` successes in ``n`` trials: the rates under which a
    count as low (as high) as ``k`` has probability at least (1 - level) / 2. Unlike a bootstrap over the trials,
    it does not collapse to [0, 0] when ``k`` is 0: 0 of 8 seeds still allows a rate of up to 37%."""
    if not (isinstance(n, int) and isinstance(k, int) and 0 <= k <= n and n > 0):
        raise ValueError(f"binomial_interval needs integers 0 <= k <= n and n > 0, got k={k!r}, n={n!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"binomial_interval level must be in (0, 1), got {level}")
    tail = (1 - level) / 2

    def cdf(j: int, p: float) -> float:  # P(X <= j) for X ~ Binomial(n, p): falls as p grows
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(j + 1))

    def crossing(j: int, target: float) -> float:  # the p where cdf(j, p) falls through target, by bisection
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cdf(j, mid) > target else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else crossing(k - 1, 1 - tail)  # P(X >= k) = tail
    high = 1.0 if k == n else crossing(k, tail)  # P(X <= k) = tail
    return low, high


def existential_verdict(strengths: Iterable[float | None], strong: float, weak: float | None = None) -> str:
    """A claim that something *can* happen ("pruned circuits may generalize differently"): "yes" when some cell
    shows the effect at strength >= ``strong``, "partly" when some cell reaches ``weak``, "no" otherwise; "n/a"
    when no cell could be judged (None)."""
    known = [s for s in strengths if s is not None]
    weak = strong if weak is None else weak
    return verdict(any(s >= strong for s in known), any(s >= weak for s in known), judged=bool(known))


def universal_verdict(holds_by_cell: Iterable[bool | None], share: float) -> tuple[str, float]:
    """A claim that something *always* happens: (verdict, share of judged cells where it holds). "yes" when that
    share is at least ``share``, "partly" when some cell holds, "no" when none, "n/a" with no judged cell."""
    known = [bool(h) for h in holds_by_cell if h is not None]
    frac = sum(known) / len(known) if known else float("nan")
    return verdict(bool(known) and frac >= share, any(known), judged=bool(known)), frac


NARROW_REGIME = "narrow: d64-d256, L0 0.2-1"
"""Where a claim was tested when its row names no regime: the first shipped family (L0 >= 0.2 at d_model <= 256),
far denser and narrower than either paper's models."""


def claim(id: str, text: str, ours: str, paper: str, holds: str, figure: str, rule: str = "", regime: str = "") -> dict:
    """One row of the README's claims table (``report.claims_table``): the claim, our evidence, the paper's
    number, the verdict, the rule that gave it (thresholds fixed before the run), the figure behind it and the
    regime of the models it was tested on (empty: ``NARROW_REGIME``)."""
    if holds not in HOLDS:
        raise ValueError(f"holds must be yes, no, partly or n/a; got {holds!r}")
    row = {"id": id, "claim": text, "ours": ours, "paper": paper, "holds": holds, "figure": figure}
    extra = {k: v for k, v in (("rule", rule), ("regime", regime)) if v}
    return {**row, **extra}


# --------------------------------------------------------------------------------- claim-specific rules


SUFFICIENT_LOSS_FLOOR = 0.3
"""C4: a circuit is sufficient when, alone, it keeps the held-out loss <= max(2 x the model's, this floor)."""


def c4_cell(ns: dict, necessity_share: float) -> dict:
    """C4 (circuits are sufficient and necessary) on one circuit, from ``pruning.frontier.necessity_sufficiency``.

    "sufficient": the circuit alone keeps the held-out loss <= max(2 x the model's, ``SUFFICIENT_LOSS_FLOOR``);
    "necessary": ablating the circuit (the rest kept) removes at least ``necessity_share`` of the model's binary
    P_correct above chance (0.5), "removed_share" being that share; "necessary_loss": the older loss rule (the
    circuit-ablated loss is at least half the all-ablated loss), which calls a circuit "not necessary" when its
    removal leaves the model at chance but the full-vocabulary loss moderate."""
    p = ns["p_correct"]
    removed = (p["model"] - p["circuit_ablated"]) / max(p["model"] - 0.5, 1e-9)
    return {
        "sufficient": ns["circuit_only"] <= max(2 * ns["model"], SUFFICIENT_LOSS_FLOOR),
        "necessary": removed >= necessity_share,
        "removed_share": removed,
        "necessary_loss": ns["circuit_ablated"] >= 0.5 * ns["all_ablated"],
    }


def c4_rule(necessity_share: float) -> str:
    """The C4 rule as the claims table states it."""
    return (
        f"sufficient: circuit-alone held-out loss <= max(2 x model, {SUFFICIENT_LOSS_FLOOR}); necessary: ablating the "
        f"circuit removes >= {necessity_share:.0%} of the model's binary P_correct above chance"
    )


def small_circuit_verdict(n_nodes: int, top_writer_share: float) -> str:
    """C3 (circuits are small and readable): "yes" at about Gao's size (<= ``GAO_CIRCUIT_NODES`` nodes);
    "partly" when larger but one writer carries at least ``READABLE_CORE_SHARE`` of the answer; else "no"."""
    return verdict(n_nodes <= GAO_CIRCUIT_NODES, abs(top_writer_share) >= READABLE_CORE_SHARE)


def nonsense_verdict(nonsense_nodes: int | None, real_nodes: int | None, comparable_ratio: float) -> str:
    """D1 in one (model, ablation) cell, from the smallest circuits reaching the target loss (None: none did).

    "yes": pruning reaches the target on the nonsense task with at most ``comparable_ratio`` times the real task's
    nodes (Drori: ~30 against ~10); "partly": it reaches the target with a larger circuit; "no": it never reaches
    it; "n/a": the real task missed the target, so there is nothing to compare with."""
    reached = nonsense_nodes is not None
    comparable = reached and real_nodes is not None and nonsense_nodes <= comparable_ratio * real_nodes
    return verdict(comparable, reached, judged=real_nodes is not None)


def attention_verdict(heads_by_circuit: dict[str, list[dict]], name_drop: float = 0.5) -> dict:
    """Computed D2 verdict over circuits of ``mechanism.head_attention`` entries.

    "yes": some circuit keeps a head that attends to a name in the model (``name_head``) whose pruned pattern
    is near-uniform (``lost``), Drori's case; "partly": no such head, but some kept head lost its pattern, or a
    name head's attention on the names fell to at most ``name_drop`` times the model's; "no": otherwise; "n/a":
    no circuit keeps a head. Also returns the heads behind it, as "circuit/L{layer}.h{head}" strings.
    """
    lost, lost_name, name_dropped = [], [], []
    for key, heads in heads_by_circuit.items():
        for h in heads:
            tag = f"{key}/L{h['layer']}.h{h['head']}"
            if h["lost"]:
                lost.append(tag)
                if h["name_head"]:
                    lost_name.append(tag)
            if h["name_head"]:
                m = max(v[0] for v in h["to_slot"].values())
                p = max(v[1] for v in h["to_slot"].values())
                if p <= name_drop * m:
                    name_dropped.append(tag)
    n_heads = sum(len(v) for v in heads_by_circuit.values())
    holds = verdict(bool(lost_name), bool(lost or name_dropped), judged=n_heads > 0)
    return {
        "holds": holds,
        "n_heads": n_heads,
        "lost": lost,
        "lost_name_heads": lost_name,
        "name_attention_dropped": name_dropped,
    }


def roles_verdict(summaries: dict[str, dict]) -> dict:
    """Computed D3 verdict over circuits of ``mechanism.role_summary`` results.

    "yes": some node fires on the other gender's names once pruned, carries the name's gender at the answer only
    in the pruned model, or is clearly anti-correlated with itself (``anti_correlated``); "partly": no such node,
    but some node is weakly anti-correlated or its signal moves to other positions; "no": otherwise; "n/a": no
    circuit nodes."""
    gender = [
        f"{k}/{n}" for k, s in summaries.items() for n in s.get("gender_flips", []) + s.get("gender_only_pruned", [])
    ]
    anti = [f"{k}/{n}" for k, s in summaries.items() for n in s["anti_correlated"]]
    weak = [f"{k}/{n}" for k, s in summaries.items() for n in s["sign_flipped"]]
    moved = [f"{k}/{n}" for k, s in summaries.items() for n in s["moved"]]
    total = sum(s["n_nodes"] for s in summaries.values())
    holds = verdict(bool(gender or anti), bool(weak or moved), judged=total > 0)
    return {
        "holds": holds,
        "gender_role_changes": gender,
        "strongly_anti_correlated": anti,
        "n_nodes": total,
        "n_sign_flipped": len(weak),
        "n_moved": len(moved),
    }


def generalization_fails(summary: dict, good_threshold: float = GOOD_THRESHOLD) -> bool | None:
    """D4 in one (model, ablation) cell of ``generalization.summarize``: True when at least ``BAD_SEED_SHARE`` of
    the seeds reaching the target give bad circuits on same-gender prompts; None (nothing to judge) when no seed
    reaches the target or the model itself answers same-gender prompts below ``good_threshold``."""
    if summary["n_reached"] == 0 or summary["model_rates"]["ioi_same"]["p_correct"] < good_threshold:
        return None
    return summary["share_bad"] >= BAD_SEED_SHARE


def generalization_verdict(summaries: dict, strong: float = BAD_SEED_SHARE) -> dict:
    """D4 ("pruned circuits *may* generalize differently") as an existential claim over (model, ablation) cells
    of ``generalization.summarize``: "yes" when some judged cell (see ``generalization_fails``) has a share of bad
    circuits among the seeds reaching the target of at least ``strong``; "partly" when some judged cell has a bad
    circuit at all; "no" otherwise; "n/a" when no cell is judged. Each judged cell's share comes with a bootstrap
    interval over its seeds."""
    shares, intervals = [], {}
    for key, s in summaries.items():
        if generalization_fails(s) is None:
            shares.append(None)
            continue
        bad = [c == "bad" for c, r in zip(s["class"], s["reached"]) if r]
        _, low, high = bootstrap_ci(bad)
        shares.append(s["share_bad"])
        intervals[key] = (s["share_bad"], low, high)
    some = min((1 / s["n_reached"] for s in summaries.values() if s["n_reached"]), default=1.0)
    return {"holds": existential_verdict(shares, strong, weak=some), "share_bad_ci": intervals, "strong": strong}


def ratio_verdict(ratios: Iterable[float | None], full: float, some: float) -> str:
    """ "yes" when every known ratio is at least ``full``, "partly" when some is at least ``some``, "no"
    otherwise; "n/a" when no ratio is known (None: one side missing)."""
    known = [r for r in ratios if r is not None]
    return verdict(all(r >= full for r in known), any(r >= some for r in known), judged=bool(known))


def sign_flip_verdict(delta: dict[str, float | None], small: str, large: str, min_change: float) -> str:
    """Whether an effect (``delta`` per model) changes sign between the ``small`` and the ``large`` model: "yes"
    when both changes are at least ``min_change`` in size and of opposite signs, "partly" when some model's
    change is that large, "no" otherwise; "n/a" when either end is unknown or they are the same model."""
    big = {m: d is not None and abs(d) >= min_change for m, d in delta.items()}
    judged = delta.get(small) is not None and delta.get(large) is not None and small != large
    flips = judged and big[small] and big[large] and (delta[small] > 0) != (delta[large] > 0)
    return verdict(flips, any(big.values()), judged=judged)
