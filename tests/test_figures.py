"""Figure helpers on tiny synthetic inputs (running minimum, key paths, legends, the TV table), progress bars, and
the circuit cache of the notebooks' shared experiment step."""

import math

import matplotlib
import pytest
import torch
from sparse_circuits.circuits.graph import Edge
from sparse_circuits.core import progress
from sparse_circuits.viz import figures as plots
from sparse_circuits.viz import graph_plot as gp
from sparse_circuits.viz import mechanism_figures as mfig

matplotlib.use("Agg")
plt = matplotlib.pyplot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------ frontiers


def test_running_min_is_the_best_loss_at_or_below_each_count():
    x, y = plots.running_min([8, 1, 4, 2, 16], [0.2, 3.0, math.nan, 1.0, 0.5])
    assert x == [1, 2, 4, 8, 16]
    assert y == [3.0, 1.0, 1.0, 0.2, 0.2]  # a NaN never lowers it; a worse loss later never raises it
    assert plots.running_min([], []) == ([], [])


def test_plot_frontier_draws_the_running_minimum_and_faint_raw_points():
    fig, ax = plt.subplots()
    line = plots.plot_frontier(ax, [1, 2, 4], [1.0, 2.0, 0.0], label="m", floor=1e-3)
    assert list(line.get_ydata()) == [1.0, 1.0, 1e-3] and line.get_label() == "m"
    raw = [ln for ln in ax.lines if ln is not line]
    assert len(raw) == 1 and list(raw[0].get_ydata()) == [1.0, 2.0, 1e-3] and raw[0].get_alpha() < 0.5


def test_sweep_trials_fill_reaching_trials_and_skip_tasks_without_sweeps():
    trials = [
        {"k_coef": 1e-4, "nodes": 40, "reached": True},
        {"k_coef": 1e-3, "nodes": 9, "reached": False},
        {"k_coef": 1e-2, "nodes": 20, "reached": True},
    ]
    sweep = {"trials": trials, "best_nodes": 20}
    sweeps = {"a": {"pronoun": sweep, "ioi": None}, "b": {"pronoun": None, "ioi": None}}
    fig = plots.plot_sweep_trials(sweeps, ["a", "b"], ["pronoun", "ioi"])
    (ax,) = fig.axes  # ioi has no sweep for any model: no panel
    filled, hollow = ax.collections
    assert filled.get_offsets().tolist() == [[1e-4, 40], [1e-2, 20]] and filled.get_label() == "a (best 20)"
    assert hollow.get_offsets().tolist() == [[1e-3, 9]] and hollow.get_facecolors().size == 0
    with pytest.raises(ValueError, match="no sweep"):
        plots.plot_sweep_trials(sweeps, ["b"], ["pronoun"])


def test_size_records_plot_reaching_seeds_and_their_geometric_mean():
    rec = lambda m, t, n, ok=True: dict(model=m, task=t, nodes=n, edges=2 * n, reached=ok)  # noqa: E731
    records = [rec("a", "ioi", 10), rec("a", "ioi", 40), rec("a", "ioi", 5000, ok=False), rec("b", "ioi", 7)]
    fig = plots.plot_size_records(records, ["a", "b"], ["ioi"])
    nodes_ax = fig.axes[0]
    dots = [c for c in nodes_ax.collections if c.get_label() in ("a", "b")]
    assert [sorted(c.get_offsets()[:, 1].tolist()) for c in dots] == [[10, 40], [7]]  # the missed seed is left out
    bars = [c for c in nodes_ax.collections if c not in dots]
    assert bars[0].get_segments()[0][0][1] == pytest.approx(20.0)  # geometric mean of 10 and 40
    assert fig.axes[1].collections[0].get_offsets()[:, 1].tolist() == [20, 80]  # edges


def test_search_twins_plot_one_point_per_circuit_and_hollow_misses():
    row = lambda s, t, k, ok=True: dict(standard_nodes=s, trained_nodes=t, kept_in_training=k, standard_reached=ok,  # noqa: E731
                                        trained_reached=True)  # fmt: skip
    twins = {"a": {"rows": [row(1708, 23, 28), row(25, 25, 30)]}, "b": {"rows": [row(6749, 6749, 0, ok=False)]}}
    fig = plots.plot_search_twins(twins, far_ratio=10)
    left, right = fig.axes
    filled = [c for c in left.collections if c.get_label() in ("a", "b")]
    assert [len(c.get_offsets()) for c in filled] == [2, 0]  # b's circuit missed the target under one search: hollow
    assert sum(len(c.get_offsets()) for c in left.collections) == 3
    assert [len(c.get_offsets()) for c in right.collections] == [3, 3]  # both searches per circuit
    assert right.collections[0].get_offsets()[2][0] == 1  # nothing kept in training is drawn at 1 (log scale)
    assert any("10x" in t.get_text() for t in right.get_legend().get_texts())
    with pytest.raises(ValueError, match="no circuits"):
        plots.plot_search_twins({"a": {"rows": []}}, 10)


def test_residual_rms_boxes_per_group_skip_empty_sets():
    import torch

    groups = {
        "g1": {"model": torch.tensor([1.0, 2.0, 3.0]), "free": torch.tensor([[0.5, 1.0]]), "frozen": torch.zeros(0)},
        "g2": {"model": torch.ones(4), "free": torch.ones(2, 3), "frozen": torch.full((1, 3), 2.0)},
    }
    fig = plots.plot_residual_rms(groups)
    (ax,) = [a for a in fig.axes]
    medians = [ln.get_ydata()[0] for ln in ax.lines if ln.get_color() == "k"]
    assert medians == [2.0, 0.75, 1.0, 1.0, 2.0]  # g1's frozen set is empty: five boxes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["g1", "g2"]
    with pytest.raises(ValueError, match="no group"):
        plots.plot_residual_rms({})


def test_same_gender_histograms_count_only_reaching_seeds_per_mode():
    import matplotlib.pyplot as plt

    def study(p_same, reached):
        return {
            "eval": {"ioi_same": {"p_correct": p_same}},
            "reached": reached,
            "model_rates": {"ioi_same": {"p_correct": 0.97}},
        }

    fig, ax = plt.subplots()
    plots.plot_same_gender_by_mode(
        ax, {"free": study([0.01, 0.9, 0.5], [True, True, False]), "frozen": study([0.3], [True])}, "d128"
    )
    assert ax.get_legend_handles_labels()[1] == [
        "free norms (2 seeds)",
        "frozen norms (1 seeds)",
        "model",
        "bad below 0.2",
    ]
    heights = [sum(b.get_height() for b in c) for c in ax.containers]
    assert heights == [2, 1]  # the free seed that missed the target is left out
    assert [ln.get_xdata()[0] for ln in ax.lines] == [0.97, 0.2] and ax.get_title() == "d128"
    plt.close(fig)


def test_suite_grid_colours_pass_fail_and_undefined_and_prints_values():
    rows = {
        "a": {"nodes": 12, "metrics": {"f": 0.9, "kl": None}, "passes": {"f": True, "kl": None}},
        "b": {"nodes": 30, "metrics": {"f": 0.2, "kl": 1.5}, "passes": {"f": False, "kl": False}},
    }
    fig = plots.plot_suite_passes(rows, ("f", "kl"), "suite")
    (ax,) = fig.axes
    assert ax.images[0].get_array().tolist() == [[1.0, 0.5], [0.0, 0.0]]
    assert [t.get_text() for t in ax.texts] == ["0.9", "n/a", "0.2", "1.5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (12 nodes)", "b (30 nodes)"]


def test_threshold_line_is_named_and_legend_sits_outside_once_per_label():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a")
        ax.plot([0, 1], [1, 0], label="b")
        plots.threshold_line(ax, 0.15, "target loss 0.15")
    assert [t.get_text() for t in axes[0].texts] == ["target loss 0.15"]
    leg = plots.legend_outside(fig)
    assert [t.get_text() for t in leg.get_texts()] == ["a", "b"]
    assert leg.get_bbox_to_anchor().bounds[0] >= fig.bbox.width * 0.99  # anchored at the figure's right edge
    with pytest.raises(ValueError, match="where"):
        plots.legend_outside(fig, where="inside")
    assert plots.legend_outside(plt.figure()) is None


# ------------------------------------------------------------------------------------------ key paths


def _node(layer: int, site: str, channel: int, kind: str = "node", head=None) -> dict:
    return {"index": 0, "layer": layer, "site": site, "channel": channel, "head": head, "kind": kind}


def toy_graph() -> dict:
    """embed.A -> L0.attn_in.{0,1} -> L0.v.{0,1} -> L0.attn_out.0 -> logit.X, with one strong and one weak route,
    a strong dead end (L0.attn_in.2 -> L0.v.2, never reaching the logit) and a q-k pair."""
    nodes = {
        "embed.A": _node(-1, "embed", 0, "embed"),
        "L0.attn_in.0": _node(0, "attn_in", 0),
        "L0.attn_in.1": _node(0, "attn_in", 1),
        "L0.attn_in.2": _node(0, "attn_in", 2),
        "L0.q.h0.0": _node(0, "q", 0, head=0),
        "L0.k.h0.0": _node(0, "k", 0, head=0),
        "L0.v.h0.0": _node(0, "v", 0, head=0),
        "L0.v.h0.1": _node(0, "v", 1, head=0),
        "L0.v.h0.2": _node(0, "v", 2, head=0),
        "L0.attn_out.0": _node(0, "attn_out", 0),
        "logit.X": _node(1, "logits", 5, "logit"),
    }
    edges = [
        Edge("embed.A", "L0.attn_in.0", 1.0, "embed"),
        Edge("embed.A", "L0.attn_in.1", 0.9, "embed"),
        Edge("embed.A", "L0.attn_in.2", 1.0, "embed"),
        Edge("L0.attn_in.0", "L0.v.h0.0", 2.0, "W_V"),  # strong route
        Edge("L0.attn_in.1", "L0.v.h0.1", -0.2, "W_V"),  # weak route: its weakest edge is 0.1 relative
        Edge("L0.attn_in.2", "L0.v.h0.2", 2.0, "W_V"),  # strong but a dead end
        Edge("L0.v.h0.0", "L0.attn_out.0", -3.0, "W_O"),
        Edge("L0.v.h0.1", "L0.attn_out.0", 3.0, "W_O"),
        Edge("L0.attn_out.0", "logit.X", 0.5, "unembed"),
        Edge("L0.q.h0.0", "L0.k.h0.0", 1.0, "qk"),
    ]
    return {"nodes": nodes, "edges": edges, "n_layer": 1, "d_head": 4, "answer_tokens": [5]}


def test_key_path_edges_keep_whole_strong_paths_to_the_logits():
    g = toy_graph()
    strong = [0, 3, 6, 8]  # embed -> attn_in.0 -> v.0 -> attn_out.0 -> logit
    assert gp.key_path_edges(g, 4) == strong
    everything = gp.key_path_edges(g, 100)
    assert everything == sorted(strong + [1, 4, 7])  # the weak route too, never the dead end nor the q-k pair
    assert gp.key_path_edges(g, 0) == []
    for n in range(1, 8):  # any budget: the strong route's edges come first, then the weak route's
        kept = set(gp.key_path_edges(g, n))
        assert len(kept) == n and (kept <= set(strong) if n <= 4 else set(strong) < kept <= set(everything))


def test_key_paths_without_logits_end_at_nodes_without_outputs():
    g = toy_graph()
    del g["nodes"]["logit.X"]
    g["edges"] = [e for e in g["edges"] if e.kind != "unembed"]
    assert gp.key_path_edges(g, 100) == [0, 1, 2, 3, 4, 5, 6, 7]  # attn_out.0 and v.2 are both sinks now


def big_graph(n_mid: int = 210) -> dict:
    """A wide synthetic circuit: embed -> n_mid mlp_neuron nodes -> one mlp_out -> a logit."""
    g = {"nodes": {"embed.A": _node(-1, "embed", 0, "embed")}, "edges": [], "n_layer": 1, "d_head": 4}
    for i in range(n_mid):
        g["nodes"][f"L0.mlp_neuron.{i}"] = _node(0, "mlp_neuron", i)
        g["edges"].append(Edge("embed.A", f"L0.mlp_neuron.{i}", 1.0, "embed"))
        g["edges"].append(Edge(f"L0.mlp_neuron.{i}", "L0.mlp_out.0", (i + 1) / n_mid, "W_out"))
    g["nodes"]["L0.mlp_out.0"] = _node(0, "mlp_out", 0)
    g["nodes"]["logit.X"] = _node(1, "logits", 5, "logit")
    g["edges"].append(Edge("L0.mlp_out.0", "logit.X", 1.0, "unembed"))
    g["answer_tokens"] = [5]
    return g


def test_large_circuit_graph_shows_key_paths_with_a_note_and_an_edge_legend():
    g = big_graph()
    ax = gp.plot_circuit_graph(g)
    note = [t.get_text() for t in ax.texts if t.get_text().startswith("key paths")]
    assert note and f"the {gp.KEY_EDGES} strongest of {len(g['edges'])} edges" in note[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "positive weight" in legend and "negative weight" in legend and "not on a key path" in legend
    kept = gp.key_path_edges(g, gp.KEY_EDGES)
    assert len(kept) == gp.KEY_EDGES and len(g["edges"]) - 1 in kept  # the unembedding edge is on every path
    dense = big_graph(gp.MAX_GREY_EDGES)  # more grey edges than drawn: left out, and the note says so
    ax = gp.plot_circuit_graph(dense)
    assert any(f"the other {len(dense['edges']) - gp.KEY_EDGES} edges are not drawn" in t.get_text() for t in ax.texts)
    assert "not on a key path" not in [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.collections[0].get_segments()) == gp.KEY_EDGES
    small = gp.plot_circuit_graph(toy_graph())
    assert not [t for t in small.texts if t.get_text().startswith("key paths")]
    assert "not on a key path" not in [t.get_text() for t in small.get_legend().get_texts()]


def test_crowded_rows_get_upright_labels_and_sparse_rows_alternate():
    few = {f"L0.attn_in.{i}": ((i + 0.5) / 3, 1.0) for i in range(3)}
    many = {f"L0.mlp_neuron.{i}": ((i + 0.5) / 40, 2.0) for i in range(40)}
    off = gp._label_offsets([*few, *many], few | many, width_pt=500)
    assert [off[n][1] for n in few] == [4.0, -10.0, 4.0] and all(off[n][2] == 0.0 for n in few)
    assert all(off[n][2] == 90.0 for n in many)


def test_graph_svg_carries_an_edge_legend():
    svg = gp.graph_svg(toy_graph())
    assert "blue positive weight" in svg and "grey dashed q-k pair" in svg and "strongest of" not in svg
    assert "drawing the 3 strongest of 10 edges" in gp.graph_svg(toy_graph(), max_edges=3)


# --------------------------------------------------------------------------------------- TV table


def _head(layer: int, head: int, tv: float, lost: bool = False, qk: int = 0) -> dict:
    return {"layer": layer, "head": head, "tv_mean": tv, "lost": lost, "qk_pairs": qk}


def test_tv_table_has_one_panel_per_model_and_names_blank_cells():
    heads = {
        "a/pronoun/zero": [_head(0, 1, 0.2), _head(1, 3, 0.9, lost=True)],
        "a/ioi/zero": [_head(0, 1, 0.1, qk=2)],
        "b/pronoun/zero": [_head(1, 7, 0.5)],
    }
    fig = mfig.plot_tv_table(heads)
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    a, b = panels
    assert [t.get_text() for t in a.get_yticklabels()] == ["L0.h1", "L1.h3"]  # b's head is not a row of a
    assert [t.get_text() for t in b.get_yticklabels()] == ["L1.h7"]
    assert [t.get_text() for t in a.texts].count("no head") == 1  # L1.h3 in a/ioi/zero
    assert [t.get_text() for t in b.texts].count("no head") == 0
    assert "no head" in fig._suptitle.get_text()
    assert mfig.by_model(heads) == {"a": ["a/pronoun/zero", "a/ioi/zero"], "b": ["b/pronoun/zero"]}


# --------------------------------------------------------------------------------------- progress bars


def test_progress_bars_are_text_under_the_notebook_runner(monkeypatch):
    from sparse_circuits.app.notebooks import kernel_env
    from tqdm.std import tqdm as text_bar

    monkeypatch.setenv(progress.TEXT_PROGRESS_ENV, "1")
    bar = progress.tqdm(range(3), disable=True)
    assert type(bar) is text_bar and list(bar) == [0, 1, 2]
    # text bars update a few times a minute (one saved line each), unless the caller asks otherwise
    import io

    assert progress.tqdm(range(2), file=io.StringIO()).mininterval == progress.TEXT_MININTERVAL_S >= 5
    assert progress.tqdm(range(2), file=io.StringIO(), mininterval=0.5).mininterval == 0.5
    monkeypatch.setenv(progress.TEXT_PROGRESS_ENV, "0")
    assert not progress.text_progress()
    assert kernel_env()[progress.TEXT_PROGRESS_ENV] == "1"


# --------------------------------------------------------------------------------------- circuit cache


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    from sparse_circuits.model.inference import load

    return {"tiny": load(tiny_model_dir)}


def test_circuit_cache_hits_only_on_the_same_key(tiny_loaded, tmp_path, one_thread):
    from sparse_circuits.app.experiments import prune_circuits
    from sparse_circuits.pruning.pruner import PruneConfig

    cfgs = [PruneConfig(ablation=a, steps=3, batch_size=4, eval_n=8) for a in ("zero", "mean")]
    fresh = prune_circuits(tiny_loaded, ["pronoun"], cfgs, seed=1)  # no cache
    first = prune_circuits(tiny_loaded, ["pronoun"], cfgs, seed=1, cache_dir=tmp_path)
    again = prune_circuits(tiny_loaded, ["pronoun"], cfgs, seed=1, cache_dir=tmp_path)
    assert not any(e["cached"] for e in first.values()) and all(e["cached"] for e in again.values())
    assert len(list(tmp_path.iterdir())) == 2 and not list(tmp_path.glob(".*"))  # no temporary leftovers
    for key, e in fresh.items():
        for other in (first[key], again[key]):
            assert torch.equal(e["circuit"].nodes, other["circuit"].nodes)
            assert torch.equal(e["circuit"].tau, other["circuit"].tau)
            assert e["circuit"].meta["loss"] == other["circuit"].meta["loss"]
            assert e["circuit"].n_edges == other["circuit"].n_edges
    means = again["tiny/pronoun/mean"]["ablation"]
    assert means is not None and all(torch.equal(means[k], fresh["tiny/pronoun/mean"]["ablation"][k]) for k in means)
    other_seed = prune_circuits(tiny_loaded, ["pronoun"], cfgs[:1], seed=2, cache_dir=tmp_path)
    other_cfg = [PruneConfig(ablation="zero", steps=4, batch_size=4, eval_n=8)]
    other_steps = prune_circuits(tiny_loaded, ["pronoun"], other_cfg, seed=1, cache_dir=tmp_path)
    assert not other_seed["tiny/pronoun/zero"]["cached"] and not other_steps["tiny/pronoun/zero"]["cached"]


def test_seed_study_cache_reuses_only_the_same_batch_of_seeds(tiny_loaded, tmp_path, one_thread):
    from sparse_circuits.analysis.generalization import seed_study
    from sparse_circuits.app.experiments import cached_seed_study
    from sparse_circuits.pruning.pruner import PruneConfig

    cfg = PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=8)
    model, tok, _ = tiny_loaded["tiny"]
    kw = dict(eval_tasks=("ioi", "ioi_same"), n_eval=8)
    fresh = seed_study(model, tok, cfg, [0, 1], **kw)
    first = cached_seed_study(tiny_loaded["tiny"], cfg, [0, 1], "tiny", tmp_path, **kw)
    again = cached_seed_study(tiny_loaded["tiny"], cfg, [0, 1], "tiny", tmp_path, **kw)
    assert not first["cached"] and again["cached"] and len(list(tmp_path.iterdir())) == 2
    for st in (first, again):
        assert st["nodes"] == fresh["nodes"] and st["loss"] == fresh["loss"] and st["eval"] == fresh["eval"]
        assert all(torch.equal(a.tau, b.tau) for a, b in zip(st["circuits"], fresh["circuits"]))
    # seed 0 of another batch is another run (batched runs can differ in the last bits): not reused
    assert not cached_seed_study(tiny_loaded["tiny"], cfg, [0], "tiny", tmp_path, **kw)["cached"]
    with pytest.raises(ValueError, match="2 circuits for 1 seeds"):
        seed_study(model, tok, cfg, [0], circuits=fresh["circuits"], **kw)


def test_sharded_seed_study_caches_each_shard(tiny_loaded, tmp_path, one_thread):
    from sparse_circuits.app.experiments import cached_batch, cached_seed_study, seed_shards
    from sparse_circuits.pruning.pruner import PruneConfig

    assert seed_shards([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]] and seed_shards([3, 4], None) == [[3, 4]]
    with pytest.raises(ValueError, match="shard"):
        seed_shards([0], 0)
    cfg = PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=8)
    kw = dict(eval_tasks=("ioi", "ioi_same"), n_eval=8)
    # one shard filled beforehand (as a separate process would), the other pruned by the study
    shard0, _ = cached_batch(tiny_loaded["tiny"], cfg, [0, 1], "tiny", "ioi", tmp_path)
    first = cached_seed_study(tiny_loaded["tiny"], cfg, [0, 1, 2], "tiny", tmp_path, shard=2, **kw)
    assert not first["cached"] and len(list(tmp_path.iterdir())) == 3
    assert all(torch.equal(a.tau, b.tau) for a, b in zip(first["circuits"][:2], shard0))
    shard1, hit = cached_batch(tiny_loaded["tiny"], cfg, [2], "tiny", "ioi", tmp_path)
    assert hit and torch.equal(first["circuits"][2].tau, shard1[0].tau)
    again = cached_seed_study(tiny_loaded["tiny"], cfg, [0, 1, 2], "tiny", tmp_path, shard=2, **kw)
    assert again["cached"] and again["nodes"] == first["nodes"] and again["eval"] == first["eval"]
    # the study's pruning time is both runs' time, however many seeds each had
    runs = [shard0[0].meta, shard1[0].meta]
    total = sum(m["train_seconds"] + m["discretize_seconds"] for m in runs)
    assert again["seconds"]["prune"] == pytest.approx(total)


def test_cache_key_changes_with_the_weights(tiny_loaded):
    from sparse_circuits.app.experiments import cache_key, weights_digest
    from sparse_circuits.pruning.pruner import PruneConfig
    from sparse_circuits.tasks import get_task

    model, _, config = tiny_loaded["tiny"]
    before = weights_digest(model)
    cfg = PruneConfig(ablation="zero")
    key = cache_key("tiny", before, config, get_task("pronoun"), cfg, 0)
    assert key["prune_config"]["ablation"] == "zero" and key["task"]["task"] == "pronoun"
    assert len(key["code_sha256"]) == 64 and key == cache_key("tiny", before, config, get_task("pronoun"), cfg, 0)
    p = next(model.parameters())
    with torch.no_grad():
        p.view(-1)[0] += 1.0
    try:
        assert weights_digest(model) != before
    finally:
        with torch.no_grad():
            p.view(-1)[0] -= 1.0
    assert weights_digest(model) == before
