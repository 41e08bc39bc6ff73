import math

import pytest
import torch
from sparse_circuits.training.sparsity import l0_at, lr_at, n_keep, normalize_grad_rms_, project_, topk_mask


@pytest.mark.parametrize("axis", [None, "row", "col"])
@pytest.mark.parametrize("l0", [0.5, 0.1, 0.02])
def test_projection_exact_k_and_per_neuron_minimum(axis, l0):
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    n_neurons = {None: 0, "row": 48, "col": 64}[axis]
    k = n_keep(w.numel(), l0, n_neurons)
    assert k == max(math.ceil(l0 * w.numel()), 4 * n_neurons)
    project_(w, l0, axis)
    assert int((w != 0).sum()) == k
    if axis == "row":
        assert ((w != 0).sum(1) >= 4).all()
    if axis == "col":
        assert ((w != 0).sum(0) >= 4).all()


def test_projection_keeps_largest_and_per_neuron_top4():
    torch.manual_seed(1)
    w = torch.randn(20, 30)
    w[3] *= 1e-3  # a weak neuron whose weights would all lose the global contest
    orig = w.clone()
    mask = topk_mask(w, 0.2, "row")
    assert mask[3].sum() >= 4
    assert set(orig[3].abs().topk(4).indices.tolist()) <= set(mask[3].nonzero().flatten().tolist())
    # apart from the guaranteed entries, every kept entry beats every dropped one
    guaranteed = torch.zeros_like(mask)
    guaranteed.scatter_(1, orig.abs().topk(4, dim=1).indices, True)
    free_kept = orig.abs()[mask & ~guaranteed]
    dropped = orig.abs()[~mask]
    assert free_kept.min() >= dropped.max()


def test_projection_writes_positive_zeros_and_dense_is_identity():
    w = -torch.rand(10, 10) - 0.1
    project_(w, 0.3, None)
    zeros = w[w == 0]
    assert torch.all(torch.signbit(zeros) == 0)
    v = torch.randn(5, 5)
    assert torch.equal(project_(v.clone(), 1.0, "row"), v)


def test_l0_schedules():
    assert l0_at(0.0, 0.1) == 1.0 and l0_at(0.01, 0.1) == 1.0
    assert l0_at(0.5, 0.1) == pytest.approx(0.1) and l0_at(0.9, 0.1) == pytest.approx(0.1)
    mid = (0.01 + 0.5) / 2
    assert l0_at(mid, 0.1, "linear") == pytest.approx(0.55)
    assert l0_at(mid, 0.1, "exponential") == pytest.approx(0.1**0.5)
    assert l0_at(0.3, 1.0) == 1.0
    with pytest.raises(ValueError, match="unknown l0_schedule 'exponentail'"):
        l0_at(0.3, 0.1, "exponentail")


def test_lr_schedule_warmup_decay_sharkfin():
    total = 1000
    assert lr_at(0, total, 1.0, 1.0) == pytest.approx(0.1)  # warmup of 10 steps
    assert lr_at(9, total, 1.0, 1.0) == pytest.approx(1.0)
    assert lr_at(505, total, 1.0, 1.0) == pytest.approx(0.5)
    assert lr_at(999, total, 1.0, 1.0) == pytest.approx(1 / 990)
    assert lr_at(505, total, 1.0, 0.25) == pytest.approx(1.0)  # 0.5 / sqrt(0.25)


def test_grad_rms_normalization():
    p1, p2 = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(5))
    p1.grad, p2.grad = torch.full((3,), 4.0), torch.full((5,), 2.0)
    old = normalize_grad_rms_([p1, p2])
    assert old == pytest.approx(math.sqrt((3 * 16 + 5 * 4) / 8))
    rms = torch.cat([p1.grad, p2.grad]).pow(2).mean().sqrt()
    assert float(rms) == pytest.approx(1.0)
