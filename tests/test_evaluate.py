"""Ablation values from the model's own corpus, the one mask evaluator, and hook names."""

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from sparse_circuits.circuits import ablation
from sparse_circuits.circuits.ablation import (
    Ablation,
    HeldOutRows,
    Resampler,
    node_means,
    resolve_ablation,
)
from sparse_circuits.circuits.evaluate import MaskEvaluator, toggle_masks, toggled_losses
from sparse_circuits.circuits.layout import NodeLayout
from sparse_circuits.data.batches import BatchStream
from sparse_circuits.data.sources import CorpusConfig
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.model.inference import load, model_corpus
from sparse_circuits.model.names import BLOCK_HOOKS, MODEL_HOOKS, hook_name, node_hook_name
from sparse_circuits.pruning.pruner import PruneConfig, Pruner, prune
from sparse_circuits.tasks import TaskData, get_task

FIXTURE = Path(__file__).parent / "fixtures" / "simplestories"
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    """The tiny model, its tokenizer and the pronoun task."""
    return (*load(tiny_model_dir)[:2], get_task("pronoun"))


@pytest.fixture
def real_corpus(monkeypatch):
    """The local SimpleStories fixture as a real corpus (3 held-out stories, read again and again)."""
    pytest.importorskip("datasets")  # an optional dependency (the real-data extra)
    monkeypatch.setattr(ablation, "POOL_ROWS", 12)  # a small pool: each pass over the fixture reloads it
    return CorpusConfig(source="simplestories", dataset=str(FIXTURE))


# ------------------------------------------------------------------------------------ hook names


def test_hook_names_are_the_models_hooks():
    model = SparseGPT(ModelConfig(vocab_size=10, n_layer=2, d_model=32, n_ctx=8))
    made = [hook_name(k) for k in MODEL_HOOKS] + [hook_name(k, layer) for layer in range(2) for k in BLOCK_HOOKS]
    assert sorted(made) == sorted(model.hook_names)
    assert hook_name("attn.pattern", 1) == "blocks.1.attn.hook_pattern"
    assert hook_name("ln2.scale", 1) == "blocks.1.ln2.hook_scale" and hook_name("embed") == "hook_embed"
    assert hook_name("ln_final.scale") == "ln_final.hook_scale"
    assert hook_name("attn.pattern", "*") == "blocks.*.attn.hook_pattern"
    assert node_hook_name("mlp_neuron", 0) == "blocks.0.mlp.hook_post" == model.node_hook_names(0)["mlp_neuron"]
    with pytest.raises(ValueError, match="needs a layer"):
        hook_name("resid_post")
    with pytest.raises(ValueError, match="not a block hook"):
        hook_name("embed", 0)


# ------------------------------------------------------------------------ the model's own corpus


def test_loaded_model_knows_its_corpus_and_ablation_values_use_it(setup, real_corpus):
    model, tok, task = setup
    assert model.corpus == CorpusConfig()  # the tiny model was trained on the default synthetic corpus
    assert model_corpus(model) is model.corpus and model_corpus(model, real_corpus) is real_corpus
    layout = NodeLayout(model)
    synthetic = node_means(model, layout, tok, n_batches=1, batch_size=4)
    real = node_means(model, layout, tok, real_corpus, n_batches=1, batch_size=4)
    assert any(not torch.equal(synthetic[k], real[k]) for k in real)
    own = model.corpus
    try:
        model.corpus = real_corpus  # as if the model had been trained on it: every path now reads it
        for k, v in node_means(model, layout, tok, n_batches=1, batch_size=4).items():
            assert torch.equal(v, real[k])
        pr = Pruner(model, tok, task, PruneConfig(ablation="mean", eval_n=4))
        ref = node_means(model, layout, tok, real_corpus)
        assert all(torch.equal(pr.means[k], ref[k]) for k in ref)
        data = task.data("test", tok, 4)
        assert all(torch.equal(resolve_ablation(model, tok, "mean", data)[k], ref[k]) for k in ref)
        rows = Resampler(model, layout, tok).rows([0], 4, data.tokens.shape[1], step=3)
        assert torch.equal(rows, Resampler(model, layout, tok, real_corpus).rows([0], 4, data.tokens.shape[1], 3))
    finally:
        model.corpus = own


def test_real_corpus_draws_are_bounded_and_reproducible(setup, real_corpus):
    model, tok, task = setup
    layout = NodeLayout(model)
    t0 = time.perf_counter()
    means = node_means(model, layout, tok, real_corpus, n_batches=2, batch_size=4)  # keys near 10**9
    res = Resampler(model, layout, tok, real_corpus)
    data = task.data("test", tok, 4)
    a = res.values([0, 1], 2, data.tokens.shape[1], step=10**6)
    assert time.perf_counter() - t0 < 30
    assert all(torch.isfinite(v).all() for v in means.values())
    b = Resampler(model, layout, tok, real_corpus).values([0, 1], 2, data.tokens.shape[1], step=10**6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    held = HeldOutRows(real_corpus, tok, model.cfg.n_ctx, pool_rows=8)
    assert held._pool is None and held.rows(0, 8).shape == (8, model.cfg.n_ctx + 1)
    assert held._pool.shape == (8, model.cfg.n_ctx + 1)  # read once, on the first draw
    assert torch.equal(held.rows(5, 3), held.rows(5, 3)) and not torch.equal(held.rows(5, 30), held.rows(6, 30))


def test_synthetic_draws_are_the_val_batches_of_the_key(setup):
    model, tok, _ = setup
    held = HeldOutRows(CorpusConfig(), tok, model.cfg.n_ctx)
    assert torch.equal(held.rows(123, 3), BatchStream(CorpusConfig(), tok, model.cfg.n_ctx, 3, "val").batch(123))
    assert held._pool is None  # nothing read ahead


# --------------------------------------------------------------------------- the caller's model


def test_pruning_leaves_the_models_requires_grad_as_it_was(setup):
    model, tok, task = setup
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    model.embed.weight.requires_grad_(False)  # one frozen, the rest trainable
    try:
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        for objective in ("standard", "adversarial"):
            prune(
                model,
                tok,
                task,
                PruneConfig(ablation="zero", steps=2, batch_size=4, eval_n=4, objective=objective),
                seeds=[0],
                progress=False,
            )
            assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        assert all(p.grad is None for p in model.parameters())  # only the mask logits got gradients
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(before[n])


# -------------------------------------------------------------------------------- the evaluator


def test_evaluator_options_agree(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="mean", frozen_ln=True, eval_n=8))
    data = pr.eval_data
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(5, pr.n_nodes, generator=g) < 0.5).float()
    ev = pr.evaluator
    with torch.no_grad():
        ref = ev.run(masks, data)  # [S, n]
        assert ref.shape == (5, len(data))
        torch.testing.assert_close(ev.run(masks, data, chunk=2), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            dataclasses.replace(ev, scales_once=True).run(masks, data), ref, atol=1e-5, rtol=1e-5
        )
        full = dataclasses.replace(ev, at_answer=False)
        torch.testing.assert_close(full.run(masks, data), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ev.run(masks, data, mean=True), ref.mean(1))
        logits = ev.run(masks[:1], data, "logits")
        assert logits.shape == (1, len(data), model.cfg.vocab_size)
        p = ev.run(masks, data, "p_correct")
        assert ((p >= 0) & (p <= 1)).all()
        # each mask on its own block of prompts
        blocks = TaskData.cat([data.index(range(4)), data.index(range(4, 8))])
        own = ev.run(masks[:2], blocks, shared=False)
        torch.testing.assert_close(own[0], ev.run(masks[:1], data.index(range(4)))[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one pass"):
        ev.run(masks[:2], blocks, shared=False, chunk=1)
    with pytest.raises(ValueError, match="unknown measure"):
        ev.run(masks, data, "accuracy")


def test_zero_evaluator_is_the_model_with_every_node_kept(setup):
    model, tok, task = setup
    data = task.data("test", tok, 8)
    ev = MaskEvaluator(model, NodeLayout(model), task.loss, Ablation(model, NodeLayout(model), tok, "zero"))
    with torch.no_grad():
        kept = ev.run(torch.ones(1, NodeLayout(model).n_nodes), data, "logits")[0]
        torch.testing.assert_close(kept, model(data.tokens, at=data.last)[:, 0], atol=1e-5, rtol=1e-5)


def test_toggled_losses_both_conventions():
    scores = torch.arange(6, dtype=torch.float32)
    evaluate = lambda m: (m * scores).sum(1)  # noqa: E731  (a loss linear in the mask)
    base = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    masks = toggle_masks(base, torch.tensor([0, 1]))
    assert masks.tolist() == [[0.0, 0, 1, 0, 1, 1], [1.0, 1, 1, 0, 1, 1]]
    for apart in (False, True):
        r = toggled_losses(evaluate, base, [0, 1, 4], base_apart=apart, chunk=2)
        assert r["base_loss"] == 11.0 and r["delta"].tolist() == [0.0, 1.0, -4.0]
    assert toggled_losses(evaluate, base, [], base_apart=True)["delta"].numel() == 0
