"""Sparse execution (model.sparse_exec) equals the dense model at fp32 tolerance; the rule and its fallbacks."""

import copy

import pytest
import torch
from conftest import cpu_only
from sparse_circuits.circuits.masking import weights_frozen
from sparse_circuits.data.batches import BatchStream
from sparse_circuits.model import sparse_exec
from sparse_circuits.model.gpt import NODE_SITES, ModelConfig, SparseGPT
from sparse_circuits.model.inference import activation_density, evaluate_lm, load, model_corpus
from sparse_circuits.model.sparse_exec import (
    SparseWeight,
    enable_sparse_execution,
    sparse_execution,
    sparse_linear,
    sparse_linears,
    use_sparse,
)
from sparse_circuits.pruning.pruner import PruneConfig, Pruner
from sparse_circuits.tasks import get_task
from sparse_circuits.training.sparsity import project_

TOL = dict(atol=1e-5, rtol=1e-4)


def assert_close(actual, expected):
    """Equal at fp32 tolerance relative to the largest entry (gradients can be small everywhere)."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * max(1e-3, float(expected.abs().max())))


def sparsify_(model, l0: float = 1 / 16):
    for w, axis in model.sparsifiable_weights().values():
        project_(w.data, l0, axis)
    return model


@pytest.fixture(scope="module")
def model(device):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=96, d_model=64, n_layer=2, n_ctx=16, abstopk_sites=NODE_SITES + ("resid",))
    m = sparsify_(SparseGPT(cfg).to(device))
    with torch.no_grad():  # nonzero biases and sinks, so that every term is exercised
        for name, p in m.named_parameters():
            if name.endswith(("bias", "sink")):
                p.normal_(std=0.1)
    return m


def tokens(n: int = 6, T: int = 12, V: int = 96, device="cpu"):
    return torch.randint(V, (n, T), generator=torch.Generator().manual_seed(1)).to(device)


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def forward_and_input_grad(model, mode: str, at=None):
    """Logits and the gradient of a fixed function of them with respect to the embedding output."""
    toks = tokens(device=device_of(model))
    x0 = model.embed(toks).detach().requires_grad_(True)
    with weights_frozen(model), sparse_execution(model, mode):
        logits = model.run_with_hooks(toks, at=at, fwd_hooks=[("hook_embed", lambda x, hook: x0)])
        (logits.sin() * torch.linspace(0, 1, logits.shape[-1], device=toks.device)).sum().backward()
    return logits.detach(), x0.grad


@pytest.mark.parametrize("at", [None, "last"])
def test_sparse_forward_and_input_gradient_equal_dense(model, at):
    at = torch.tensor([11, 7, 3, 11, 0, 5], device=device_of(model)) if at else None
    y_dense, g_dense = forward_and_input_grad(model, "dense", at)
    y_sparse, g_sparse = forward_and_input_grad(model, "sparse", at)
    assert_close(y_sparse, y_dense)
    assert_close(g_sparse, g_dense)
    assert g_dense.abs().max() > 0


def test_cache_and_hooks_equal_dense(model):
    toks = tokens(device=device_of(model))
    with torch.no_grad():
        _, dense = model.run_with_cache(toks)
        with sparse_execution(model, "sparse") as handle:
            _, sparse = model.run_with_cache(toks)
    assert len(handle.swapped) == 0  # restored on exit
    assert len(sparse) == len(dense)
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], **TOL, msg=name)


def test_modes_swap_and_restore_forwards(model):
    linears = sparse_linears(model)
    assert "unembed" in linears and "blocks.1.mlp.W_out" in linears and len(linears) == 2 * 6 + 1
    before = {n: m.__dict__.get("forward") for n, m in linears.items()}
    with sparse_execution(model, "dense") as handle:
        assert not handle.swapped and all(m.__dict__.get("forward") is None for m in linears.values())
    with sparse_execution(model, "auto") as handle:  # d64: far below the rule's minimum size
        assert not handle.swapped
    with sparse_execution(model, "sparse") as outer:
        assert set(outer.swapped) == set(linears)
        swapped = {n: m.forward for n, m in linears.items()}
        with sparse_execution(model, "sparse"):
            assert all(m.forward is not swapped[n] for n, m in linears.items())
        assert all(m.forward is swapped[n] for n, m in linears.items())  # the outer block's forwards are back
    assert {n: m.__dict__.get("forward") for n, m in linears.items()} == before
    with pytest.raises(ValueError, match="unknown sparse execution mode 'fast'"):
        enable_sparse_execution(model, "fast")


def test_frozen_mode_refuses_weights_that_require_grad(model):
    toks = tokens(device=device_of(model))
    with sparse_execution(model, "sparse"), pytest.raises(RuntimeError, match="needs a frozen weight"):
        model(toks)
    with sparse_execution(model, "sparse"), torch.no_grad():
        model(toks)  # no gradient asked for: fine


def test_rule_thresholds():
    big, small = (4096, 1024), (1024, 256)
    assert use_sparse(1 / 64, big, 768, "cpu")
    assert use_sparse(1 / 16, big, sparse_exec.SPARSE_MIN_ROWS, "cpu")
    assert not use_sparse(1 / 4, big, 768, "cpu")  # too dense
    assert not use_sparse(0.2, (1024, 256), 4096, "cpu")  # a shipped model's W_in
    assert not use_sparse(1 / 64, small, 768, "cpu")  # too small
    assert not use_sparse(1 / 64, big, sparse_exec.SPARSE_MIN_ROWS - 1, "cpu")  # too few rows
    assert not use_sparse(1 / 64, big, 768, "meta")  # not measured there
    assert use_sparse(1 / 64, (2048, 512), 512, "cpu") and not use_sparse(1 / 64, (2048, 512), 256, "cpu")


def test_auto_runs_sparse_above_the_thresholds(monkeypatch, device):
    cpu_only(device, "the automatic rule picks sparse on CPU only (SPARSE_DEVICES)")
    torch.manual_seed(0)
    m = sparsify_(SparseGPT(ModelConfig(vocab_size=40, d_model=128, n_layer=1, n_ctx=8)))  # 4 per neuron: 1/32
    toks = torch.randint(40, (40, 8))  # 320 rows: over SPARSE_MIN_ROWS for the full forward
    monkeypatch.setattr(sparse_exec, "SPARSE_MIN_DIM", 32)
    monkeypatch.setattr(sparse_exec, "SPARSE_MIN_WORK", 0)
    calls = []
    real = sparse_exec.FrozenSparseLinear.apply
    monkeypatch.setattr(sparse_exec.FrozenSparseLinear, "apply", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        dense = m(toks)
        with sparse_execution(m, "auto") as handle:
            assert set(handle.swapped) == set(sparse_linears(m))
            out = m(toks)
            assert len(calls) == 7  # every Linear of the layer and the unembedding
            m(toks[:2])  # 16 rows: under the rule's minimum, dense
            assert len(calls) == 7
    torch.testing.assert_close(out, dense, **TOL)


def test_unsupported_dtype_falls_back_to_dense_with_one_warning(model, device):
    cpu_only(device, "the CPU's CSR matmuls lack bfloat16")
    half = copy.deepcopy(model).to(torch.bfloat16)  # CPU CSR matmuls lack bfloat16
    with torch.no_grad():
        plain = half(tokens())
        with pytest.warns(UserWarning, match="no CSR matmul for torch.bfloat16 on cpu: 13 Linear layers") as record:
            with sparse_execution(half, "sparse") as handle:
                assert not handle.swapped
                out = half(tokens())
    assert len(record) == 1
    assert torch.equal(out, plain)


def test_support_check_decides_the_fallback(monkeypatch, model, device):
    monkeypatch.setattr(sparse_exec, "sparse_supported", lambda device, dtype: False)
    with (
        pytest.warns(UserWarning, match=f"float32 on {device.type}[:0-9]*: 13 Linear layers .* run dense"),
        sparse_execution(model, "sparse") as handle,
    ):
        assert not handle.swapped


def test_sparse_linear_gives_dense_weight_gradients(device):
    torch.manual_seed(0)
    w = torch.nn.Parameter((torch.randn(24, 16) * (torch.rand(24, 16) < 0.2)).to(device))
    b = torch.nn.Parameter(torch.randn(24).to(device))
    x = torch.randn(3, 5, 16).to(device).requires_grad_(True)
    grads = []
    for fn in (torch.nn.functional.linear, sparse_linear):
        y = fn(x, w, b)
        (y * torch.arange(24.0, device=device)).sum().backward()
        grads.append((y.detach(), x.grad.clone(), w.grad.clone(), b.grad.clone()))
        x.grad = w.grad = b.grad = None
    for dense, sparse in zip(*grads):
        torch.testing.assert_close(sparse, dense, **TOL)
    assert (grads[1][2][w.detach() == 0] != 0).any()  # the weight gradient is dense
    sw = SparseWeight.of(w)
    assert sw.density == pytest.approx(float((w != 0).float().mean()))


@pytest.fixture(scope="module")
def pruning_setup(tiny_model_dir, device):
    model, tok, _ = load(tiny_model_dir, device)
    model, task = sparsify_(model), get_task("pronoun")
    return model, tok, task, Pruner(model, tok, task, PruneConfig(ablation="mean", eval_n=8)).means


@pytest.mark.parametrize("objective", ["standard", "stochastic"])
@pytest.mark.parametrize("frozen_ln", [False, True])
def test_pruning_tau_gradients_equal_dense(pruning_setup, frozen_ln, objective):
    model, tok, task, means = pruning_setup
    out = {}
    for mode in ("dense", "sparse"):
        cfg = PruneConfig(
            ablation="mean", frozen_ln=frozen_ln, objective=objective, batch_size=8, eval_n=8, execution=mode
        )
        pr = Pruner(model, tok, task, cfg, means=means)
        seeds = [0, 1]
        data = pr.batch(seeds, 0)
        tau = pr.init_tau(seeds).requires_grad_(True)
        with weights_frozen(model), sparse_execution(model, mode):
            loss, _, _ = pr.objective_losses(tau, seeds, 0, data, pr.ablation_values(seeds, data, 0))
            loss.sum().backward()  # the penalty's gradient does not pass through the model
        out[mode] = (loss.detach(), tau.grad)
        # the pruner's own run too: losses of two training steps agree
        pr.cfg.steps = 2
        _, history = pr.train_masks(seeds, progress=False)
        out[mode] += (torch.tensor(history[-1]["task_loss"]),)
    for dense, sparse in zip(out["dense"], out["sparse"]):
        assert_close(sparse, dense)
    assert out["dense"][1].abs().max() > 0


def test_prune_config_checks_execution():
    with pytest.raises(ValueError, match="unknown execution 'csr'"):
        PruneConfig(ablation="zero", execution="csr")


def test_inference_accepts_an_execution_mode(pruning_setup):
    model, tok, _, _ = pruning_setup
    stream = BatchStream(model_corpus(model), tok, model.cfg.n_ctx, 4, "val")
    losses = {mode: evaluate_lm(model, stream, 1, device_of(model), execution=mode) for mode in ("dense", "sparse")}
    assert losses["sparse"] == pytest.approx(losses["dense"], rel=1e-5)
    dense = activation_density(model, tok, n_batches=1, batch_size=4, execution="dense")
    sparse = activation_density(model, tok, n_batches=1, batch_size=4, execution="sparse")
    assert all(sparse[site] == pytest.approx(dense[site], abs=1e-3) for site in dense)


def test_sparse_training_refuses_a_stale_snapshot(device):
    torch.manual_seed(0)
    model = SparseGPT(ModelConfig(vocab_size=50, n_layer=1, d_model=16, n_ctx=8)).to(device)
    handle = sparse_exec.enable_sparse_training(model, rows=16, mode="sparse")
    tokens = torch.randint(50, (2, 8), device=device)
    before = model(tokens)
    with torch.no_grad():
        model.blocks[0].mlp.W_in.weight.mul_(2.0)  # an update without refresh()
    with pytest.raises(RuntimeError, match=r"blocks\.0\.mlp\.W_in\.weight changed since its CSR snapshot"):
        model(tokens)
    handle.refresh()
    model(tokens)
    handle.restore()
    assert not handle.swapped
    assert model(tokens).shape == before.shape


@pytest.mark.parametrize("grad_mode", ["grad", "no_grad", "inference"])
def test_row_blocks_on_worker_threads_change_no_bit(grad_mode):
    """csr_matmul spreads its row blocks over torch's thread count: bitwise the one-thread result, in every grad
    mode (workers take the caller's mode, so nothing is recorded or refused there), with and without a bias."""
    from sparse_circuits.model.sparse_exec import SPARSE_ROW_BLOCK, FrozenSparseLinear, csr_matmul

    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 80, generator=g) * (torch.rand(96, 80, generator=g) < 0.1)
    sw, bias = SparseWeight.of(w), torch.randn(96, generator=g)
    x = torch.randn(3 * SPARSE_ROW_BLOCK + 7, 80, generator=g)  # 4 blocks, the last one short
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = csr_matmul(sw.csr, x, bias), csr_matmul(sw.csr, x, None)
        torch.set_num_threads(2)
        mode = {"grad": torch.enable_grad(), "no_grad": torch.no_grad(), "inference": torch.inference_mode()}[grad_mode]
        with mode:
            xg = x.clone().requires_grad_(grad_mode == "grad")
            two = csr_matmul(sw.csr, xg, bias), csr_matmul(sw.csr, xg, None)
            assert not two[0].requires_grad
            if grad_mode == "grad":  # the autograd function around it: input gradient through the threads too
                y = FrozenSparseLinear.apply(xg, sw.csr, sw.csr_t, bias)
                y.backward(torch.ones_like(y))
                torch.set_num_threads(1)
                assert torch.equal(xg.grad, csr_matmul(sw.csr_t, torch.ones_like(y), None))
    finally:
        torch.set_num_threads(n)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    torch.testing.assert_close(one[0], x @ w.t() + bias, rtol=1e-5, atol=1e-5)
