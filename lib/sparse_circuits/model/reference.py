"""Import the released checkpoints of the two reference implementations into this project's model directories.

Two formats (docs/reference_models.md describes them and the option that reproduces each reference's forward):

- ``openai``: a ``circuit_sparsity`` model directory, ``beeg_config.json`` + ``final_model.pt``.
- ``drori``: a ``sparse_pretrain`` upload, ``config.json`` (+ ``training_config.yaml``) + ``pytorch_model.bin``
  (dense models) or ``sparse_model.bin`` + ``bridges.bin`` (weight-sparse models trained with bridges).

Source weights are read once, here, with ``torch.load(weights_only=True)`` (no arbitrary unpickling) and converted
to float32; the written directory is plain safetensors + JSON. Every source key is either mapped onto a parameter
of ``SparseGPT`` or listed in the import report as dropped, with the reason; a key the format does not define is
an error, as is any option this model cannot reproduce (the error names the field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..core.storage import CheckpointError, read_json
from ..data.tokenizer import data_gym_tokenizer, eos_id, load_tokenizer, save_tokenizer
from .checkpoint import TOKENIZER_FILE, save_model
from .gpt import ModelConfig, SparseGPT

FORMATS = ("openai", "drori")
# Drori's SparseGPT has two forward passes that differ in one residual AbsTopK (see docs/reference_models.md).
DRORI_PATHS = ("forward", "train", "loader")

# Node-site locations, named alike in both references (q, k, v carry an "attn_" prefix there).
_NODE_LOCATIONS = {
    **{site: (site,) for site in ("attn_in", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")},
    **{f"attn_{site}": (site,) for site in ("q", "k", "v")},
}
# OpenAI afrac_loctypes -> our AbsTopK sites. resid_post_mlp acts after every block, the last one included.
OPENAI_SITES = {**_NODE_LOCATIONS, "resid_post_attn": ("resid_mid",), "resid_post_mlp": ("resid_post", "resid_final")}
# Drori activation_sparsity_locations -> our sites. resid_pre is the input of every block: the embedding, then the
# output of every block but the last (his training path adds the last one, "resid_final").
DRORI_SITES = {**_NODE_LOCATIONS, "resid_mid": ("resid_mid",), "resid_pre": ("resid_embed", "resid_post")}
# What every Drori loader builds, since config.json does not save the locations.
DRORI_DEFAULT_LOCATIONS = "attn_in,attn_out,mlp_in,mlp_out,mlp_neuron,attn_v,attn_k,attn_q"
# GPTConfig fields with no effect on an eval-mode forward pass.
OPENAI_INERT = (
    "dropout",
    "debug_nans",
    "enable_sparse_kernels",
    "dropout_cat_pos_emb",
    "sinusoidal_cat_pos_emb",
    "flash",
    "grad_checkpointing",
    "tokenizer_name",
    "ln_bias",
    "learnable_bigram_table",
)
OPENAI_FIELDS = (
    *OPENAI_INERT,
    *("n_layer", "n_head", "d_model", "d_head", "d_mlp", "vocab_size", "block_size", "bias", "rms_norm"),
    *("activation_type", "residual_activation_type", "afrac", "afrac_loctypes", "tied_unembed"),
    *("enable_bigram_table", "sink", "d_pos_emb", "use_tied_aux_matrix"),
)
DRORI_MODEL_FIELDS = (
    *("n_layer", "d_model", "n_ctx", "d_head", "d_mlp", "vocab_size", "use_rms_norm", "tie_embeddings"),
    *("use_positional_embeddings", "use_bigram_table", "use_attention_sinks", "activation", "dropout", "use_bias"),
    "use_flash_attention",
)
# SparsityConfig fields: only the activation ones affect the forward pass.
DRORI_SPARSITY_FIELDS = (
    *("enable_weight_sparsity", "target_l0_fraction", "sparsity_anneal_start_fraction", "anneal_type"),
    *("sparsity_anneal_end_fraction", "min_weights_per_neuron", "enable_activation_sparsity"),
    *("activation_topk_fraction", "activation_sparsity_locations"),
)


@dataclass
class ImportedModel:
    """A converted reference model: our config, our state dict (float32), and what happened to every source key."""

    config: ModelConfig
    state: dict[str, torch.Tensor]
    source: dict = field(default_factory=dict)
    """Format, source directory, options, and the dropped source keys with their reasons."""

    def build(self) -> SparseGPT:
        """The SparseGPT with the converted weights (strict: every parameter and buffer is set)."""
        model = SparseGPT(self.config)
        model.load_state_dict(self.state, strict=True)
        return model.eval()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a ``.pt``/``.bin`` file, read with ``weights_only=True``; errors name the file."""
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickle that is not plain tensors, ...
        raise CheckpointError(f"could not read {path} as a weights-only torch file: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"{path} is not a flat state dict of tensors")
    return dict(state)


class _Source:
    """The source tensors of one file, taken by key with a shape check; what is left over must be dropped by name."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        self.path, self.tensors, self.dropped = path, tensors, {}

    def take(self, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key not in self.tensors:
            raise CheckpointError(f"{self.path}: missing weight {key!r}, which the config requires")
        t = self.tensors.pop(key)
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{self.path}: {key} has shape {tuple(t.shape)}, the config implies {shape}")
        return t.to(torch.float32)  # bf16 / fp16 sources become fp32 (bf16 -> fp32 is exact)

    def take_or_zeros(self, key: str, shape: tuple[int, ...], present: bool) -> torch.Tensor:
        """A bias the config says exists; zeros (the same function) when the source has none."""
        return self.take(key, shape) if present else torch.zeros(shape)

    def drop(self, key: str, reason: str) -> None:
        if key in self.tensors:
            del self.tensors[key]
            self.dropped[key] = reason

    def finish(self) -> dict[str, str]:
        if self.tensors:
            raise CheckpointError(f"{self.path}: unexpected weights for this config: {sorted(self.tensors)[:8]}")
        return self.dropped


def _require(d: dict, name: str, where: Path):
    if name not in d:
        raise CheckpointError(f"{where}: missing field {name!r}")
    return d[name]


def _unsupported(where: Path, name: str, value, why: str) -> CheckpointError:
    return CheckpointError(f"{where}: unsupported option {name}={value!r} ({why})")


def _sites(locations: str, table: dict[str, tuple[str, ...]], where: Path, name: str) -> tuple[str, ...]:
    sites: list[str] = []
    for loc in (s.strip() for s in locations.split(",") if s.strip()):
        if loc not in table:
            raise _unsupported(where, name, loc, f"known locations: {sorted(table)}")
        sites += [s for s in table[loc] if s not in sites]
    return tuple(sites)


def _convert_gpt2(src: _Source, cfg: ModelConfig, keys: dict[str, str], bias: bool, sink_key: str | None) -> dict:
    """Map a GPT-2-style state dict (fused c_attn, c_proj, c_fc) onto SparseGPT's keys.

    ``keys`` names the source keys: embed, pos, block (a prefix with {i}), ln_f, lm_head, bigram.
    """
    D, V, F, H = cfg.d_model, cfg.vocab_size, cfg.d_mlp, cfg.n_head
    out = {"embed.weight": src.take(keys["embed"], (V, D))}
    if cfg.positional_embedding:
        out["pos_embed.weight"] = src.take(keys["pos"], (cfg.n_ctx, D))
    for i in range(cfg.n_layer):
        p, q = keys["block"].format(i=i), f"blocks.{i}."
        out[q + "ln1.weight"] = src.take(p + "ln_1.weight", (D,))
        out[q + "ln2.weight"] = src.take(p + "ln_2.weight", (D,))
        qkv_w = src.take(p + "attn.c_attn.weight", (3 * D, D))  # rows: q, k, v
        qkv_b = src.take_or_zeros(p + "attn.c_attn.bias", (3 * D,), bias)
        for name, w, b in zip(("W_Q", "W_K", "W_V"), qkv_w.chunk(3), qkv_b.chunk(3)):
            out[q + f"attn.{name}.weight"], out[q + f"attn.{name}.bias"] = w.clone(), b.clone()
        out[q + "attn.W_O.weight"] = src.take(p + "attn.c_proj.weight", (D, D))
        out[q + "attn.W_O.bias"] = src.take_or_zeros(p + "attn.c_proj.bias", (D,), bias)
        if sink_key is not None:
            sink = src.tensors.get(p + sink_key)
            # A one-element sink logit is broadcast over the heads, as the reference does.
            shape = (1,) if sink is not None and sink.numel() == 1 else (H,)
            out[q + "attn.sink"] = src.take(p + sink_key, shape).reshape(-1).expand(H).clone()
        out[q + "mlp.W_in.weight"] = src.take(p + "mlp.c_fc.weight", (F, D))
        out[q + "mlp.W_in.bias"] = src.take_or_zeros(p + "mlp.c_fc.bias", (F,), bias)
        out[q + "mlp.W_out.weight"] = src.take(p + "mlp.c_proj.weight", (D, F))
        out[q + "mlp.W_out.bias"] = src.take_or_zeros(p + "mlp.c_proj.bias", (D,), bias)
    out["ln_final.weight"] = src.take(keys["ln_f"], (D,))
    out["unembed.weight"] = src.take(keys["lm_head"], (V, D))
    if cfg.bigram_table:
        out["bigram.weight"] = src.take(keys["bigram"], (V, V))
    return out


def import_openai(src_dir: str | Path) -> ImportedModel:
    """Convert a ``circuit_sparsity`` directory (``beeg_config.json`` + ``final_model.pt``)."""
    src_dir = Path(src_dir)
    where = src_dir / "beeg_config.json"
    c = read_json(where)
    if "n_mlp" in c:  # older configs; the reference renames it the same way
        c["d_mlp"] = c.pop("n_mlp")
    unknown = sorted(set(c) - set(OPENAI_FIELDS))
    if unknown:
        raise CheckpointError(f"{where}: unknown fields {unknown}")
    n_layer, n_head, d_model = (_require(c, k, where) for k in ("n_layer", "n_head", "d_model"))
    d_head = c.get("d_head") or d_model // n_head
    if n_head * d_head != d_model:
        raise _unsupported(where, "d_head", d_head, f"n_head * d_head must equal d_model={d_model}")
    for name, ok in (
        ("rms_norm", True),
        ("residual_activation_type", "identity"),
        ("d_pos_emb", None),
    ):
        if _require(c, name, where) != ok:
            raise _unsupported(where, name, c[name], f"only {ok!r} is supported")
    if c.get("use_tied_aux_matrix"):
        raise _unsupported(where, "use_tied_aux_matrix", c["use_tied_aux_matrix"], "the reference loader refuses it")
    afrac = _require(c, "afrac", where)
    sites = _sites(_require(c, "afrac_loctypes", where), OPENAI_SITES, where, "afrac_loctypes") if afrac else ()
    activation = _require(c, "activation_type", where)
    if activation not in ("gelu", "relu"):
        raise _unsupported(where, "activation_type", activation, "gelu or relu")
    sink = bool(c.get("sink", False))
    try:
        cfg = ModelConfig(
            vocab_size=_require(c, "vocab_size", where),
            n_layer=n_layer,
            d_model=d_model,
            d_head=d_head,
            n_ctx=_require(c, "block_size", where),
            mlp_width=c.get("d_mlp") or 4 * d_model,
            positional_embedding=True,  # the reference always adds wpe
            bigram_table=bool(_require(c, "enable_bigram_table", where)),
            attention_sink=sink,
            abstopk_frac=afrac or ModelConfig.abstopk_frac,
            abstopk_sites=sites,
            abstopk_rounding="floor",
            norm_eps="dtype",
            activation=activation,
            unembed_bias="buffer",  # final_logits_bias is a buffer, never trained
        )
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from e
    path = src_dir / "final_model.pt"
    src = _Source(path, read_weights(path))
    tied = bool(c.get("tied_unembed", True))
    if tied and "lm_head.weight" not in src.tensors:  # a tied unembedding is the embedding matrix itself
        src.tensors["lm_head.weight"] = src.tensors.get("transformer.wte.weight", torch.empty(0))
    keys = dict(
        embed="transformer.wte.weight",
        pos="transformer.wpe.weight",
        block="transformer.h.{i}.",
        ln_f="transformer.ln_f.weight",
        lm_head="lm_head.weight",
        bigram="bigram_table",
    )
    state = _convert_gpt2(
        src, cfg, keys, bool(_require(c, "bias", where)), "attn.attn_imp.sink_logit" if sink else None
    )
    # The reference loader adds a zero final_logits_bias when the file has none.
    has_bias = "final_logits_bias" in src.tensors
    state["unembed.bias"] = src.take_or_zeros("final_logits_bias", (cfg.vocab_size,), has_bias)
    for i in range(n_layer):
        src.drop(f"transformer.h.{i}.attn.bias", "causal-mask buffer (recomputed by the model)")
    notes = [] if has_bias else ["final_logits_bias absent: zeros, as the reference loader does"]
    if tied:
        notes.append("tied_unembed: the unembedding is imported as an untied copy of the embedding")
    if cfg.bigram_table and not c.get("learnable_bigram_table", False):
        notes.append("learnable_bigram_table=false: the bigram table is imported as a (trainable) parameter")
    return ImportedModel(cfg, state, dict(format="openai", dropped=src.finish(), notes=notes))


def _drori_locations(src_dir: Path, sparsity: dict, path_option: str) -> str:
    """The activation sparsity locations the chosen Drori forward pass uses: config.json's when it saves them,
    else the defaults his loaders build (``loader``) or the training config's (``forward``, ``train``)."""
    saved = sparsity.get("activation_sparsity_locations")
    if path_option == "loader" or saved is not None:
        return saved or DRORI_DEFAULT_LOCATIONS
    yaml_path = src_dir / "training_config.yaml"
    if not yaml_path.is_file():
        raise CheckpointError(
            f"{yaml_path} not found: it holds activation_sparsity_locations (use the 'loader' path to import "
            "with the default locations his loaders build)"
        )
    import yaml

    try:
        full = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{yaml_path} is not valid YAML: {e}") from e
    section = (full or {}).get("sparsity")
    if not isinstance(section, dict):
        raise CheckpointError(f"{yaml_path}: missing section 'sparsity'")
    locations = section.get("activation_sparsity_locations", DRORI_DEFAULT_LOCATIONS)
    if section.get("activation_topk_fraction") != sparsity.get("activation_topk_fraction"):
        raise CheckpointError(f"{yaml_path}: activation_topk_fraction disagrees with config.json")
    return locations


def import_drori(src_dir: str | Path, path: str = "forward") -> ImportedModel:
    """Convert a ``sparse_pretrain`` upload (standalone or bridges layout).

    ``path`` picks which of his forward passes the imported model reproduces: ``forward`` (``SparseGPT.forward``
    with the training config's locations), ``train`` (``forward_with_bridge_sites``: one more residual AbsTopK
    after the last block) or ``loader`` (what his loaders build from ``config.json`` alone: default locations).
    """
    if path not in DRORI_PATHS:
        raise ValueError(f"path must be one of {DRORI_PATHS}, got {path!r}")
    src_dir = Path(src_dir)
    where = src_dir / "config.json"
    c = read_json(where)
    m = _require(c, "model_config", where)
    sparsity = _require(c, "sparsity_config", where)
    for section, known in (("model_config", DRORI_MODEL_FIELDS), ("sparsity_config", DRORI_SPARSITY_FIELDS)):
        unknown = sorted(set(c[section]) - set(known))
        if unknown:
            raise CheckpointError(f"{where}: unknown {section} fields {unknown}")
    if not _require(m, "use_rms_norm", where):
        raise _unsupported(where, "use_rms_norm", m["use_rms_norm"], "LayerNorm models are not supported")
    d_model, d_head = _require(m, "d_model", where), _require(m, "d_head", where)
    sinks = bool(_require(m, "use_attention_sinks", where))
    flash = bool(m.get("use_flash_attention", True))
    sites: tuple[str, ...] = ()
    if _require(sparsity, "enable_activation_sparsity", where):
        locations = _drori_locations(src_dir, sparsity, path)
        sites = _sites(locations, DRORI_SITES, where, "activation_sparsity_locations")
        if path == "train" and "resid_embed" in sites:
            sites += ("resid_final",)
    try:
        cfg = ModelConfig(
            vocab_size=_require(m, "vocab_size", where),
            n_layer=_require(m, "n_layer", where),
            d_model=d_model,
            d_head=d_head,
            n_ctx=_require(m, "n_ctx", where),
            mlp_width=_require(m, "d_mlp", where),
            positional_embedding=bool(_require(m, "use_positional_embeddings", where)),
            bigram_table=bool(_require(m, "use_bigram_table", where)),
            attention_sink=sinks and flash,  # his non-flash attention ignores the sinks
            abstopk_frac=float(_require(sparsity, "activation_topk_fraction", where)),
            abstopk_sites=sites,
            abstopk_rounding="floor_min1",
            norm_eps="dtype",
            activation=_require(m, "activation", where),
            unembed_bias="none",
        )
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from e
    standalone = src_dir / "pytorch_model.bin"
    weights = standalone if standalone.is_file() else src_dir / "sparse_model.bin"
    src = _Source(weights, read_weights(weights))
    keys = dict(embed="wte.weight", pos="wpe.weight", block="blocks.{i}.", ln_f="ln_f.weight")
    keys.update(lm_head="lm_head.weight", bigram="bigram_table")
    state = _convert_gpt2(
        src, cfg, keys, bool(_require(m, "use_bias", where)), "attn.attn_fn.sink_logit" if sinks and flash else None
    )
    for i in range(cfg.n_layer):
        src.drop(f"blocks.{i}.attn.causal_mask", "causal-mask buffer (recomputed by the model)")
        if sinks and not flash:
            src.drop(f"blocks.{i}.attn.attn_fn.sink_logit", "use_flash_attention=false ignores attention sinks")
    dropped = src.finish()
    bridges = src_dir / "bridges.bin"
    if weights != standalone and bridges.is_file():
        for key in read_weights(bridges):
            dropped[f"bridges.bin:{key}"] = "bridge to the dense model, not part of the sparse model's forward pass"
    notes = [f"forward path {path!r}: AbsTopK sites {list(sites)}"]
    return ImportedModel(cfg, state, dict(format="drori", path=path, dropped=dropped, notes=notes))


def read_tokenizer(path: str | Path) -> Tokenizer:
    """A reference tokenizer: a ``tokenizer.json`` file (or a directory holding one), or a directory holding
    OpenAI's data-gym BPE files ``vocab.bpe`` + ``encoder.json``."""
    path = Path(path)
    if path.is_dir() and (path / "vocab.bpe").is_file():
        return data_gym_tokenizer(path / "vocab.bpe", path / "encoder.json")
    return load_tokenizer(path / TOKENIZER_FILE if path.is_dir() else path)


def import_model(
    fmt: str, src_dir: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None, drori_path: str = "forward"
) -> dict:
    """Convert a reference checkpoint into a model directory of ours; returns the import report (also saved in
    config.json under "source"). ``tokenizer`` (see ``read_tokenizer``) is written as tokenizer.json."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {list(FORMATS)}")
    imported = import_openai(src_dir) if fmt == "openai" else import_drori(src_dir, drori_path)
    model = imported.build()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tok = read_tokenizer(tokenizer)
        if tok.get_vocab_size() != imported.config.vocab_size:
            raise CheckpointError(
                f"tokenizer {tokenizer} has {tok.get_vocab_size()} tokens, the model has {imported.config.vocab_size}"
            )
        eos_id(tok)  # every command needs the end-of-text token
        save_tokenizer(tok, out_dir / TOKENIZER_FILE)
    source = {**imported.source, "directory": str(Path(src_dir).resolve())}
    save_model(model, out_dir, {"name": out_dir.name, "source": source})
    return source
