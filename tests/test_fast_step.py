"""The fast training step equals the reference computations: fused attention, the L0 projection, fused AdamW."""

import math

import pytest
import torch
from conftest import cpu_only, tiny_run
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.training.sparsity import n_keep, project_, topk_mask
from sparse_circuits.training.trainer import TrainConfig, Trainer, make_optimizer


def _model(sink: bool, device="cpu") -> SparseGPT:
    torch.manual_seed(0)
    m = SparseGPT(ModelConfig(vocab_size=50, d_model=64, n_layer=2, n_ctx=16, attention_sink=sink)).to(device)
    with torch.no_grad():
        for b in m.blocks:
            if b.attn.sink is not None:
                b.attn.sink.normal_()  # a nonzero sink, so a wrong sink logit shows
    return m


def _output_and_grads(m, tokens, at):
    out = m(tokens, at)
    loss = out.float().pow(2).mean()
    return out, torch.autograd.grad(loss, list(m.parameters()))


@pytest.mark.parametrize("sink", [True, False])
@pytest.mark.parametrize("with_at", [False, True])
def test_fused_attention_equals_explicit(sink, with_at, device):
    m = _model(sink, device)
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1)).to(device)
    at = torch.tensor([0, 5, 11], device=device) if with_at else None
    assert all(b.attn._fusable() for b in m.blocks)
    out, grads = _output_and_grads(m, tokens, at)
    # Any hook on the pattern (here one that changes nothing) needs the explicit scores.
    with m.hooks([("*.hook_pattern", lambda x, h: None)]):
        assert not any(b.attn._fusable() for b in m.blocks)
        ref, ref_grads = _output_and_grads(m, tokens, at)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for (name, _), g, r in zip(m.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5, msg=name)


def test_pattern_cache_and_patching_still_see_the_pattern(device):
    m = _model(True, device)
    tokens = torch.randint(0, 50, (2, 7)).to(device)
    _, cache = m.run_with_cache(tokens, names_filter="blocks.0.attn.hook_attn_scores")
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (2, m.cfg.n_head, 7, 8)
    # Attending only to the sink zeroes every head's output: the patched pattern is the one used.
    only_sink = torch.zeros(2, m.cfg.n_head, 7, 8, device=device)
    only_sink[..., 0] = 1
    _, z = m.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z")
    with m.hooks([("blocks.0.attn.hook_pattern", lambda x, h: only_sink)]):
        _, patched = m.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z")
    assert z["blocks.0.attn.hook_z"].abs().max() > 0 and patched["blocks.0.attn.hook_z"].abs().max() == 0


@torch.no_grad()
def _reference_mask(w, l0, neuron_axis, min_per_neuron):
    """The projection's definition, computed the plain way: per-neuron top entries first, then one full top-k."""
    score = w.abs().float()
    n_neurons = 0
    if neuron_axis is not None:
        dim = {"row": 1, "col": 0}[neuron_axis]
        n_neurons = w.shape[1 - dim]
        idx = score.topk(min(min_per_neuron, w.shape[dim]), dim=dim).indices
        score = score.scatter(dim, idx, float("inf"))
    k = n_keep(w.numel(), l0, n_neurons, min_per_neuron)
    mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    mask[score.flatten().topk(k, sorted=False).indices] = True
    return mask.view_as(w)


@pytest.mark.parametrize("shape", [(48, 64), (256, 512), (1024, 64)])
@pytest.mark.parametrize("axis", [None, "row", "col"])
@pytest.mark.parametrize("l0", [0.5, 1 / 16, 1 / 64, 0.003])
@pytest.mark.parametrize("min_per_neuron", [1, 4])
def test_projection_mask_identical_to_reference(shape, axis, l0, min_per_neuron, device):
    g = torch.Generator().manual_seed(shape[0] + int(1 / l0))
    w = (torch.randn(shape, generator=g) * torch.rand(shape[0], 1, generator=g)).to(device)  # neurons of unequal scale
    mask = topk_mask(w, l0, axis, min_per_neuron)
    assert torch.equal(mask, _reference_mask(w, l0, axis, min_per_neuron))
    projected = project_(w.clone(), l0, axis, min_per_neuron)
    assert torch.equal(projected, torch.where(mask, w, torch.zeros((), device=device)))
    assert not torch.signbit(projected[~mask]).any()  # +0.0, so checkpoints round-trip bitwise


@pytest.mark.parametrize("big_on_sample", [True, False])
def test_projection_exact_when_the_sample_misleads(big_on_sample, device):
    """Entries on (or off) the sample's stride dominate: the candidate cut is then useless and must not matter."""
    n = 256 * 512
    w = torch.randperm(n, generator=torch.Generator().manual_seed(3)).float().view(256, 512) + 1  # no ties
    on_sample = torch.zeros(n, dtype=torch.bool)
    on_sample[:: n // 8192] = True
    w.view(-1)[on_sample if big_on_sample else ~on_sample] += 1e6  # still exact integers in fp32
    w = w.to(device)
    for l0 in (1 / 16, 1 / 200):
        assert torch.equal(topk_mask(w, l0, None), _reference_mask(w, l0, None, 4))


def test_fused_adamw_equals_the_per_parameter_loop(device):
    torch.manual_seed(0)
    params = [torch.randn(s).to(device) for s in [(64, 32), (32,), (128, 64)]]
    cfg = TrainConfig()
    runs = []
    for fast in (True, False):
        ps = [p.clone().requires_grad_() for p in params]
        if fast:
            opt = make_optimizer(ps, cfg, device)
            assert opt.defaults["fused"]
        else:
            kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
            opt = torch.optim.AdamW(ps, foreach=False, **kw)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g).to(device)
            opt.step()
        runs.append(ps)
    for fast, loop in zip(*runs):
        torch.testing.assert_close(fast, loop, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_option(tmp_path, device):
    cpu_only(device, "it checks the CPU default of TrainConfig.bf16")
    with pytest.raises(ValueError, match="TrainConfig.bf16"):
        TrainConfig(bf16="yes")
    assert not Trainer(tiny_run(), tmp_path / "default", "cpu").bf16  # off on CPU unless asked for
    trainer = Trainer(tiny_run(steps=2, bf16=True), tmp_path / "bf16", "cpu")
    assert trainer.bf16
    result = trainer.run(progress=False)
    assert result["finished"] and math.isfinite(result["val_loss"])
