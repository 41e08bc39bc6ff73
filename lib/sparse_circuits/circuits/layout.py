"""Where every node lives: flat indices over all nodes of a model, and the one place node labels are built and read.

A *node* is one scalar channel at one of the 8 sites of a layer (``NODE_SITES``); a layer has 7 * d_model + d_mlp
of them (11 * d_model at the default MLP width). ``NodeLayout`` gives every node a flat index (layer-major, then
NODE_SITES order, then channel), so that a mask over all nodes is one tensor ``[S, N]``.

Labels: ``L1.v.h3.5`` (layer 1, v, head 3, dimension 5 within the head), ``L0.mlp_out.7`` (layer 0, mlp_out,
channel 7); the graph adds ``embed.C`` (embedding channel C of the residual stream) and ``logit.TOKEN`` (an
answer token's logit). ``node_label`` builds them, ``parse_label`` reads them without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..model.gpt import NODE_SITES, SparseGPT

HEAD_SITES = ("q", "k", "v")
EXAMPLE_LABELS = "e.g. L1.v.h3.5 or L0.mlp_out.7"


class NodeRef(NamedTuple):
    """A parsed node label. ``dim`` is the channel within the head for q/k/v (``head`` set), else within the site."""

    layer: int
    site: str
    head: int | None
    dim: int

    def channel(self, d_head: int) -> int:
        """Channel within the site (q/k/v heads flattened, as in the hooks' last axis)."""
        return self.dim if self.head is None else self.head * d_head + self.dim


def node_label(layer: int, site: str, channel: int, d_head: int) -> str:
    """The label of channel ``channel`` of a node site (``L1.v.h3.5``, ``L0.mlp_out.7``)."""
    if site in HEAD_SITES:
        return f"L{layer}.{site}.h{channel // d_head}.{channel % d_head}"
    return f"L{layer}.{site}.{channel}"


def parse_label(label: str) -> NodeRef:
    """The parts of a model node label such as ``L1.v.h3.5`` or ``L0.mlp_out.7`` (ValueError naming the label
    otherwise; ``embed.C`` and ``logit.TOKEN`` are graph endpoints, not model nodes)."""
    parts = label.split(".")
    try:
        if not parts[0].startswith("L") or parts[1] not in NODE_SITES:
            raise ValueError
        layer, site = int(parts[0][1:]), parts[1]
        if site in HEAD_SITES:
            if len(parts) != 4 or not parts[2].startswith("h"):
                raise ValueError
            return NodeRef(layer, site, int(parts[2][1:]), int(parts[3]))
        if len(parts) != 3:
            raise ValueError
        return NodeRef(layer, site, None, int(parts[2]))
    except (IndexError, ValueError) as e:
        raise ValueError(f"not a model node label: {label!r} (expected {EXAMPLE_LABELS})") from e


def token_text(tok, token_id: int) -> str:
    """A token's string, or ``#id`` without a tokenizer (or for an id it does not know)."""
    s = tok.id_to_token(int(token_id)) if tok is not None else None
    return s if s is not None else f"#{int(token_id)}"


def embed_label(channel: int) -> str:
    """Label of embedding channel ``channel`` as a graph endpoint."""
    return f"embed.{channel}"


def logit_label(tok, token_id: int) -> str:
    """Label of an answer token's logit as a graph endpoint."""
    return f"logit.{token_text(tok, token_id)}"


@dataclass(frozen=True)
class SiteSlice:
    """One node site of one layer: its hook and its range of flat indices."""

    layer: int
    site: str
    hook: str
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


class NodeLayout:
    """Flat indexing of every node of a model: layer-major, then NODE_SITES order, then channel."""

    def __init__(self, model: SparseGPT) -> None:
        self.slices: list[SiteSlice] = []
        start = 0
        for layer in range(model.cfg.n_layer):
            hooks = model.node_hook_names(layer)
            for site in NODE_SITES:
                w = model.site_width(site)
                self.slices.append(SiteSlice(layer, site, hooks[site], start, w))
                start += w
        self.n_nodes = start
        self.n_layer, self.n_head, self.d_head = model.cfg.n_layer, model.cfg.n_head, model.cfg.d_head
        self.by_key = {(s.layer, s.site): s for s in self.slices}

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[..., N] -> {hook name: [..., width]}."""
        return {s.hook: flat[..., s.start : s.stop] for s in self.slices}

    def sl(self, layer: int, site: str) -> slice:
        """The flat indices of one node site."""
        s = self.by_key[(layer, site)]
        return slice(s.start, s.stop)

    def describe(self, index: int) -> tuple[int, str, int]:
        """(layer, site, channel) of a flat node index."""
        for s in self.slices:
            if s.start <= index < s.stop:
                return s.layer, s.site, index - s.start
        raise IndexError(f"node index {index} out of range (model has {self.n_nodes} nodes)")

    def hook_of(self, index: int) -> str:
        """The hook name of the site a flat node index belongs to."""
        layer, site, _ = self.describe(index)
        return self.by_key[(layer, site)].hook

    def label(self, index: int) -> str:
        """The label of a flat node index."""
        layer, site, ch = self.describe(index)
        return node_label(layer, site, ch, self.d_head)

    def index(self, node: str | int) -> int:
        """Flat index of a label such as ``L1.v.h3.5`` (an int passes through); ValueError naming the label when
        this model has no such node."""
        if isinstance(node, int):
            return node
        ref = parse_label(node)
        s = self.by_key.get((ref.layer, ref.site))
        channel = ref.channel(self.d_head)
        if s is None or not 0 <= channel < s.width or (ref.head is not None and not 0 <= ref.dim < self.d_head):
            raise ValueError(f"not a node of this model: {node!r} ({self.n_layer} layers)")
        return s.start + channel
