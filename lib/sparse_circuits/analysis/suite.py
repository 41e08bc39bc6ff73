"""The faithfulness metric suite: one call scores any circuit of any model by every measure of docs/faithfulness.md.

    report = faithfulness_report(model, tok, circuit, FaithfulnessConfig(eval_n=64))

``FaithfulnessConfig`` holds the suite's settings (the ``sparse-circuits faithfulness`` options are generated from
it); ``docs/faithfulness.md`` gives each measure's formula and how to read it. Masks are scored only through
``Faithfulness`` (hence ``circuits.evaluate.MaskEvaluator``), activations compared only through ``compare``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..circuits.ablation import ABLATIONS, check_ablation, resolve_ablation
from ..circuits.evaluate import circuit_frozen_ln
from ..circuits.layout import NodeLayout
from ..tasks import Task, get_task
from .compare import activation_agreement, attention_agreement
from .faithfulness import STOCHASTIC_MODES, Faithfulness
from .interchange import VARIABLE_SLOTS, interchange

# The same-gender IOI variant, where the name_2 shortcut fails (held-out agreement of the IOI family).
SAME_GENDER_IOI = "ioi_same"
# Held-out key of the test split with the task's names divided into splits too: unseen names and templates.
UNSEEN_NAMES = "test_unseen_names"


@dataclass
class FaithfulnessConfig:
    """Settings of the faithfulness metric suite."""

    task: str | None = None
    """Task the circuit is scored on (default: the task it was pruned for, from its metadata)."""
    ablation: str | None = None
    """Ablation of the stochastic, adversarial, KL, completeness, mechanism, held-out and interchange measures
    (default: the circuit's own)."""
    ablations: tuple[str, ...] = ABLATIONS
    """Ablations under which f, its spread and the size curve are measured."""
    frozen_ln: bool | None = None
    """Freeze the norms at the model's scales (default: as the circuit was pruned)."""
    eval_n: int = 128
    """Fixed prompts per split."""
    resample_draws: int = 4
    """Independent resample draws behind the spread of f under resample ablation."""
    bootstrap: int = 200
    """Bootstrap resamples of the prompts behind the 95% interval of f."""
    completeness_subsets: int = 16
    """Random subsets K of the circuit for completeness."""
    completeness_fraction: float = 0.5
    """Probability that a circuit node is in K."""
    stochastic_samples: int = 16
    """Draws of z per stochastic ablation mode."""
    adversary_steps: int = 20
    """Sign-gradient ascent steps of the restricted adversary."""
    adversary_step_size: float = 0.1
    """Step of the adversary's pattern z per ascent step."""
    adversary_restarts: int = 4
    """Random starting patterns the adversary ascends from (the worst over all counts)."""
    curve_fractions: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    """Kept fractions of all nodes at which the size curve evaluates the top-ranked nodes by the circuit's tau."""
    mechanism_n: int = 32
    """Test prompts for activation and attention agreement."""
    interchange_n: int = 64
    """Counterfactual pairs for interchange consistency."""
    variable_nodes: tuple[str, ...] = ()
    """Labels of the nodes said to carry the variable (e.g. L0.v.h1.3); empty: the circuit's nodes."""
    seed: int = 0
    """Seed of every random draw of the suite."""

    def __post_init__(self) -> None:
        self.ablations, self.curve_fractions = tuple(self.ablations), tuple(self.curve_fractions)
        self.variable_nodes = tuple(self.variable_nodes)
        for a in (*self.ablations, *([self.ablation] if self.ablation else [])):
            check_ablation(a)
        for name in ("eval_n", "resample_draws", "bootstrap", "stochastic_samples", "adversary_restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"FaithfulnessConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.ablations:
            raise ValueError("FaithfulnessConfig.ablations must name at least one ablation")
        if not 0.0 < self.completeness_fraction <= 1.0:
            raise ValueError(
                f"FaithfulnessConfig.completeness_fraction must be in (0, 1], got {self.completeness_fraction}"
            )
        if any(not 0.0 <= x <= 1.0 for x in self.curve_fractions):
            raise ValueError(f"FaithfulnessConfig.curve_fractions must lie in [0, 1], got {self.curve_fractions}")


def normalized_spread(fa: Faithfulness, nodes: torch.Tensor, draws: int, n_boot: int, seed: int = 0) -> dict:
    """f of a circuit with its spread: per ablation draw (resample seeds 0..draws-1; zero and mean ablation are
    deterministic and use one) and a 95% bootstrap interval over the prompts (and draws).

    Per-prompt losses of the model, the empty circuit and the circuit in draw r give f_r = (L_empty,r - L_C,r) /
    (L_empty,r - L_M); the report holds their mean and standard deviation."""
    draws = draws if fa.pruner.cfg.ablation == "resample" else 1
    masks = torch.stack([torch.ones(fa.n_nodes), torch.zeros(fa.n_nodes), nodes.float()])  # model, empty, circuit
    seeds = [r for r in range(draws) for _ in range(3)]
    with torch.no_grad():
        per_prompt = fa.pruner.evaluator.run(masks.repeat(draws, 1), fa.pruner.eval_data, seeds=seeds, chunk=16)
    losses = per_prompt.cpu().view(draws, 3, -1)  # [draws, 3, n]
    n = losses.shape[-1]
    boot = torch.randint(n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
    samples = losses[:, :, boot].mean(-1)  # [draws, 3, n_boot]

    def f_of(m: torch.Tensor) -> torch.Tensor:  # [draws, 3, ...] mean losses -> [draws, ...]
        return (m[:, 1] - m[:, 2]) / (m[:, 1] - m[:, 0])

    f = f_of(losses.mean(-1))
    lo, hi = torch.quantile(f_of(samples).flatten(), torch.tensor([0.025, 0.975])).tolist()
    return {
        "f": float(f.mean()),
        "f_std_over_draws": float(f.std()) if draws > 1 else 0.0,
        "f_ci95": [lo, hi],
        "draws": draws,
        "loss_model": float(losses[:, 0].mean()),
        "loss_empty": float(losses[:, 1].mean()),
        "loss_circuit": float(losses[:, 2].mean()),
    }


def _f_or_none(fa: Faithfulness, nodes: torch.Tensor) -> float | None:
    """f, or None where the model is no better than the empty circuit (f undefined)."""
    try:
        return fa.normalized(nodes)
    except ValueError:
        return None


def _p_correct(fa: Faithfulness, nodes: torch.Tensor) -> dict:
    """Mean binary P_correct of the circuit and of the model on the fixed prompts."""
    masks = torch.stack([nodes.float(), torch.ones(fa.n_nodes)])
    with torch.no_grad():
        p = fa.pruner.evaluator.run(masks, fa.pruner.eval_data, "p_correct", mean=True).cpu()
    return {"circuit": float(p[0]), "model": float(p[1])}


def held_out_agreement(fas: dict[str, Faithfulness], nodes: torch.Tensor) -> dict:
    """f and P_correct (circuit and model) per evaluation set: the train split, the test split (unseen
    templates), the test split of unseen names (tasks with name slots) and, for IOI, same-gender prompts."""
    return {name: {"f": _f_or_none(fa, nodes), "p_correct": _p_correct(fa, nodes)} for name, fa in fas.items()}


def mechanism_agreement(model, tok, circuit, data, ablation: str, frozen_ln: bool, means=None) -> dict:
    """Median activation correlation and sign-flipped share over circuit nodes, and attention TV over heads with
    a kept q, k or v node, between the model and the circuit on ``data``."""
    values = resolve_ablation(model, tok, ablation, data, means)
    act = activation_agreement(model, circuit, data, values, frozen_ln)
    heads = attention_agreement(model, circuit, data, values, frozen_ln)
    tv = torch.tensor([h["tv"] for h in heads])
    return {
        "median_activation_correlation": act["median_correlation"],
        "sign_flipped_fraction": act["sign_flipped_fraction"],
        "heads": len(heads),
        "attention_tv_median": float(tv.median()) if len(heads) else None,
        "attention_tv_max": float(tv.max()) if len(heads) else None,
    }


def _variable_mask(model, labels: tuple[str, ...]) -> torch.Tensor | None:
    """[N] bool of the given node labels (None when none are given: the circuit's nodes)."""
    if not labels:
        return None
    layout = NodeLayout(model)
    mask = torch.zeros(layout.n_nodes, dtype=torch.bool)
    mask[[layout.index(label) for label in labels]] = True
    return mask


def _json_safe(x):
    """NaN (an undefined correlation) as None, recursively, so the report is valid JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def faithfulness_report(model, tok, circuit, cfg: FaithfulnessConfig | None = None) -> dict:
    """Every faithfulness measure of ``circuit`` (a ``Circuit`` of ``model``) as one JSON-ready dict."""
    cfg = cfg or FaithfulnessConfig()
    task_name = cfg.task or circuit.meta.get("task")
    if task_name is None:
        raise ValueError("the circuit's metadata names no task: pass one (FaithfulnessConfig.task, --task)")
    task = get_task(task_name)
    ablation = check_ablation(cfg.ablation or circuit.meta.get("ablation", "zero"))
    frozen = circuit_frozen_ln(circuit, cfg.frozen_ln)
    nodes = circuit.nodes.bool()
    if nodes.numel() != NodeLayout(model).n_nodes:
        raise ValueError(f"circuit has {nodes.numel()} nodes, model has {NodeLayout(model).n_nodes}: wrong model?")
    variable = _variable_mask(model, cfg.variable_nodes)  # bad labels fail before any work
    means: dict | None = None
    built: dict[tuple[str, bool, str, str], Faithfulness] = {}

    def build(on: Task, ab: str, split: str) -> Faithfulness:
        """The evaluation set (task, ablation, split), built once; mean-ablation values computed once."""
        nonlocal means
        key = (on.name, on.spec.split_names, ab, split)
        if key not in built:
            built[key] = Faithfulness.build(model, tok, on, ab, split, cfg.eval_n, frozen, means)
            means = built[key].pruner.means if built[key].pruner.means is not None else means
        return built[key]

    counts = sorted({round(x * circuit.total_nodes) for x in cfg.curve_fractions})
    per_ablation, curves = {}, {}
    for ab in cfg.ablations:
        fa = build(task, ab, "test")
        per_ablation[ab] = normalized_spread(fa, nodes, cfg.resample_draws, cfg.bootstrap, cfg.seed)
        curves[ab] = fa.curve(circuit.tau, counts)
    test, train = build(task, ablation, "test"), build(task, ablation, "train")
    held_out = {"train": train, "test": test}
    if task.spec.family == "ioi":
        held_out[SAME_GENDER_IOI] = build(get_task(SAME_GENDER_IOI), ablation, "test")
    if task.spec.name_slots:  # the test split's names too are unseen (with its templates)
        held_out[UNSEEN_NAMES] = build(task.with_names_split(), ablation, "test")

    stochastic = {}
    for mode in STOCHASTIC_MODES:
        for per_prompt in (False, True):
            r = test.stochastic(nodes, mode, cfg.stochastic_samples, cfg.seed, per_prompt)
            stochastic[f"{mode}_per_prompt" if per_prompt else mode] = {k: r[k] for k in ("mean_f", "min_f")}
    adversarial = {
        target: test.adversarial(
            nodes, cfg.adversary_steps, cfg.adversary_step_size, cfg.seed, cfg.adversary_restarts, target
        )
        for target in ("loss", "kl")
    }
    completeness = test.completeness(nodes, cfg.completeness_subsets, cfg.completeness_fraction, cfg.seed)
    mechanism_data = task.data("test", tok, cfg.mechanism_n)
    report = {
        "task": task.name,
        "ablation": ablation,
        "frozen_ln": frozen,
        "nodes": circuit.n_nodes,
        "total_nodes": circuit.total_nodes,
        "config": asdict(cfg),
        "faithfulness": per_ablation,
        "kl_to_model": {"train": train.kl_to_model(nodes), "test": test.kl_to_model(nodes)},
        "completeness": {k: completeness[k] for k in ("mean_gap", "max_gap")},
        "stochastic": stochastic,
        "adversarial": adversarial,
        "mechanism": mechanism_agreement(model, tok, circuit, mechanism_data, ablation, frozen, means),
        "held_out": held_out_agreement(held_out, nodes),
        "interchange": None,
        "curves": curves,
    }
    if task.spec.family in VARIABLE_SLOTS:
        report["interchange"] = interchange(
            model, tok, task, nodes, variable, ablation, frozen, "test", cfg.interchange_n, cfg.seed, means
        )
    return _json_safe(report)
