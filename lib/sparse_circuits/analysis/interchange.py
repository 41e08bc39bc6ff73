"""Interchange consistency: does the circuit carry a task variable the way its model does?

A *counterfactual pair* is a base prompt and a source prompt that differ only in the variable: the gender of the
name in the pronoun family (slot ``name``), the gender of name_1 in the IOI family (slot ``name_1``). The source
swaps that name for one of the task's names of the other gender (seeded, distinct from the prompt's other
names; any split's name, since the source only donates activations), so both
prompts have the same tokens everywhere else and the same length. Only pairs whose expected answers differ count.

The *variable nodes* V are the nodes said to carry the variable: a given node set, or by default the circuit's
own nodes. Interchange patches V at every position with their values on the source prompt and runs the base
prompt:

- in the model: every node keeps its base value except V, which takes the model's value on the source;
- in the circuit: nodes outside the circuit C are ablated as usual; the nodes of V in C take the circuit's value
  on the source (a node outside C is ablated in both runs, so it cannot carry anything); the rest of C keeps
  its base value.

Per prompt the score is d = logit(source answer) - logit(base answer) at the answer position; the interchange
accuracy is the share of pairs with d > 0 (the patched run gives the source's answer), and the correlation of
d between model and circuit says whether they respond to the patch alike. Every run goes through
``MaskEvaluator`` (full forward, so that per-position patched values fit every hook).
"""

from __future__ import annotations

import random

import torch

from ..circuits.ablation import resolve_ablation
from ..circuits.evaluate import MaskEvaluator
from ..circuits.layout import NodeLayout
from ..core.seeds import derived_seed
from ..data.words import gender_of
from ..tasks import Task, TaskData, encode_prompts
from .compare import correlation

# task family -> the slot whose name's gender is the variable
VARIABLE_SLOTS = {"pronoun": "name", "ioi": "name_1"}


def variable_slot(task: Task) -> str:
    """The slot holding the task's variable (ValueError naming the task when its family has none)."""
    slot = VARIABLE_SLOTS.get(task.spec.family)
    if slot is None:
        raise ValueError(
            f"task {task.name!r} (family {task.spec.family!r}) has no interchange variable; "
            f"families with one: {sorted(VARIABLE_SLOTS)}"
        )
    return slot


def counterfactual_pairs(task: Task, tokenizer, split: str = "test", n: int = 64, seed: int = 0):
    """(base, source) ``TaskData`` of up to ``n`` pairs from the split's prompts: the source swaps the variable
    slot's name for one of the other gender; pairs whose correct answers coincide are dropped."""
    slot = variable_slot(task)
    names = list(dict.fromkeys(task.spec.slots[slot]))  # donors from every name: a split may hold one gender only
    rng = random.Random(derived_seed("interchange", task.name, split, seed))
    base, source = [], []
    for a in task.assignments(split):
        others = {v for k, v in a.items() if k != slot}
        options = [m for m in names if gender_of(m) != gender_of(a[slot]) and m not in others]
        if not options:
            continue
        b = {**a, slot: rng.choice(options)}
        if task.spec.correct_of(a) != task.spec.correct_of(b):
            base.append(a)
            source.append(b)
        if len(base) == n:
            break
    if not base:
        raise ValueError(f"task {task.name!r} has no counterfactual pairs with different answers in split {split!r}")

    def encode(assigns: list[dict]) -> TaskData:
        spec = task.spec
        texts = [task.prompt_text(a) for a in assigns]
        return encode_prompts(
            tokenizer, texts, assigns, [spec.correct_of(a) for a in assigns], [spec.incorrect_of(a) for a in assigns]
        )

    b, s = encode(base), encode(source)
    if b.tokens.shape != s.tokens.shape or not torch.equal(b.last, s.last):
        raise ValueError(f"task {task.name!r}: base and source prompts do not align token for token")
    return b, s


def _node_values(evaluator: MaskEvaluator, mask: torch.Tensor, data: TaskData, values) -> dict[str, torch.Tensor]:
    """Every node's value [n, T, width] per hook in the run of ``mask`` [N] on ``data`` (after masking)."""
    seen: dict[str, torch.Tensor] = {}

    def save(x: torch.Tensor, hook) -> None:
        seen[hook.name] = x.detach().reshape(x.shape[0], x.shape[1], -1)

    hooks = [(s.hook, save) for s in evaluator.layout.slices]
    with torch.no_grad():
        evaluator.run(mask.float()[None], data, "logits", values=values, extra_hooks=hooks)
    return seen


def _patched_values(layout: NodeLayout, variable: torch.Tensor, source: dict, ablated) -> dict[str, torch.Tensor]:
    """Per hook: the source's values on the variable nodes, the ablation values elsewhere ([n, T, width])."""
    out = {}
    for name, v in layout.split(variable.bool()).items():  # v: [width]
        src = source[name]
        a = torch.zeros_like(src) if ablated is None or name not in ablated else ablated[name].to(src).expand_as(src)
        out[name] = torch.where(v.to(src.device), src, a)
    return out


@torch.no_grad()
def interchange(
    model,
    tokenizer,
    task: Task,
    nodes: torch.Tensor,
    variable: torch.Tensor | None = None,
    ablation: str = "zero",
    frozen_ln: bool = False,
    split: str = "test",
    n: int = 64,
    seed: int = 0,
    means: dict | None = None,
) -> dict:
    """Interchange accuracy of the model and of the circuit ``nodes`` [N] bool when the variable nodes
    ``variable`` [N] bool (default: the circuit's nodes) are patched from source prompts into base prompts, and
    the correlation of their per-pair logit differences (see the module docstring)."""
    layout = NodeLayout(model)
    nodes = nodes.bool().cpu()
    variable = nodes.clone() if variable is None else variable.bool().cpu()
    if variable.shape != nodes.shape or nodes.numel() != layout.n_nodes:
        raise ValueError(
            f"node sets must have the model's {layout.n_nodes} nodes, got {len(nodes)} and {len(variable)}"
        )
    base, source = counterfactual_pairs(task, tokenizer, split, n, seed)
    plain = MaskEvaluator(model, layout, task.loss, at_answer=False)
    pruned = MaskEvaluator(model, layout, task.loss, frozen_ln=frozen_ln, at_answer=False)
    ones = torch.ones(layout.n_nodes)

    # the model: V from the model's run on the source, everything else its own base value
    model_source = _node_values(plain, ones, source, None)
    model_logits = plain.run((~variable).float()[None], base, "logits", values=model_source)[0]
    # the circuit: V in C from the circuit's run on the source, nodes outside C ablated
    ablated_base = resolve_ablation(model, tokenizer, ablation, base, means)
    circuit_source = _node_values(pruned, nodes, source, resolve_ablation(model, tokenizer, ablation, source, means))
    patched = variable & nodes
    values = _patched_values(layout, patched, circuit_source, ablated_base)
    circuit_logits = pruned.run((nodes & ~patched).float()[None], base, "logits", values=values)[0]

    rows = torch.arange(len(base))
    src_answer, base_answer = source.correct.to(model_logits.device), base.correct.to(model_logits.device)

    def logit_difference(logits: torch.Tensor) -> torch.Tensor:  # [n, V] -> [n]
        return (logits[rows, src_answer] - logits[rows, base_answer]).float().cpu()

    d_model, d_circuit = logit_difference(model_logits), logit_difference(circuit_logits)
    return {
        "n_pairs": len(base),
        "variable_nodes": int(variable.sum()),
        "patched_in_circuit": int(patched.sum()),
        "model_accuracy": float((d_model > 0).float().mean()),
        "circuit_accuracy": float((d_circuit > 0).float().mean()),
        "agreement": float(((d_model > 0) == (d_circuit > 0)).float().mean()),
        "correlation": float(correlation(d_model[:, None], d_circuit[:, None])[0]),
    }
