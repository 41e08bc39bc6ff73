"""The hook names of the sparse GPT, built in one place.

A hook is named by its module path with ``hook_`` before the last part: ``hook_name("attn.pattern", 1)`` is
``blocks.1.attn.hook_pattern``, ``hook_name("ln_final.scale")`` is ``ln_final.hook_scale``. Kinds inside a block
take its layer (``"*"`` for a glob over every layer); the others take none.
"""

from __future__ import annotations

# Hooks of one block, in forward order (see gpt.Block, gpt.Attention, gpt.MLP, gpt.RMSNorm).
BLOCK_HOOKS = (
    "resid_pre",
    "ln1.scale",
    "ln1.normalized",
    "attn_in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.attn_scores",
    "attn.pattern",
    "attn.z",
    "attn_out",
    "resid_mid",
    "ln2.scale",
    "ln2.normalized",
    "mlp_in",
    "mlp.pre",
    "mlp.post",
    "mlp_out",
    "resid_post",
)
# Hooks outside the blocks.
MODEL_HOOKS = ("embed", "ln_final.scale", "ln_final.normalized", "logits")
# The hook of each node site (gpt.NODE_SITES): mlp_neuron nodes are the MLP's activations after GELU and AbsTopK.
NODE_SITE_HOOKS = {
    "attn_in": "attn_in",
    "q": "attn.q",
    "k": "attn.k",
    "v": "attn.v",
    "attn_out": "attn_out",
    "mlp_in": "mlp_in",
    "mlp_neuron": "mlp.post",
    "mlp_out": "mlp_out",
}
# Glob over the scale hook of every norm (ln1, ln2 of every block and ln_final): what frozen norms replace.
NORM_SCALES = "*hook_scale"


def hook_name(kind: str, layer: int | str | None = None) -> str:
    """The hook name of ``kind`` (one of BLOCK_HOOKS with a layer, or MODEL_HOOKS without one)."""
    if layer is None:
        if kind not in MODEL_HOOKS:
            raise ValueError(f"{kind!r} is not a model-level hook (a block hook needs a layer); known: {MODEL_HOOKS}")
        path = kind
    else:
        if kind not in BLOCK_HOOKS:
            raise ValueError(f"{kind!r} is not a block hook; known: {BLOCK_HOOKS}")
        path = f"blocks.{layer}.{kind}"
    parent, _, leaf = path.rpartition(".")
    return f"{parent}.hook_{leaf}" if parent else f"hook_{leaf}"


def node_hook_name(site: str, layer: int) -> str:
    """The hook of a node site in one layer (q, k, v hooks are [B, T, H, E]; the rest [B, T, width])."""
    return hook_name(NODE_SITE_HOOKS[site], layer)
