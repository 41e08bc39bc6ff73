"""The data behind a view of one circuit, computed once: graph, node positions, and both models' caches.

``InspectorData.build`` runs the model and the pruned model once on a prompt set (every node hook and every
attention pattern), lays out the circuit's graph (``circuits.graph``) and keeps its adjacency; selecting a node
(``panel``) is then slicing those caches plus one small forward pass for its ablation effect (cached). The
widget (``widgets.CircuitInspector``) and the offline HTML page (``html.circuit_to_html``) both read it; the
one-question functions behind it live in ``circuits.graph`` (edges, weights), ``circuits.evaluate`` (ablation
effects), ``analysis.compare`` (attention) and ``analysis.inspection`` (activations, corpus snippets).

Node labels are ``NodeLayout`` labels (``L1.v.h3.5``, ``L0.mlp_neuron.17``), plus ``embed.C`` (embedding
channel C of the residual stream) and ``logit.TOKEN`` (answer-token logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..analysis.compare import pattern_hook, pattern_keys, pattern_summary, prompt_tokens, run_pair
from ..analysis.inspection import CorpusActivations, activation_rows
from ..circuits.ablation import resolve_ablation
from ..circuits.evaluate import ablation_effects, circuit_frozen_ln
from ..circuits.graph import adjacency, circuit_graph, downstream, is_bias_like, node_weights, upstream
from ..circuits.layout import NodeLayout
from ..model.gpt import SparseGPT
from ..tasks import TaskData
from .graph_layout import layout


@dataclass
class InspectorData:
    """Everything a view of one circuit needs, computed once: graph, layout, and both models' caches on
    the prompts. Selecting a node (``panel``) then costs slicing plus one small forward pass (its ablation
    effect, cached)."""

    model: SparseGPT
    tok: object
    circuit: object
    data: TaskData
    loss: str
    ablation: dict | None
    frozen_ln: bool
    graph: dict
    positions: dict
    adj: tuple
    original: dict
    pruned: dict
    corpus: CorpusActivations | None = None
    _effects: dict = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        model: SparseGPT,
        tok,
        circuit,
        data: TaskData,
        loss: str | None = None,
        ablation: dict | str | None = "auto",
        means: dict | None = None,
        corpus: CorpusActivations | None = None,
        frozen_ln: bool | None = None,
    ) -> InspectorData:
        """``ablation="auto"`` uses the circuit's recorded ablation (means computed unless ``means`` given);
        a dict or None (zero) is used as given."""
        if isinstance(ablation, str):
            kind = circuit.meta.get("ablation", "zero") if ablation == "auto" else ablation
            ablation = resolve_ablation(model, tok, kind, data, means)
        answers = sorted(set(data.correct.tolist()) | set(data.incorrect.tolist()))
        graph = circuit_graph(model, circuit, answers, tok)
        names = [s.hook for s in NodeLayout(model).slices] + [pattern_hook("*")]
        orig, pruned = run_pair(model, circuit, data.tokens, names, ablation, frozen_ln)
        return cls(
            model,
            tok,
            circuit,
            data,
            loss or circuit.meta.get("task_loss_kind", "full"),
            ablation,
            circuit_frozen_ln(circuit, frozen_ln),
            graph,
            layout(graph),
            adjacency(graph),
            orig,
            pruned,
            corpus,
        )

    @property
    def node_labels(self) -> list[str]:
        """The circuit's nodes in the graph's forward order (embedding and logit endpoints left out)."""
        return [k for k, v in self.graph["nodes"].items() if v["kind"] == "node"]

    @property
    def tokens(self) -> list[list[str]]:
        """Each prompt's token strings up to its answer position."""
        return prompt_tokens(self.tok, self.data)

    def activations(self, label: str) -> dict:
        """One node's [n, T] values in both models, as ``inspection.activation_table`` returns them."""
        return activation_rows(self.original, self.pruned, NodeLayout(self.model), label, self.data, self.tokens)

    def head_patterns(self, layer: int, head: int) -> dict:
        """One head's answer-position attention in both models, as ``compare.head_patterns`` returns it."""
        return pattern_summary(
            self.original, self.pruned, layer, head, self.data.last, pattern_keys(self.tok, self.data)
        )

    def effects(self, labels: list[str]) -> dict[str, dict]:
        """Ablation effects of several nodes (batched, cached)."""
        todo = [x for x in labels if x not in self._effects]
        if todo:
            r = ablation_effects(self.model, self.circuit, self.data, todo, self.loss, self.ablation, self.frozen_ln)
            for j, x in enumerate(todo):
                self._effects[x] = {
                    "circuit_loss": r["circuit_loss"],
                    "toggled_loss": float(r["toggled_loss"][j]),
                    "delta": float(r["delta"][j]),
                    "removed": bool(r["removed"][j]),
                }
        return {x: self._effects[x] for x in labels}

    def panel(self, label: str, snippets: bool = True) -> dict:
        """All that the node view shows for one node."""
        info = self.graph["nodes"].get(label)
        if info is None or info["kind"] != "node":
            return {"label": label, "info": info, "in_circuit": False}
        out = {
            "label": label,
            "info": info,
            "in_circuit": True,
            "bias_like": is_bias_like(self.graph, label),
            "n_upstream": len(upstream(self.graph, label, self.adj)),
            "n_downstream": len(downstream(self.graph, label, self.adj)),
            "activations": self.activations(label),
            "weights": node_weights(self.model, self.circuit, label, self.graph["answer_tokens"], self.tok),
            "effect": self.effects([label])[label],
        }
        if info["head"] is not None:
            out["head"] = self.head_patterns(info["layer"], info["head"])
        if snippets and self.corpus is not None:
            out["snippets"] = self.corpus.snippets(self.model, self.tok, label)
        return out
