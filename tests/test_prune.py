import pytest
import torch
from sparse_circuits.circuits.ablation import Resampler, node_means
from sparse_circuits.circuits.circuit import Circuit
from sparse_circuits.circuits.evaluate import PASS_ROWS_D2, masks_per_pass
from sparse_circuits.circuits.graph import count_edges
from sparse_circuits.circuits.layout import NodeLayout
from sparse_circuits.circuits.masking import masked, record_norm_scales, topk_masks
from sparse_circuits.core.seeds import derived_seed
from sparse_circuits.data.batches import BatchStream
from sparse_circuits.model.inference import load
from sparse_circuits.pruning.pruner import PruneConfig, Pruner, prune
from sparse_circuits.tasks import get_task, per_example_loss, run_answer_logits


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok, config = load(tiny_model_dir)
    return model, tok, get_task("pronoun")


@pytest.mark.parametrize("ablation", ["zero", "mean", "resample"])
def test_all_nodes_kept_reproduces_the_model(setup, ablation):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation=ablation, eval_n=32))
    data = pr.eval_data
    base = model(data.tokens, at=data.last)
    abl = pr.ablation_values([0], data, 0)
    with masked(model, pr.layout, torch.ones(1, pr.n_nodes), abl):
        out = model(data.tokens, at=data.last)
    assert (out - base).abs().max() <= 1e-5
    # and the full forward (every position) with full-shape values
    if ablation == "resample":
        abl = pr.resampler.values([0], len(data), data.tokens.shape[1], 0)
    with masked(model, pr.layout, torch.ones(1, pr.n_nodes), abl):
        out = model(data.tokens)
    assert (out - model(data.tokens)).abs().max() <= 1e-5


def test_all_nodes_ablated_gives_the_ablation_baseline(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="mean", eval_n=16))
    tokens = pr.eval_data.tokens
    with masked(model, pr.layout, torch.zeros(1, pr.n_nodes), pr.means):
        out = model(tokens)

    # the same by hand: every node site set to its mean
    def set_to(mean):
        return lambda x, hook: mean.view(x.shape[2:] if x.dim() == 4 else x.shape[-1:]).expand_as(x)

    ref = model.run_with_hooks(tokens, fwd_hooks=[(s.hook, set_to(pr.means[s.hook])) for s in pr.layout.slices])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with masked(model, pr.layout, torch.zeros(1, pr.n_nodes)):
        zero = model(tokens)
    # zero-ablating every node leaves only the direct path: embedding -> residual stream -> final norm -> unembedding
    with torch.no_grad():
        direct = model.unembed(model.ln_final(model.embed(tokens)))
    torch.testing.assert_close(zero, direct, atol=1e-5, rtol=1e-5)


def test_stored_means_equal_means_recomputed_through_the_model(setup):
    model, tok, _ = setup
    layout = NodeLayout(model)
    means = node_means(model, layout, tok, n_batches=2, batch_size=4)
    stream = BatchStream(
        __import__("sparse_circuits.data.sources", fromlist=["CorpusConfig"]).CorpusConfig(),
        tok,
        model.cfg.n_ctx,
        4,
        "val",
    )
    rows = torch.cat([stream.batch(derived_seed("means", i) % 10**9)[:, :-1] for i in range(2)])
    _, cache = model.run_with_cache(rows)  # AbsTopK included: the actual model
    for s in layout.slices:
        ref = cache[s.hook].reshape(rows.shape[0] * rows.shape[1], -1).mean(0)
        torch.testing.assert_close(means[s.hook], ref, atol=1e-5, rtol=1e-4)


def test_pruner_reuses_given_means_and_ignores_them_for_other_ablations(setup):
    model, tok, task = setup
    first = Pruner(model, tok, task, PruneConfig(ablation="mean", eval_n=8))
    given = {k: v + 1.0 for k, v in first.means.items()}  # distinguishable from recomputed means
    again = Pruner(model, tok, get_task("ioi"), PruneConfig(ablation="mean", eval_n=8), means=given)
    assert again.means is given
    assert Pruner(model, tok, task, PruneConfig(ablation="zero", eval_n=8), means=given).means is None


def test_batched_seeds_equal_seeds_run_one_at_a_time(setup):
    model, tok, task = setup
    cfg = PruneConfig(ablation="zero", steps=4, batch_size=8, eval_n=16, search_points=4)
    together = prune(model, tok, task, cfg, seeds=[3, 5], progress=False)
    alone = [prune(model, tok, task, cfg, seeds=[s], progress=False)[0] for s in (3, 5)]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a.tau, b.tau, atol=1e-5, rtol=0)
        assert a.n_nodes == b.n_nodes and a.meta["seed"] == b.meta["seed"]


def test_k_coef_vector_traces_a_pareto_curve(setup):
    model, tok, task = setup
    cfg = PruneConfig(ablation="zero", steps=30, batch_size=8, eval_n=16, lr=0.05)
    circuits = prune(model, tok, task, cfg, seeds=[0, 0], k_coefs=[0.0, 1.0], progress=False)
    # a huge penalty per node drives the learned mask far below the unpenalized one
    assert circuits[1].meta["final_kept_during_training"] < circuits[0].meta["final_kept_during_training"]
    assert [c.meta["k_coef"] for c in circuits] == [0.0, 1.0]


def test_discretization_is_on_fixed_batches_and_minimal(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_n=16, target_loss=50.0))
    tau = pr.init_tau([0])
    ks = torch.tensor([10, 100, 10])
    losses = pr.loss_at_counts(tau.expand(3, -1), ks)
    assert losses[0] == losses[2]  # the same k gives the same loss: fixed evaluation prompts
    res = pr.discretize(tau)
    k = res["n_nodes"][0]
    assert res["reached_target"][0] and res["loss"][0] <= 50.0
    if k > 1:
        assert float(pr.loss_at_counts(tau, torch.tensor([k - 1]))[0]) > 50.0


def test_topk_masks_counts():
    tau = torch.randn(4, 50)
    k = torch.tensor([0, 1, 17, 50])
    m = topk_masks(tau, k)
    assert m.sum(1).tolist() == [0, 1, 17, 50]
    assert m[2][tau[2].argsort(descending=True)[:17]].all()


def test_frozen_layernorm_uses_the_unpruned_scales(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", frozen_ln=True, eval_n=8))
    tokens = pr.eval_data.tokens
    unpruned = record_norm_scales(model, tokens)
    mask = (torch.rand(1, pr.n_nodes) > 0.5).float()
    seen = {}
    with masked(model, pr.layout, mask, None, unpruned):
        model.run_with_hooks(tokens, fwd_hooks=[("*hook_scale", lambda x, h: seen.__setitem__(h.name, x))])
    for name, scale in unpruned.items():
        assert torch.equal(seen[name], scale), name
    with masked(model, pr.layout, mask):
        _, free = model.run_with_cache(tokens, names_filter="ln_final.hook_scale")
    assert not torch.allclose(free["ln_final.hook_scale"], unpruned["ln_final.hook_scale"])


def test_circuit_save_load_round_trip_and_run(setup, tmp_path):
    model, tok, task = setup
    cfg = PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=8)
    c = prune(model, tok, task, cfg, seeds=[1], progress=False, model_name="tiny")[0]
    c.save(tmp_path / "c", model)
    d = Circuit.load(tmp_path / "c")
    assert torch.equal(c.nodes, d.nodes) and torch.equal(c.tau, d.tau)
    assert d.meta["ablation"] == "zero" and d.meta["task"] == "pronoun" and d.meta["model"] == "tiny"
    assert d.meta["edges"] == c.meta["edges"] and len(d.meta["node_labels"]) == c.n_nodes
    data = task.data("train", tok, 8)
    with d.run(model):
        pruned = model(data.tokens)
    with masked(model, NodeLayout(model), c.nodes.float()[None]):
        ref = model(data.tokens)
    assert torch.equal(pruned, ref)
    assert d.at_count(5).n_nodes == 5
    (tmp_path / "c" / "circuit.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="circuit.safetensors"):
        Circuit.load(tmp_path / "c")


def test_edge_counts_match_a_brute_force_count(setup):
    model, _, _ = setup
    layout = NodeLayout(model)
    nodes = torch.rand(layout.n_nodes) > 0.6
    e = count_edges(model, nodes)
    b = model.blocks[0]
    kept = lambda site: nodes[layout.sl(0, site)]  # noqa: E731
    brute = sum(
        1
        for i in range(b.mlp.W_in.weight.shape[0])
        for j in range(b.mlp.W_in.weight.shape[1])
        if b.mlp.W_in.weight[i, j] != 0 and kept("mlp_neuron")[i] and kept("mlp_in")[j]
    )
    one = count_edges(
        model,
        nodes
        & torch.cat(
            [
                torch.ones(layout.sl(0, "mlp_neuron").stop, dtype=torch.bool),
                torch.zeros(layout.n_nodes - layout.sl(0, "mlp_neuron").stop, dtype=torch.bool),
            ]
        ),
    )
    assert e["total"] == e["weights"] + e["qk_pairs"] + e["residual"]  # unembedding edges are listed beside it
    assert one["weights"] >= brute > 0
    assert count_edges(model, torch.zeros(layout.n_nodes, dtype=torch.bool))["total"] == 0
    assert count_edges(model, torch.ones(layout.n_nodes, dtype=torch.bool))["qk_pairs"] == 2 * model.cfg.d_model


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(ablation="average"), "unknown ablation 'average'"),
        (dict(ablation="zero", steps=0), "steps"),
        (dict(ablation="zero", eval_split="dev"), "split 'dev'"),
        (dict(ablation="zero", stochastic_z="normal"), "unknown stochastic_z 'normal'"),
        (dict(ablation="zero", adversary_loss="ce"), "unknown adversary_loss 'ce'"),
        (dict(ablation="zero", check_samples=0), "check_samples"),
    ],
)
def test_bad_prune_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        PruneConfig(**kw)


def test_resampler_is_reproducible(setup):
    model, tok, _ = setup
    r = Resampler(model, NodeLayout(model), tok)
    a, b = r.rows([1, 2], 3, 7, step=4), r.rows([1, 2], 3, 7, step=4)
    assert a.shape == (6, 7) and torch.equal(a, b)
    assert not torch.equal(a, r.rows([1, 2], 3, 7, step=5))


def test_frozen_layernorm_pruning_runs_and_is_recorded(setup):
    model, tok, task = setup
    cfg = PruneConfig(ablation="mean", frozen_ln=True, steps=3, batch_size=4, eval_n=8)
    c = prune(model, tok, task, cfg, seeds=[0], progress=False)[0]
    assert c.meta["frozen_ln"] and c.meta["prune_config"]["frozen_ln"] and c.meta["ablation"] == "mean"
    # with every node kept, frozen norms change nothing: the scales are the model's own
    pr = Pruner(model, tok, task, cfg)
    data = pr.eval_data
    full = pr.losses(torch.ones(1, pr.n_nodes), data, pr.means)
    base = torch.nn.functional.cross_entropy(model(data.tokens, at=data.last)[:, 0], data.correct)
    torch.testing.assert_close(full[0], base, atol=1e-5, rtol=1e-5)


def test_resample_pruning_runs_end_to_end(setup):
    model, tok, task = setup
    cfg = PruneConfig(ablation="resample", steps=2, batch_size=4, eval_n=8)
    c = prune(model, tok, get_task("ioi"), cfg, seeds=[0, 1], progress=False)
    assert [x.meta["ablation"] for x in c] == ["resample", "resample"] and all(x.n_nodes >= 1 for x in c)


@pytest.mark.parametrize("objective", ["stochastic", "adversarial"])
def test_faithful_objectives_run_and_stay_per_run_independent(setup, objective):
    model, tok, task = setup
    cfg = PruneConfig(ablation="mean", objective=objective, steps=3, batch_size=4, eval_n=8)
    together = prune(model, tok, task, cfg, seeds=[2, 4], progress=False)
    if objective == "stochastic":  # the random patterns depend only on (seed, step)
        alone = prune(model, tok, task, cfg, seeds=[4], progress=False)[0]
        torch.testing.assert_close(together[1].tau, alone.tau, atol=1e-5, rtol=0)
    assert all(c.meta["prune_config"]["objective"] == objective for c in together)
    with pytest.raises(ValueError, match="unknown objective 'robust'"):
        PruneConfig(ablation="zero", objective="robust")


def test_discretization_tries_the_count_training_kept(setup, monkeypatch):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_n=8, search_trained_count=True))
    tau = torch.linspace(-1, 1, pr.n_nodes)[torch.randperm(pr.n_nodes)][None].clone()
    tau[0] = torch.where(torch.arange(pr.n_nodes) < 37, 0.5, -0.5)[torch.randperm(pr.n_nodes)]
    # a loss that is not monotone in k: only the 37 nodes training kept reach the target
    monkeypatch.setattr(pr, "loss_at_counts", lambda t, ks, data=None: torch.where(ks == 37, 0.1, 1.0))
    res = pr.discretize(tau)
    assert res["n_nodes"] == [37] and res["reached_target"] == [True] and res["loss"][0] == pytest.approx(0.1)
    pr.cfg.search_trained_count = False  # the plain grid search misses it
    assert pr.discretize(tau)["reached_target"] == [False]


@pytest.mark.parametrize(
    "ablation, objective", [("zero", "standard"), ("resample", "standard"), ("mean", "adversarial")]
)
def test_seed_chunks_do_not_change_the_result(setup, ablation, objective):
    model, tok, task = setup
    kw = dict(ablation=ablation, objective=objective, steps=3, batch_size=4, eval_n=8)
    one_pass = prune(model, tok, task, PruneConfig(**kw, seed_chunk=8), seeds=[0, 1, 2], progress=False)
    chunked = prune(model, tok, task, PruneConfig(**kw, seed_chunk=2), seeds=[0, 1, 2], progress=False)
    for a, b in zip(one_pass, chunked):
        torch.testing.assert_close(a.tau, b.tau, atol=1e-5, rtol=0)


def test_masks_per_pass_keeps_dense_models_at_the_default_and_bounds_sparse_passes(setup):
    model, tok, task = setup
    assert masks_per_pass(model, "auto", 10**6, 8) == 8  # the tiny model runs dense under "auto": unchanged
    assert masks_per_pass(model, "dense", 10**6, 8) == 8
    d2 = model.cfg.d_model**2
    assert masks_per_pass(model, "sparse", 3, 8) == 8  # small passes: at most the default
    assert masks_per_pass(model, "sparse", PASS_ROWS_D2 // d2 // 3, 8) == 3
    assert masks_per_pass(model, "sparse", PASS_ROWS_D2, 8) == 1  # never fewer than one
    assert not any("forward" in m.__dict__ for m in model.modules())  # the probe leaves the model as it was


def test_automatic_seed_chunk_matches_one_pass_on_a_sparse_run(setup, monkeypatch):
    model, tok, task = setup
    import sparse_circuits.circuits.evaluate as evaluate

    kw = dict(ablation="mean", steps=3, batch_size=4, eval_n=8, execution="sparse")
    one_pass = prune(model, tok, task, PruneConfig(**kw, seed_chunk=3), seeds=[0, 1, 2], progress=False)
    rows = 4 * Pruner(model, tok, task, PruneConfig(**kw)).pool.tokens.shape[1]
    monkeypatch.setattr(evaluate, "PASS_ROWS_D2", rows * model.cfg.d_model**2)  # the rule now gives one run a pass
    assert masks_per_pass(model, "sparse", rows, 8) == 1
    auto = prune(model, tok, task, PruneConfig(**kw), seeds=[0, 1, 2], progress=False)
    for a, b in zip(one_pass, auto):
        torch.testing.assert_close(a.tau, b.tau, atol=1e-5, rtol=0)
        assert a.n_nodes == b.n_nodes


# ------------------------------------------------------------------------------- faithful objectives

OBJECTIVE_OPTIONS = [
    dict(objective="standard"),
    dict(objective="stochastic"),
    dict(objective="stochastic", stochastic_z="bernoulli", stochastic_per_prompt=True),
    dict(objective="adversarial"),
    dict(objective="adversarial", adversary_loss="kl", adversary_steps=2),
]


@pytest.mark.parametrize("frozen_ln", [False, True])
@pytest.mark.parametrize("options", OBJECTIVE_OPTIONS)
def test_objectives_with_every_node_kept_reproduce_the_model(setup, options, frozen_ln):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="mean", batch_size=4, frozen_ln=frozen_ln, **options))
    seeds = [3, 5]
    data = pr.batch(seeds, 0)
    z = torch.rand(2, pr.n_nodes) if options["objective"] == "adversarial" else None
    loss, kept, _ = pr.objective_losses(
        torch.ones(2, pr.n_nodes), seeds, 0, data, pr.ablation_values(seeds, data, 0), z
    )
    with torch.no_grad():
        ref = per_example_loss(run_answer_logits(model, data), data, task.loss).view(2, 4).mean(1)
    torch.testing.assert_close(loss.detach(), ref, atol=1e-5, rtol=1e-5)
    assert kept.tolist() == [pr.n_nodes] * 2


@pytest.mark.parametrize("options", OBJECTIVE_OPTIONS[1:])
def test_penalty_and_counts_use_the_keep_mask(setup, options):
    model, tok, task = setup
    kw = dict(ablation="zero", batch_size=4, temperature=0.7)
    faithful = Pruner(model, tok, task, PruneConfig(**kw, **options))
    standard = Pruner(model, tok, task, PruneConfig(**kw))
    seeds = [0, 1]
    tau = torch.randn(2, faithful.n_nodes, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    data = faithful.batch(seeds, 0)
    abl = faithful.ablation_values(seeds, data, 0)
    z = torch.rand(2, faithful.n_nodes)
    grads = []
    for pr in (faithful, standard):
        t = tau.clone().requires_grad_(True)
        _, kept, _ = pr.objective_losses(t, seeds, 0, data, abl, z)
        assert kept.tolist() == (tau > 0).sum(1).float().tolist()  # the forward's Heaviside: tau > 0 is kept
        grads.append(torch.autograd.grad(kept.sum(), t)[0])
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)  # the penalty's gradient ignores z
    # and the counts training logs, from an initialization with about half the taus below zero
    cfg = PruneConfig(**kw, **options, steps=1, init_mean=0.0, init_std=0.5, eval_n=4)
    pr = Pruner(model, tok, task, cfg)
    init = pr.init_tau(seeds)
    _, history = pr.train_masks(seeds, progress=False)
    assert 0 < history[0]["kept"][0] < pr.n_nodes
    assert history[0]["kept"] == (init > 0).sum(1).float().tolist()


def test_stochastic_z_options(setup):
    model, tok, task = setup
    pr = {
        key: Pruner(model, tok, task, PruneConfig(ablation="zero", stochastic_z=z, stochastic_per_prompt=per_prompt))
        for key, z, per_prompt in (("u", "uniform", False), ("b", "bernoulli", False), ("bp", "bernoulli", True))
    }
    u, b, bp = (pr[k].draw_z([7, 8], 2, 6) for k in ("u", "b", "bp"))
    assert u.shape == b.shape == (2, pr["u"].n_nodes) and bp.shape == (2, 6, pr["u"].n_nodes)
    assert ((u > 0) & (u < 1)).all() and set(b.unique().tolist()) == {0.0, 1.0}
    assert abs(float(b.mean()) - 0.5) < 0.05  # p = 1/2 over a few thousand nodes
    assert torch.equal(b, (u < 0.5).float())  # the same draws, thresholded: seeds give the pattern
    assert not torch.equal(bp[:, 0], bp[:, 1])  # per prompt: each prompt its own pattern
    assert torch.equal(pr["u"].draw_z([8], 2, 6)[0], u[1])  # a run's z depends on its own seed only


def test_per_prompt_masks_equal_shared_masks_when_rows_agree(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="resample", batch_size=4))
    seeds = [1, 2]
    data = pr.batch(seeds, 0)
    abl = pr.ablation_values(seeds, data, 0)
    mask = torch.rand(2, pr.n_nodes)
    per_prompt = pr.losses(mask[:, None].expand(2, 4, -1), data, abl)
    torch.testing.assert_close(per_prompt, pr.losses(mask, data, abl), atol=1e-5, rtol=1e-5)


def test_adversary_ascends_its_loss(setup):
    model, tok, task = setup
    for loss_kind in ("task", "kl"):
        pr = Pruner(model, tok, task, PruneConfig(ablation="mean", batch_size=8, adversary_loss=loss_kind))
        seeds = [0]
        data = pr.batch(seeds, 0)
        abl = pr.ablation_values(seeds, data, 0)
        keep = (torch.rand(1, pr.n_nodes, generator=torch.Generator().manual_seed(1)) < 0.5).float()
        measure = pr.adversary_measure(data)
        z0 = torch.full((1, pr.n_nodes), 0.5)
        z3 = pr.adversary(keep, z0, data, abl, steps=3)
        with torch.no_grad():
            before, after = (pr.mixed_losses(keep, z, data, abl, measure) for z in (z0, z3))
        assert float(after) > float(before)
        if loss_kind == "kl":  # KL to the model: zero with every node kept, and the hand-computed value
            full = pr.mixed_losses(torch.ones_like(keep), z0, data, abl, measure).detach()
            assert float(full) == pytest.approx(0, abs=1e-5)
            with torch.no_grad():
                log_p = run_answer_logits(model, data).log_softmax(-1)
                with masked(model, pr.layout, keep + (1 - keep) * z0, abl):
                    log_q = run_answer_logits(model, data).log_softmax(-1)
            by_hand = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
            assert float(before) == pytest.approx(float(by_hand), rel=1e-4)


def test_discretization_meets_the_faithfulness_criteria(setup, monkeypatch):
    model, tok, task = setup
    cfg = PruneConfig(ablation="zero", eval_n=8, min_stochastic_f=0.5, min_adversarial_f=0.5)
    pr = Pruner(model, tok, task, cfg)
    tau = torch.linspace(-1, 1, pr.n_nodes)[torch.randperm(pr.n_nodes, generator=torch.Generator().manual_seed(0))]
    monkeypatch.setattr(pr, "loss_at_counts", lambda t, ks, data=None: torch.full((len(ks),), 0.1))
    monkeypatch.setattr(pr, "faithfulness_bounds", lambda: (1.0, 0.0))  # f = 1 - loss
    # every count passes the loss; only circuits of >= 37 nodes pass the stochastic check, >= 50 the adversarial one
    monkeypatch.setattr(pr, "stochastic_losses", lambda m: (m.sum(1) < 37).float())
    monkeypatch.setattr(pr, "adversarial_losses", lambda m: (m.sum(1) < 50).float())
    res = pr.discretize(tau[None])
    assert res["n_nodes"] == [50] and res["reached_target"] == [True]
    assert res["stochastic_f"] == [1.0] and res["adversarial_f"] == [1.0]
    monkeypatch.setattr(pr, "adversarial_losses", lambda m: torch.full((len(m),), 9.0))
    assert pr.discretize(tau[None])["reached_target"] == [False]  # nothing meets it: never claimed


def test_discretized_circuits_pass_the_criteria_checked_by_hand(setup):
    model, tok, task = setup
    cfg = PruneConfig(
        ablation="zero",
        steps=3,
        batch_size=4,
        eval_n=8,
        objective="stochastic",
        min_stochastic_f=0.8,
        min_adversarial_f=0.3,
        check_samples=2,
        check_adversary_steps=2,
    )
    empty, full = Pruner(model, tok, task, cfg).faithfulness_bounds()
    cfg.target_loss = (empty + full) / 2  # the barely trained model: a target halfway to the ablated loss
    circuits = prune(model, tok, task, cfg, seeds=[0, 1], progress=False)
    pr = Pruner(model, tok, task, cfg)
    ev, data = pr.evaluator, pr.eval_data
    ends = ev.run(torch.stack([torch.zeros(pr.n_nodes), torch.ones(pr.n_nodes)]), data, mean=True).detach()
    assert any(c.meta["reached_target"] for c in circuits)
    for c in circuits:
        if not c.meta["reached_target"]:
            continue
        keep = c.nodes.float()[None]
        losses = []
        for j in range(2):  # the check's seeded draws, mixed by hand
            z = pr.draw_z([derived_seed("check-stochastic", j)], -1, len(data))[0]
            losses.append(float(ev.run(keep + (1 - keep) * z, data, mean=True).detach()))
        f = (float(ends[0]) - sum(losses) / 2) / float(ends[0] - ends[1])
        assert f == pytest.approx(c.meta["stochastic_f"], abs=1e-4) and f >= 0.8
        assert c.meta["adversarial_f"] >= 0.3 and c.meta["loss"] <= cfg.target_loss


def test_pruning_with_split_names_trains_and_evaluates_on_their_own_names(setup):
    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_split="test", eval_n=16, split_names=True))
    names = pr.task.name_split
    assert {a["name"] for a in pr.pool.assignments} <= names["train"]
    assert {a["name"] for a in pr.eval_data.assignments} <= names["test"]
    plain = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_split="test", eval_n=16))
    assert {a["name"] for a in plain.pool.assignments} - names["train"]  # without it, train sees every name


def test_necessity_sufficiency_ends_are_the_model_and_the_empty_circuit(setup):
    from sparse_circuits.pruning.frontier import necessity_sufficiency
    from sparse_circuits.tasks import binary_p_correct

    model, tok, task = setup
    pr = Pruner(model, tok, task, PruneConfig(ablation="zero", eval_n=16))
    every = Circuit(nodes=torch.ones(pr.n_nodes, dtype=torch.bool), tau=torch.ones(pr.n_nodes), meta={})
    r = necessity_sufficiency(pr, every, "test", 32)
    data = task.data("test", tok, 32)
    logits = run_answer_logits(model, data)
    assert r["model"] == pytest.approx(float(per_example_loss(logits, data, task.loss).mean()), abs=1e-5)
    assert r["circuit_only"] == pytest.approx(r["model"], abs=1e-6)  # the circuit is everything
    assert r["circuit_ablated"] == pytest.approx(r["all_ablated"], abs=1e-6)
    p = r["p_correct"]
    assert p["model"] == pytest.approx(float(binary_p_correct(logits, data).mean()), abs=1e-5)
    assert p["circuit_only"] == pytest.approx(p["model"], abs=1e-6)
    assert p["circuit_ablated"] == pytest.approx(p["all_ablated"], abs=1e-6)
    assert all(0.0 <= v <= 1.0 for v in p.values())
