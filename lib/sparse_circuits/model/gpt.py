"""The sparse GPT: a small pre-norm decoder-only transformer (docs/method.md, The model), every activation a hook point.

Shapes: B batch, T tokens, D d_model, H heads, E d_head (16), F MLP width (d_mlp, 4 D by default), V vocabulary.

    x = embed(tokens)                        # hook_embed, blocks.0.hook_resid_pre
    x = x + attn(norm1(x))                   # blocks.{l}.hook_attn_in ... hook_attn_out
    x = x + mlp(norm2(x))                    # blocks.{l}.hook_mlp_in ... hook_mlp_out
    logits = unembed(norm_final(x)) [+ bigram(tokens)]

RMSNorm (zero stays zero), no positional embedding by default, a learnable attention sink per head (an
extra key slot with zero key and value; column 0 of every pattern), and AbsTopK activation sparsity at
chosen sites. The model knows nothing about pruning: pruning acts through the hook points.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import strict_from_dict
from ..data.sources import CorpusConfig
from .hooks import HookedModule, HookPoint
from .names import node_hook_name

# Node sites of one layer, in forward order (docs/method.md, Pruning): 7 * d_model + d_mlp scalar channels in all.
NODE_SITES = ("attn_in", "q", "k", "v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")
# Residual-stream AbsTopK sites: after the embedding, between the two sublayers of each block, after every block
# but the last, and after the last block (before the final norm). "resid" names all four at once.
RESID_SITES = ("resid_embed", "resid_mid", "resid_post", "resid_final")
# Where AbsTopK may act: every node site plus the residual stream.
ABSTOPK_SITES = NODE_SITES + ("resid",) + RESID_SITES
# How AbsTopK turns frac * width into k: round (this project), floor (OpenAI's circuit_sparsity: k may be 0) or
# floor with a minimum of 1 (Drori's sparse_pretrain). Every rule keeps all entries once k >= width.
ABSTOPK_ROUNDINGS = ("round", "floor", "floor_min1")
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}
# The unembedding bias: a trained parameter, a fixed buffer (saved and loaded, never trained) or none.
UNEMBED_BIASES = ("parameter", "buffer", "none")


@dataclass
class ModelConfig:
    """Architecture of a sparse GPT. Saved in every checkpoint's config.json, so a loaded model equals the trained one."""

    vocab_size: int
    """Number of tokens, including the specials (<eos> = 0, <unk> = 1)."""
    n_layer: int = 2
    """Transformer blocks. The reference works use 2 (Drori) to 8 (Gao)."""
    d_model: int = 128
    """Residual stream width."""
    d_head: int = 16
    """Channels per attention head; n_head = d_model / d_head."""
    n_ctx: int = 128
    """Longest sequence the model is trained on (only the optional positional embedding depends on it)."""
    mlp_ratio: int = 4
    """MLP width as a multiple of d_model (unless mlp_width is set)."""
    mlp_width: int | None = None
    """MLP width in neurons, overriding mlp_ratio (for imported models whose width is not a multiple of d_model)."""
    positional_embedding: bool = False
    """Add a learned absolute positional embedding (off: causal attention alone supplies position)."""
    bigram_table: bool = False
    """Add a dense learned bigram table (vocab x vocab) to the logits; it is never sparsified."""
    attention_sink: bool = True
    """A learnable per-head logit for an extra key slot with zero key and value, so a head can attend nowhere."""
    abstopk_frac: float = 0.25
    """Fraction of entries kept (largest |x| per token) at each AbsTopK site."""
    abstopk_sites: tuple[str, ...] = field(default_factory=lambda: NODE_SITES)
    """Sites with AbsTopK; a subset of ABSTOPK_SITES ("resid" covers all of RESID_SITES). Empty for dense baselines."""
    abstopk_rounding: str = "round"
    """How k is computed from abstopk_frac * width: "round", "floor" or "floor_min1" (see ABSTOPK_ROUNDINGS)."""
    norm_eps: float | str = 1e-5
    """Added inside the RMS so that an all-zero residual gives zero, not NaN; "dtype" uses the machine epsilon of the activations' dtype."""
    activation: str = "gelu"
    """MLP nonlinearity: "gelu" (exact, erf-based) or "relu"."""
    unembed_bias: str = "parameter"
    """Bias of the unembedding: "parameter" (trained), "buffer" (fixed, saved with the weights) or "none"."""

    def __post_init__(self) -> None:
        self.abstopk_sites = tuple(self.abstopk_sites)
        for name in ("vocab_size", "n_layer", "d_model", "d_head", "n_ctx", "mlp_ratio"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.d_head:
            raise ValueError(f"ModelConfig.d_model ({self.d_model}) must be a multiple of d_head ({self.d_head})")
        unknown = sorted(set(self.abstopk_sites) - set(ABSTOPK_SITES))
        if unknown:
            raise ValueError(f"ModelConfig.abstopk_sites has unknown sites {unknown}; allowed: {list(ABSTOPK_SITES)}")
        if not 0.0 < self.abstopk_frac <= 1.0:
            raise ValueError(f"ModelConfig.abstopk_frac must be in (0, 1], got {self.abstopk_frac}")
        if self.mlp_width is not None and (not isinstance(self.mlp_width, int) or self.mlp_width < 1):
            raise ValueError(f"ModelConfig.mlp_width must be a positive integer or null, got {self.mlp_width!r}")
        if self.norm_eps != "dtype" and (isinstance(self.norm_eps, (str, bool)) or not self.norm_eps > 0):
            raise ValueError(f'ModelConfig.norm_eps must be a positive number or "dtype", got {self.norm_eps!r}')
        for name, allowed in (
            ("abstopk_rounding", ABSTOPK_ROUNDINGS),
            ("activation", tuple(ACTIVATIONS)),
            ("unembed_bias", UNEMBED_BIASES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")

    @property
    def n_head(self) -> int:
        return self.d_model // self.d_head

    @property
    def d_mlp(self) -> int:
        return self.mlp_width if self.mlp_width is not None else self.mlp_ratio * self.d_model

    def has_abstopk(self, site: str) -> bool:
        """Whether AbsTopK acts at ``site`` (a node site or one of RESID_SITES; "resid" stands for all of those)."""
        return site in self.abstopk_sites or (site in RESID_SITES and "resid" in self.abstopk_sites)

    def abstopk(self, site: str) -> AbsTopK:
        """The AbsTopK module of ``site``: identity when the site has none."""
        return AbsTopK(self.abstopk_frac, self.has_abstopk(site), self.abstopk_rounding)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["abstopk_sites"] = list(self.abstopk_sites)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return strict_from_dict(cls, d)


def abstopk_k(frac: float, width: int, rounding: str = "round") -> int:
    """How many entries AbsTopK keeps of ``width`` (see ABSTOPK_ROUNDINGS)."""
    if rounding == "round":
        return max(1, round(frac * width))
    k = int(frac * width)
    return max(1, k) if rounding == "floor_min1" else k


def abs_topk(x: torch.Tensor, frac: float, rounding: str = "round") -> torch.Tensor:
    """Keep the k entries of largest |x| along the last dim (k from ``abstopk_k``), zero the rest."""
    width = x.shape[-1]
    k = abstopk_k(frac, width, rounding)
    if k >= width:
        return x
    idx = x.abs().topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


class AbsTopK(nn.Module):
    """AbsTopK at one site; identity when the site is not in config.abstopk_sites."""

    def __init__(self, frac: float, active: bool, rounding: str = "round") -> None:
        super().__init__()
        self.frac, self.active, self.rounding = frac, active, rounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return abs_topk(x, self.frac, self.rounding) if self.active else x

    def extra_repr(self) -> str:
        return f"frac={self.frac}, rounding={self.rounding}" if self.active else "off"


class RMSNorm(nn.Module):
    """x / rms(x) * weight. hook_scale exposes rms(x) [B, T, 1], which frozen-layernorm pruning replaces."""

    def __init__(self, d: int, eps: float | str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps
        self.hook_scale = HookPoint()  # [B, T, 1]
        self.hook_normalized = HookPoint()  # [B, T, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps if self.eps == "dtype" else self.eps
        scale = self.hook_scale(x.pow(2).mean(-1, keepdim=True).add(eps).sqrt())
        return self.hook_normalized(x / scale * self.weight)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_head
        D = cfg.d_model
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(D, D) for _ in range(4))
        self.topk_q, self.topk_k, self.topk_v = (cfg.abstopk(s) for s in ("q", "k", "v"))
        # Sink logit per head; a zero sink logit with no sink would be wrong, so disable by -inf.
        self.sink = nn.Parameter(torch.zeros(self.n_head)) if cfg.attention_sink else None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [B, T, H, E]
        self.hook_attn_scores = HookPoint()  # [B, H, T, 1 + T], column 0 is the sink
        self.hook_pattern = HookPoint()  # [B, H, T, 1 + T]
        self.hook_z = HookPoint()  # [B, T, H, E]

    def forward(self, x: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]; with ``at`` [B], queries only at those positions -> [B, 1, D]."""
        B, T, D = x.shape
        H, E = self.n_head, self.d_head
        rows = torch.arange(B, device=x.device)
        xq = x if at is None else x[rows, at][:, None]
        Tq = xq.shape[1]
        # AbsTopK acts over all heads together (the whole D-vector), then heads are split off.
        q = self.hook_q(self.topk_q(self.W_Q(xq)).view(B, Tq, H, E))
        k = self.hook_k(self.topk_k(self.W_K(x)).view(B, T, H, E))
        v = self.hook_v(self.topk_v(self.W_V(x)).view(B, T, H, E))
        qpos = torch.arange(T, device=x.device)[None] if at is None else at[:, None]  # [B or 1, Tq]
        attend = self._attend_fused if self._fusable() else self._attend_explicit
        z = self.hook_z(attend(q, k, v, qpos))  # [B, Tq, H, E]
        return self.W_O(z.reshape(B, Tq, D))

    def _fusable(self) -> bool:
        """Whether the fused kernel may run: in training mode only (its rounding differs from the reference in the
        last bits, and pruning can amplify that into a different circuit, so every analysis of a loaded model,
        which is in eval mode, keeps the reference path), and when nothing reads or replaces the scores or pattern."""
        return self.training and not any(
            h.fns or h._forward_hooks or h._forward_pre_hooks for h in (self.hook_attn_scores, self.hook_pattern)
        )

    def _attend_explicit(self, q, k, v, qpos) -> torch.Tensor:
        """The reference: scores and pattern [B, H, Tq, 1 + T] as tensors, through their hooks."""
        B, Tq, H, E = q.shape
        T = k.shape[1]
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(E)  # [B, H, Tq, T]
        future = torch.arange(T, device=q.device)[None, None, None, :] > qpos[:, None, :, None]
        scores = scores.masked_fill(future, float("-inf"))
        sink = (self.sink if self.sink is not None else scores.new_full((H,), float("-inf"))).to(scores.dtype)
        scores = torch.cat([sink.view(1, H, 1, 1).expand(B, H, Tq, 1), scores], dim=-1)  # [B, H, Tq, 1+T]
        pattern = self.hook_pattern(self.hook_attn_scores(scores).softmax(dim=-1))
        # The sink's value is zero, so only the token columns contribute.
        return torch.einsum("bhqk,bkhe->bqhe", pattern[..., 1:], v)

    def _attend_fused(self, q, k, v, qpos) -> torch.Tensor:
        """The same attention through scaled_dot_product_attention (a fused kernel where one applies).

        The sink becomes a real key slot 0 with a zero value. Its logit must be the sink parameter whatever the
        query, so every query and key gains one channel: 1 in the queries, 0 in the token keys and
        sink * sqrt(E) in the sink key, whose product under the 1/sqrt(E) scale is the sink logit (and carries
        its gradient). Values get a zero channel too (fused kernels want equal widths). Without ``at``, a zero
        query row is put first so that plain causal masking (query i sees keys 0..i) lets query t see the sink
        and tokens 0..t; with ``at``, an explicit mask says which keys each row's one query sees.
        """
        B, Tq, H, E = q.shape
        T = k.shape[1]
        if self.sink is not None:
            sink_key = F.pad((self.sink.to(k.dtype) * math.sqrt(E)).view(1, 1, H, 1), (E, 0)).expand(B, 1, H, E + 1)
            q = F.pad(q, (0, 1), value=1.0)
            k = torch.cat([sink_key, F.pad(k, (0, 1))], dim=1)  # [B, 1 + T, H, E + 1]
            v = F.pad(v, (0, 1, 0, 0, 1, 0))  # zero sink value and zero extra channel
        slots = k.shape[1] - T  # 1 with the sink, 0 without
        if qpos.shape[0] == 1 and Tq == T:  # every position queries: causal masking
            if slots:
                q = F.pad(q, (0, 0, 0, 0, 1, 0))  # the zero query row that shifts the causal mask by one
            mask, causal = None, True
        else:
            keys = torch.arange(T, device=q.device)[None, None, None, :] <= qpos[:, None, :, None]  # [B, 1, Tq, T]
            mask, causal = F.pad(keys, (slots, 0), value=True), False
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=causal,
            scale=1 / math.sqrt(E),
        ).transpose(1, 2)  # [B, Tq (+ 1), H, E (+ 1)]
        return z[:, z.shape[1] - Tq :, :, :E]


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.W_out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.topk_neuron = cfg.abstopk("mlp_neuron")
        self.activation = ACTIVATIONS[cfg.activation]
        self.hook_pre = HookPoint()  # [B, T, F] before the activation
        self.hook_post = HookPoint()  # [B, T, F] after the activation and AbsTopK: the mlp_neuron nodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_post(self.topk_neuron(self.activation(self.hook_pre(self.W_in(x)))))
        return self.W_out(h)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, last: bool = False) -> None:
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(cfg.d_model, cfg.norm_eps), RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.topk_attn_in, self.topk_attn_out = cfg.abstopk("attn_in"), cfg.abstopk("attn_out")
        self.topk_mlp_in, self.topk_mlp_out = cfg.abstopk("mlp_in"), cfg.abstopk("mlp_out")
        self.topk_resid_mid = cfg.abstopk("resid_mid")
        # The last block's output feeds the final norm: its AbsTopK is the "resid_final" site.
        self.topk_resid_post = cfg.abstopk("resid_final" if last else "resid_post")
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_in, self.hook_attn_out = HookPoint(), HookPoint()  # [B, T, D]
        self.hook_mlp_in, self.hook_mlp_out = HookPoint(), HookPoint()  # [B, T, D]

    def forward(self, x: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]; with ``at`` (the last block only) everything after k and v runs at those positions."""
        x = self.hook_resid_pre(x)
        attn_in = self.hook_attn_in(self.topk_attn_in(self.ln1(x)))
        attn_out = self.hook_attn_out(self.topk_attn_out(self.attn(attn_in, at)))
        if at is not None:
            x = x[torch.arange(x.shape[0], device=x.device), at][:, None]  # [B, 1, D]
        x = self.hook_resid_mid(self.topk_resid_mid(x + attn_out))
        mlp_out = self.hook_mlp_out(self.topk_mlp_out(self.mlp(self.hook_mlp_in(self.topk_mlp_in(self.ln2(x))))))
        return self.hook_resid_post(self.topk_resid_post(x + mlp_out))


class SparseGPT(HookedModule):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, V = cfg.d_model, cfg.vocab_size
        self.embed = nn.Embedding(V, D)
        self.pos_embed = nn.Embedding(cfg.n_ctx, D) if cfg.positional_embedding else None
        self.topk_resid_embed = cfg.abstopk("resid_embed")
        self.blocks = nn.ModuleList(Block(cfg, last=i == cfg.n_layer - 1) for i in range(cfg.n_layer))
        self.ln_final = RMSNorm(D, cfg.norm_eps)
        self.unembed = nn.Linear(D, V, bias=cfg.unembed_bias != "none")
        if cfg.unembed_bias == "buffer":
            # Same state-dict key ("unembed.bias") as a parameter, but outside the optimizer's reach.
            del self.unembed.bias
            self.unembed.register_buffer("bias", torch.zeros(V))
        self.bigram = nn.Embedding(V, V) if cfg.bigram_table else None
        self.hook_embed = HookPoint()  # [B, T, D]
        self.hook_logits = HookPoint()  # [B, T, V]
        # The corpus the model was trained on, when known (``inference.load`` records it): held-out text for
        # ablation values and corpus statistics comes from it.
        self.corpus: CorpusConfig | None = None
        self._init_weights()
        self.setup_hooks()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("bias") or name.endswith("sink"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                # Residual-writing matrices get the GPT-2 1/sqrt(2 n_layer) shrink.
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("W_O.weight", "W_out.weight")) else 0.02
                nn.init.normal_(p, std=std)
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.weight)

    def forward(self, tokens: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, T] int64 -> logits [B, T, V]; with ``at`` [B] (one position per row) -> logits [B, 1, V].

        ``at`` is exact and cheaper: the last block needs keys and values everywhere, but its queries, attention
        output and MLP only at the answer position (hooks there then see [B, 1, ...]), and so do the final norm
        and the unembedding. Tasks read only the answer position.
        """
        B, T = tokens.shape
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            if T > self.cfg.n_ctx:
                raise ValueError(f"sequence length {T} exceeds n_ctx={self.cfg.n_ctx} of the positional embedding")
            x = x + self.pos_embed(torch.arange(T, device=tokens.device))
        x = self.topk_resid_embed(x)
        for i, block in enumerate(self.blocks):
            x = block(x, at if i == len(self.blocks) - 1 else None)
        logits = self.unembed(self.ln_final(x))
        if self.bigram is not None:
            logits = logits + self.bigram(
                tokens if at is None else tokens[torch.arange(B, device=tokens.device), at][:, None]
            )
        return self.hook_logits(logits)

    def sparsifiable_weights(self) -> dict[str, tuple[nn.Parameter, str | None]]:
        """Weight matrices under the L0 projection, with the axis whose neurons keep a minimum of weights.

        "row": each output channel (row of an nn.Linear weight) keeps its minimum of inputs (q/k/v channels,
        MLP neurons); "col": each input channel keeps its minimum of outputs (v channels into W_O, MLP neurons
        into W_out); None: no per-neuron minimum (embedding, unembedding). Biases, norms, sinks and the bigram
        table are never sparsified.
        """
        out: dict[str, tuple[nn.Parameter, str | None]] = {
            "embed.weight": (self.embed.weight, None),
            "unembed.weight": (self.unembed.weight, None),
        }
        for i, b in enumerate(self.blocks):
            for m in ("W_Q", "W_K", "W_V"):
                out[f"blocks.{i}.attn.{m}.weight"] = (getattr(b.attn, m).weight, "row")
            out[f"blocks.{i}.attn.W_O.weight"] = (b.attn.W_O.weight, "col")
            out[f"blocks.{i}.mlp.W_in.weight"] = (b.mlp.W_in.weight, "row")
            out[f"blocks.{i}.mlp.W_out.weight"] = (b.mlp.W_out.weight, "col")
        if self.pos_embed is not None:
            out["pos_embed.weight"] = (self.pos_embed.weight, None)
        return out

    def node_hook_names(self, layer: int) -> dict[str, str]:
        """Hook name of each node site in one layer (q, k, v hooks are [B, T, H, E]; the rest [B, T, width])."""
        return {site: node_hook_name(site, layer) for site in NODE_SITES}

    def site_width(self, site: str) -> int:
        return self.cfg.d_mlp if site == "mlp_neuron" else self.cfg.d_model

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
