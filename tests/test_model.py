import pytest
import torch
from sparse_circuits.model.gpt import NODE_SITES, ModelConfig, SparseGPT, abs_topk


def small(**kw) -> SparseGPT:
    torch.manual_seed(0)
    return SparseGPT(ModelConfig(vocab_size=50, d_model=32, n_ctx=16, **kw)).eval()


def test_shapes_and_hook_names():
    m = small()
    tokens = torch.randint(0, 50, (3, 7))
    logits, cache = m.run_with_cache(tokens)
    assert logits.shape == (3, 7, 50)
    H, E = m.cfg.n_head, m.cfg.d_head
    assert cache["blocks.1.attn.hook_q"].shape == (3, 7, H, E)
    assert cache["blocks.0.attn.hook_pattern"].shape == (3, H, 7, 8)  # sink column first
    assert cache["blocks.0.mlp.hook_post"].shape == (3, 7, 4 * 32)
    assert cache["ln_final.hook_scale"].shape == (3, 7, 1)
    for layer in range(2):
        for site, name in m.node_hook_names(layer).items():
            assert name in m.hook_names, site
    n_nodes = sum(m.site_width(s) for s in NODE_SITES if s not in ("q", "k", "v")) + 3 * 32
    assert n_nodes == 11 * 32


def test_abs_topk_keeps_largest_magnitudes():
    x = torch.tensor([[0.1, -3.0, 2.0, -0.5]])
    assert torch.equal(abs_topk(x, 0.5), torch.tensor([[0.0, -3.0, 2.0, 0.0]]))
    assert torch.equal(abs_topk(x, 1.0), x)
    y = abs_topk(torch.randn(5, 6, 40), 0.25)
    assert ((y != 0).sum(-1) == 10).all()


def test_abstopk_applied_at_sites():
    m = small(abstopk_frac=0.25)
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 5)))
    nz = (cache["blocks.0.mlp.hook_post"] != 0).sum(-1)
    assert (nz <= 32).all()  # 0.25 * 128
    q = cache["blocks.0.attn.hook_q"].flatten(-2)  # over all heads together
    assert ((q != 0).sum(-1) <= 8).all()
    dense = small(abstopk_sites=())
    _, c2 = dense.run_with_cache(torch.randint(0, 50, (2, 5)))
    assert (c2["blocks.0.mlp.hook_post"] != 0).float().mean() > 0.9


def test_attention_sink_pattern_sums_to_one_and_can_attend_nowhere():
    m = small()
    with torch.no_grad():
        m.blocks[0].attn.sink.fill_(50.0)  # a huge sink logit: all mass on the sink
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 6)), names_filter="blocks.0.attn.hook_*")
    pat = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pat.sum(-1), torch.ones(pat.shape[:-1]))
    assert (pat[..., 0] > 0.99).all()
    assert cache["blocks.0.attn.hook_z"].abs().max() < 1e-6  # the sink's value is zero
    # causal: no weight on future tokens (column j+1 is token j)
    assert pat[:, :, 0, 2:].abs().max() == 0


def test_hooks_reproduce_plain_forward_and_can_patch():
    m = small()
    tokens = torch.randint(0, 50, (2, 6))
    plain = m(tokens)
    identity = m.run_with_hooks(tokens, fwd_hooks=[(lambda n: True, lambda x, h: x.clone())])
    # A hook on the pattern switches attention from the fused kernel to explicit scores: equal to fp32 rounding.
    torch.testing.assert_close(plain, identity, rtol=1e-5, atol=1e-6)
    logits, _ = m.run_with_cache(tokens)
    torch.testing.assert_close(plain, logits, rtol=1e-5, atol=1e-6)
    zeroed = m.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_mlp_out", lambda x, h: torch.zeros_like(x))])
    assert not torch.allclose(plain, zeroed)
    assert all(not h.fns for h in m.hook_dict.values())  # hooks removed after the call


def test_hook_errors_are_clear():
    m = small()
    with pytest.raises(KeyError, match="no hook point"):
        m.run_with_hooks(torch.zeros(1, 2, dtype=torch.long), fwd_hooks=[("blocks.9.nothing", lambda x, h: x)])
    with pytest.raises(ValueError, match="returned shape"):
        m.run_with_hooks(torch.zeros(1, 2, dtype=torch.long), fwd_hooks=[("hook_embed", lambda x, h: x[:, :1])])


def test_causality_and_options():
    m = small(positional_embedding=True, bigram_table=True)
    t = torch.randint(0, 50, (1, 8))
    a = m(t)
    t2 = t.clone()
    t2[0, 5:] = 3
    b = m(t2)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    with pytest.raises(ValueError, match="n_ctx"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(d_model=30), "multiple of d_head"),
        (dict(abstopk_sites=("mlp_neuron", "bogus")), "unknown sites"),
        (dict(abstopk_frac=0.0), "abstopk_frac"),
        (dict(n_layer=0), "n_layer"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(vocab_size=10, **kw)


def test_config_round_trip():
    cfg = ModelConfig(vocab_size=10, abstopk_sites=("q", "resid"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "d_modle": 3})


def test_residual_abstopk():
    m = small(abstopk_sites=("resid",), abstopk_frac=0.25)
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 5)), names_filter="*resid*")
    for name, x in cache.items():
        assert ((x != 0).sum(-1) <= 8).all(), name


def test_logits_at_answer_positions_equal_full_logits():
    m = small(bigram_table=True)
    tokens = torch.randint(0, 50, (4, 9))
    at = torch.tensor([0, 3, 8, 5])
    full = m(tokens)
    torch.testing.assert_close(m(tokens, at=at)[:, 0], full[torch.arange(4), at])


def test_answer_position_forward_matches_the_full_forward_at_every_hook():
    m = small(abstopk_sites=("q", "k", "v", "attn_out", "mlp_neuron", "mlp_out", "resid"))
    tokens = torch.randint(0, 50, (4, 9))
    at = torch.tensor([0, 3, 8, 5])
    rows = torch.arange(4)
    _, full = m.run_with_cache(tokens)
    _, part = m.run_with_cache(tokens, at=at)
    last = f"blocks.{m.cfg.n_layer - 1}."
    for name, x in full.items():
        y = part[name]
        if y.shape == x.shape:
            torch.testing.assert_close(y, x, msg=name)  # earlier layers, keys and values: every position
        elif "hook_pattern" in name or "hook_attn_scores" in name:
            torch.testing.assert_close(y[:, :, 0], x[rows, :, at], msg=name)  # [B, H, 1, 1+T]
        else:
            assert name.startswith(last) or name.startswith(("ln_final", "hook_logits")), name
            torch.testing.assert_close(y[:, 0], x[rows, at], msg=name)
