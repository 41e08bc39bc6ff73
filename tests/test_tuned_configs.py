"""Tuned pruning configs (pruning.tuned): written by `sweep --write-config`, loaded by `prune --tuned` and
`tuned_prune_config`, refused when malformed or made for another (model, task, ablation)."""

import contextlib
import io
import json
import shutil

import pytest
import torch
import yaml
from sparse_circuits.app.cli import build_parser, main
from sparse_circuits.pruning.pruner import PruneConfig
from sparse_circuits.pruning.tuned import (
    TunedConfigError,
    has_tuned_config,
    list_tuned_configs,
    load_tuned_config,
    read_tuned_config,
    tuned_config_path,
    tuned_prune_config,
)

TINY = ["--steps", "3", "--batch-size", "4", "--eval-n", "16"]


@pytest.fixture(scope="module")
def swept(tiny_model_dir, tmp_path_factory):
    """(config root, the sweep's printed result) of a 2-trial sweep of the tiny model that wrote its config."""
    root = tmp_path_factory.mktemp("pruning_configs")
    argv = ["sweep", str(tiny_model_dir), "--task", "pronoun", "--ablation", "zero", "--trials", "2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--parallel", "2", *TINY, "--config-dir", str(root), "--json"]) == 0
    return root, json.loads(out.getvalue().strip().splitlines()[-1])


def _copy(swept, tmp_path, model="tiny"):
    """A writable copy of the swept file under ``tmp_path/<model>/``; returns (root, path)."""
    root, _ = swept
    path = tuned_config_path(model, "pronoun", "zero", root=tmp_path)
    path.parent.mkdir(parents=True)
    shutil.copy(tuned_config_path("tiny", "pronoun", "zero", root=root), path)
    return tmp_path, path


def test_sweep_writes_a_config_that_round_trips(swept):
    root, res = swept
    path = tuned_config_path("tiny", "pronoun", "zero", root=root)
    assert res["config"] == str(path) and path == root / "tiny" / "pronoun-zero.yaml"
    assert res["wall_time_s"] > 0 and (res["steps"], res["batch_size"]) == (3, 4)
    tuned = tuned_prune_config("tiny", "pronoun", "zero", root=root)
    assert tuned == PruneConfig(ablation="zero", steps=3, batch_size=4, eval_n=16, **res["best_params"])
    config = read_tuned_config(path)
    assert (config.model, config.task, config.ablation, config.frozen_ln) == ("tiny", "pronoun", "zero", False)
    assert config.tuned == res["best_params"] and config.fixed["steps"] == 3
    record = config.sweep
    assert record.n_trials == len(record.trials) == 2 and record.parallel == 2 and record.seed == 0
    assert record.best_nodes == res["nodes"] and record.reached_target == res["reached_target"]
    assert record.wall_time_s > 0 and record.package_version and record.date
    assert min(t["objective"] for t in record.trials) == record.best_objective
    assert {"trial", "k_coef", "lr", "objective"} <= set(record.trials[0])
    assert config.to_dict() == yaml.safe_load(path.read_text())  # what is read is what was written
    assert has_tuned_config("tiny", "pronoun", "zero", root=root)
    assert not has_tuned_config("tiny", "pronoun", "zero", frozen_ln=True, root=root)
    assert tuned_prune_config("tiny", "pronoun", "zero", frozen_ln=True, root=root) is None
    assert [c.path for c in list_tuned_configs(root)] == [path] == [c.path for c in list_tuned_configs(root, "tiny")]
    assert tuned_prune_config("tiny", "pronoun", "zero", root=root, steps=5).steps == 5  # overrides win
    with pytest.raises(ValueError, match="cannot be overridden"):
        config.prune_config(ablation="mean")


def test_frozen_configs_have_their_own_file(tmp_path):
    path = tuned_config_path("sparse-d128", "ioi", "mean", frozen_ln=True, root=tmp_path)
    assert path == tmp_path / "sparse-d128" / "ioi-mean-frozen.yaml"
    assert tuned_config_path("m", "ioi_opposite", "zero", root=tmp_path).name == "ioi-zero.yaml"  # an alias
    with pytest.raises(ValueError, match="cannot name a tuned config file"):
        tuned_config_path("../m", "ioi", "zero")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(colour="red"), "unknown tuned pruning config fields ['colour']"),
        (lambda d: d["fixed"].update(stepz=3), "unknown fixed fields ['stepz']"),
        (lambda d: d["tuned"].update(steps=3), "unknown tuned fields ['steps']"),
        (lambda d: d["sweep"].update(wall_time=1.0), "unknown sweep config fields ['wall_time']"),
        (lambda d: d["sweep"]["trials"][0].update(seed=1), "unknown sweep.trials[0] fields ['seed']"),
        (lambda d: d["fixed"].update(steps=0), "PruneConfig.steps must be an integer >= 1"),
        (lambda d: d.pop("tuned"), "missing the required field 'tuned'"),
    ],
)
def test_the_loader_refuses_a_malformed_file(swept, tmp_path, edit, match):
    root, path = _copy(swept, tmp_path)
    d = yaml.safe_load(path.read_text())
    edit(d)
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(TunedConfigError) as e:
        tuned_prune_config("tiny", "pronoun", "zero", root=root)
    assert str(path) in str(e.value) and match in str(e.value)


def test_the_loader_refuses_invalid_yaml_and_another_models_file(swept, tmp_path):
    root, path = _copy(swept, tmp_path, model="sparse-d128")  # the tiny model's file under another model's name
    with pytest.raises(TunedConfigError, match="not of the requested") as e:
        load_tuned_config("sparse-d128", "pronoun", "zero", root=root)
    assert str(path) in str(e.value) and "'model': 'tiny'" in str(e.value)
    path.write_text("model: tiny\ntuned: {k_coef: 0.001\n")
    with pytest.raises(TunedConfigError, match="not valid YAML") as e:
        load_tuned_config("sparse-d128", "pronoun", "zero", root=root)
    assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1
    path.write_text("- a list\n")
    with pytest.raises(TunedConfigError, match="must be a mapping"):
        list_tuned_configs(root)


def _fails_with_one_line(capsys, argv, match):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_prune_tuned_without_a_config_names_the_expected_path(capsys, tiny_model_dir, tmp_path):
    argv = ["prune", tiny_model_dir, "--task", "pronoun", "--ablation", "zero", "--frozen-ln", "--tuned-dir", tmp_path]
    _fails_with_one_line(capsys, argv, f"expected {tmp_path / 'tiny' / 'pronoun-zero-frozen.yaml'}")


def test_prune_tuned_explicit_options_override_the_tuned_values(capsys, swept, tiny_model_dir):
    root, found = swept
    argv = ["prune", str(tiny_model_dir), "--task", "pronoun", "--ablation", "zero", "--tuned-dir", str(root)]
    assert main([*argv, "--lr", "0.005", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["tuned"] and res["lr"] == 0.005  # given on the command line
    assert res["k_coef"] == found["best_params"]["k_coef"]  # tuned
    assert (res["steps"], res["batch_size"]) == (3, 4)  # as the sweep ran, not PruneConfig's defaults
    assert res["wall_time_s"] > 0


def test_prune_notes_which_options_were_given():
    parser = build_parser()
    args = parser.parse_args(["prune", "M", "--task", "ioi", "--ablation", "zero", "--lr", "0.01", "--no-frozen-ln"])
    assert args.given_fields == {"ablation", "lr", "frozen_ln"} and not args.tuned and args.tuned_dir is None
    args = parser.parse_args(["prune", "M", "--task", "ioi", "--ablation", "zero", "--tuned"])
    assert args.given_fields == {"ablation"} and args.tuned and args.tuned_dir is None
    # the flag takes no value, so a positional after it stays the model directory
    args = parser.parse_args(["prune", "--tuned", "M", "--task", "ioi", "--ablation", "zero"])
    assert args.model_dir == "M" and args.tuned


def test_sweep_defaults_are_the_papers_budget():
    args = build_parser().parse_args(["sweep", "M", "--task", "ioi", "--ablation", "zero"])
    assert (args.steps, args.batch_size, args.trials) == (2000, 64, 32) and not args.write_config
    args = build_parser().parse_args(["sweep", "--write-config", "M", "--task", "ioi", "--ablation", "zero"])
    assert args.write_config and args.model_dir == "M" and args.config_dir is None


def test_sweep_write_config_target_is_checked_before_the_sweep(capsys, tiny_model_dir, tmp_path, monkeypatch):
    from sparse_circuits.app import cli

    def no_compute(*args, **kwargs):
        raise AssertionError("an unusable --write-config should be refused before the sweep")

    monkeypatch.setattr(cli, "sweep", no_compute)
    (tmp_path / "tiny" / "pronoun-zero.yaml").mkdir(parents=True)
    argv = ["sweep", tiny_model_dir, "--task", "pronoun", "--ablation", "zero", "--config-dir", tmp_path]
    _fails_with_one_line(capsys, argv, "pronoun-zero.yaml exists and is not a file")


def test_regime_reads_the_sweep_behind_each_tuned_config(swept):
    from sparse_circuits.app.regime import tuned_sweeps

    root, found = swept
    got = tuned_sweeps(["tiny", "absent-model"], ["pronoun", "ioi"], "zero", root=root)
    assert got["tiny"]["ioi"] is None and got["absent-model"] == {"pronoun": None, "ioi": None}
    s = got["tiny"]["pronoun"]
    assert (s["steps"], s["batch_size"], s["n_trials"]) == (3, 4, 2)
    assert s["k_coef"] == found["best_params"]["k_coef"] and s["lr"] == found["best_params"]["lr"]
    assert len(s["trials"]) == 2 and s["n_reached"] == sum(t["reached"] for t in s["trials"])
    assert s["nodes_reached"] == sorted(t["nodes"] for t in s["trials"] if t["reached"])
    if s["reached_target"]:
        assert s["best_nodes"] == min(s["nodes_reached"])
    # the free-norm sweep is not a frozen-norm one: frozen sweeps live in their own files
    assert tuned_sweeps(["tiny"], ["pronoun"], "zero", root=root, frozen_ln=True) == {"tiny": {"pronoun": None}}


def test_best_nodes_ratio_counts_a_sweep_missing_the_target_as_larger():
    from sparse_circuits.app.regime import best_nodes_ratio

    reached = lambda n: {"best_nodes": n, "reached_target": True}  # noqa: E731
    missed = {"best_nodes": 5, "reached_target": False}  # a small circuit that misses the target counts for nothing
    assert best_nodes_ratio(reached(20), reached(50)) == 2.5
    assert best_nodes_ratio(reached(20), missed) == float("inf")
    assert best_nodes_ratio(missed, reached(20)) is None


def test_regime_prunes_with_the_tuned_config_where_one_exists(swept, tiny_model_dir):
    from sparse_circuits.app.regime import tuned_circuits
    from sparse_circuits.model.inference import load
    from sparse_circuits.tasks import get_task

    root, found = swept
    loaded = {"tiny": load(tiny_model_dir)}
    tests = {("tiny", t): get_task(t).data("test", loaded["tiny"][1], 4) for t in ("pronoun", "ioi")}
    fallback = PruneConfig(ablation="zero", steps=2, batch_size=2, eval_n=4, lr=5e-3, k_coef=2e-4)
    entries, used = tuned_circuits(loaded, "tiny", ["pronoun", "ioi"], fallback, tests, {"steps": 2}, root=root)
    assert list(entries) == ["tiny/pronoun/zero", "tiny/ioi/zero"]
    pronoun, ioi = (entries[k]["circuit"].meta for k in entries)
    # pronoun has a tuned config: its values, with the override on top; ioi has none: the fallback
    assert used["pronoun"] == {"tuned": True, "seed": 0, "steps": 2, "batch_size": 4, **found["best_params"]}
    assert (pronoun["k_coef"], pronoun["lr"], pronoun["prune_config"]["steps"]) == (
        found["best_params"]["k_coef"],
        found["best_params"]["lr"],
        2,
    )
    assert used["ioi"] == {"tuned": False, "seed": 0, "steps": 2, "batch_size": 2, "k_coef": 2e-4, "lr": 5e-3}
    assert (ioi["k_coef"], ioi["lr"]) == (2e-4, 5e-3)
    assert all("summary" in e and "test_ablation" in e for e in entries.values())

    # "best": the sweep's best trial's seed where a tuned config exists, 0 elsewhere
    best = read_tuned_config(tuned_config_path("tiny", "pronoun", "zero", root=root)).sweep
    entries, used = tuned_circuits(loaded, "tiny", ["pronoun", "ioi"], fallback, tests, {"steps": 2}, "best", root=root)
    assert used["pronoun"]["seed"] == best.best_seed == best.seed * 100_000 + best.best_trial
    assert entries["tiny/pronoun/zero"]["circuit"].meta["seed"] == best.best_seed and used["ioi"]["seed"] == 0
    with pytest.raises(ValueError, match="seed must be an integer or 'best'"):
        tuned_circuits(loaded, "tiny", ["pronoun"], fallback, tests, seed="worst", root=root)


def test_tuned_seed_circuits_prunes_each_seed_alone_and_keeps_the_best(swept, tiny_model_dir, tmp_path):
    from sparse_circuits.app.regime import tuned_circuits, tuned_seed_circuits
    from sparse_circuits.model.inference import load
    from sparse_circuits.tasks import get_task

    root, _ = swept
    loaded = {"tiny": load(tiny_model_dir)}
    tests = {("tiny", "pronoun"): get_task("pronoun").data("test", loaded["tiny"][1], 4)}
    fallback = PruneConfig(ablation="zero", steps=2, batch_size=2, eval_n=4)
    cache = tmp_path / "circuits"
    r = tuned_seed_circuits(loaded, "tiny", ["pronoun"], fallback, tests, [3, 5], {"steps": 3}, cache, root)["pronoun"]
    assert [x["seed"] for x in r["rows"]] == [3, 5] and r["used"]["steps"] == 3 and "seed" not in r["used"]
    # each seed is the circuit tuned_circuits prunes for that seed alone (and it was saved: the second call reuses it)
    alone, _ = tuned_circuits(loaded, "tiny", ["pronoun"], fallback, tests, {"steps": 3}, 5, cache, root)
    assert torch.equal(alone["tiny/pronoun/zero"]["circuit"].tau, r["circuits"][1]["circuit"].tau)
    assert alone["tiny/pronoun/zero"]["cached"]
    reached = [x["nodes"] for x in r["rows"] if x["reached_target"]]
    assert r["best_nodes"] == (min(reached) if reached else None)
    # the pruning time is the runs' own, also when the circuits come back from the cache
    metas = [e["circuit"].meta for e in r["circuits"]]
    assert r["prune_seconds"] == pytest.approx(sum(m["train_seconds"] + m["discretize_seconds"] for m in metas))
    again = tuned_seed_circuits(loaded, "tiny", ["pronoun"], fallback, tests, [3, 5], {"steps": 3}, cache, root)[
        "pronoun"
    ]
    assert all(e["cached"] for e in again["circuits"]) and again["prune_seconds"] == r["prune_seconds"] > 0
    with pytest.raises(ValueError, match="at least one seed"):
        tuned_seed_circuits(loaded, "tiny", ["pronoun"], fallback, tests, [], root=root)


def test_sweep_trials_prune_with_their_recorded_seeds(tiny_model_dir):
    """Each trial's pruning seed is sweep.trial_seed(seed, trial), which SweepRecord.best_seed relies on."""
    from sparse_circuits.model.inference import load
    from sparse_circuits.pruning.sweep import sweep, trial_seed
    from sparse_circuits.tasks import get_task

    model, tok, _ = load(tiny_model_dir)
    cfg = PruneConfig(ablation="zero", steps=2, batch_size=2, eval_n=4, search_points=2)
    best = sweep(
        model, tok, get_task("pronoun"), cfg, n_trials=3, parallel=2, seed=7, progress=False, model_name="tiny"
    )
    trials = best.meta["sweep"]["trials"]
    assert [t["seed"] for t in trials] == [trial_seed(7, t["trial"]) for t in trials] == [700_000, 700_001, 700_002]


class Killed(Exception):
    """Stands for a kill (pytest treats a real KeyboardInterrupt as the user stopping the test run)."""


def test_sweep_resumes_after_a_kill_and_ends_as_an_uninterrupted_sweep(tiny_model_dir, tmp_path, monkeypatch):
    from sparse_circuits.model.inference import load
    from sparse_circuits.pruning import sweep as sweep_module
    from sparse_circuits.tasks import get_task

    model, tok, _ = load(tiny_model_dir)
    cfg = PruneConfig(ablation="zero", steps=2, batch_size=2, eval_n=4, search_points=2)
    task = get_task("pronoun")

    def run(**kw):
        return sweep_module.sweep(model, tok, task, cfg, n_trials=5, parallel=2, seed=3, progress=False, **kw)

    whole = run()  # three rounds: 2 + 2 + 1 trials, no checkpoint
    real_prune, calls, kill = sweep_module.prune, [], [True]

    def killed_in_round_2(*args, **kw):
        calls.append(len(kw["seeds"]))
        if len(calls) == 2 and kill:
            kill.clear()
            raise Killed  # the kill, after round 1 was checkpointed; once
        return real_prune(*args, **kw)

    monkeypatch.setattr(sweep_module, "prune", killed_in_round_2)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        run(checkpoint_dir=ckpt)
    assert len(json.loads((ckpt / sweep_module.STATE_FILE).read_text())["records"]) == 2
    calls.clear()
    resumed = run(checkpoint_dir=ckpt)
    assert calls == [2, 1]  # round 1 replayed from the checkpoint, rounds 2 and 3 pruned
    keys = ("trial", "k_coef", "lr", "seed", "nodes", "reached_target")
    strip = lambda c: [{k: t[k] for k in keys} for t in c.meta["sweep"]["trials"]]  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert resumed.meta["sweep"]["best_params"] == whole.meta["sweep"]["best_params"]
    assert torch.equal(resumed.nodes, whole.nodes)
    assert [p.name for p in ckpt.glob("best-*")] == [json.loads((ckpt / "sweep_state.json").read_text())["best_dir"]]
    # a finished checkpoint replays without pruning anything
    calls.clear()
    assert strip(run(checkpoint_dir=ckpt)) == strip(whole) and calls == []
    # another sweep's checkpoint is refused, naming what differs
    with pytest.raises(ValueError, match=r"another sweep \(differs in \['seed'\]\)"):
        sweep_module.sweep(model, tok, task, cfg, n_trials=5, parallel=2, seed=4, progress=False, checkpoint_dir=ckpt)


def test_tuned_size_records_prune_each_tuned_pair_once_as_one_cached_batch(swept, tiny_model_dir, tmp_path):
    from sparse_circuits.app.experiments import cached_batch
    from sparse_circuits.app.regime import run_seconds, tuned_size_records
    from sparse_circuits.model.inference import load

    root, _ = swept
    loaded = {"tiny": load(tiny_model_dir)}
    cache = tmp_path / "circuits"
    # pronoun has a tuned config, ioi has none: ioi is left out of all three results
    recs, used, secs = tuned_size_records(loaded, ["pronoun", "ioi"], "zero", [0, 1], {"steps": 2}, cache, root, False)
    assert [(r["task"], r["seed"]) for r in recs] == [("pronoun", 0), ("pronoun", 1)] and list(used) == ["tiny/pronoun"]
    assert used["tiny/pronoun"]["steps"] == 2 and secs["tiny/pronoun"] == run_seconds(recs[0]["circuit"]) > 0
    # the batch is the one cached_batch keeps: asked again with the same config and seeds, it comes from the cache
    cfg = tuned_prune_config("tiny", "pronoun", "zero", root=root, steps=2)
    circuits, cached = cached_batch(loaded["tiny"], cfg, [0, 1], "tiny", "pronoun", cache)
    assert cached and [c.n_nodes for c in circuits] == [r["nodes"] for r in recs]
    assert all(torch.equal(c.tau, r["circuit"].tau) for c, r in zip(circuits, recs))
