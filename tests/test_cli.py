import json

import pytest
import torch
from conftest import tiny_run
from sparse_circuits.app.cli import main
from sparse_circuits.core import storage


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_info_json(capsys, tiny_model_dir):
    info = run_json(capsys, "info", str(tiny_model_dir), "--json", "--val-batches", "1")
    for key in (
        "name",
        "d_model",
        "n_layer",
        "n_head",
        "l0_target",
        "nonzero_fraction",
        "n_params",
        "n_nonzero",
        "val_loss",
        "train_tokens",
    ):
        assert key in info, key
    assert info["d_model"] == 32 and info["n_head"] == 2 and info["l0_target"] == 0.5
    assert 0.4 < info["nonzero_fraction"] < 0.6 and info["val_loss"] > 0 and info["train_tokens"] == 8 * 4 * 16


def test_evaluate_json(capsys, tiny_model_dir):
    res = run_json(capsys, "evaluate", str(tiny_model_dir), "--task", "ioi", "--split", "val", "--n", "32", "--json")
    assert res["task"] == "ioi" and res["split"] == "val" and res["n"] == 32
    assert {"accuracy", "p_correct", "loss"} <= set(res)


def test_prune_json_and_saved_circuits(capsys, tiny_model_dir, tmp_path):
    res = run_json(
        capsys,
        "prune",
        str(tiny_model_dir),
        "--task",
        "pronoun",
        "--ablation",
        "zero",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--out",
        str(tmp_path / "c"),
        "--json",
    )
    assert res["task"] == "pronoun" and res["ablation"] == "zero" and res["total_nodes"] == 2 * 11 * 32
    assert [s["seed"] for s in res["seeds"]] == [0, 1]
    for s in res["seeds"]:
        assert {"nodes", "edges", "loss", "reached_target"} <= set(s)
    assert (tmp_path / "c" / "seed1" / "circuit.json").exists()


def test_sweep_json(capsys, tiny_model_dir, tmp_path):
    res = run_json(
        capsys,
        "sweep",
        str(tiny_model_dir),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--task",
        "pronoun",
        "--ablation",
        "zero",
        "--trials",
        "3",
        "--parallel",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--json",
    )
    assert res["n_trials"] == 3 and set(res["best_params"]) == {"k_coef", "lr"}
    state = json.loads((tmp_path / "ckpt" / "sweep_state.json").read_text())
    assert [t["trial"] for t in state["records"]] == [0, 1, 2]  # every round kept for a resume


def test_sample(capsys, tiny_model_dir):
    assert main(["sample", str(tiny_model_dir), "--prompt", "when mia went to the park,", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("when mia went to the park, ||")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["info", "/nonexistent/model"], "model directory not found"),
        (["evaluate", "MODEL", "--task", "pronouns"], "unknown task 'pronouns'"),
        (["train", "--config", "/nonexistent.yaml", "--out", "x"], "config file not found"),
    ],
)
def test_errors_are_clear(capsys, tiny_model_dir, argv, match):
    argv = [str(tiny_model_dir) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_python_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sparse_circuits", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "prune" in out.stdout


def test_prune_and_sweep_options_are_the_prune_config_fields():
    from dataclasses import asdict

    from sparse_circuits.app.cli import build_parser
    from sparse_circuits.core.config import given_arguments
    from sparse_circuits.pruning.pruner import PruneConfig

    parser = build_parser()
    args = parser.parse_args(["prune", "M", "--task", "pronoun", "--ablation", "mean", "--no-frozen-ln"])
    assert given_arguments(args, PruneConfig) == asdict(PruneConfig(ablation="mean"))
    options = ["--objective", "stochastic", "--filter-prompts", "--eval-split", "val"]
    args = parser.parse_args(["prune", "M", "--task", "ioi", "--ablation", "zero", *options])
    cfg = PruneConfig(**given_arguments(args, PruneConfig))
    assert (cfg.objective, cfg.filter_prompts, cfg.eval_split) == ("stochastic", True, "val")
    args = parser.parse_args(["sweep", "M", "--task", "pronoun", "--ablation", "zero"])
    assert not {"k_coef", "lr"} & set(given_arguments(args, PruneConfig))  # searched, not set
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "M", "--task", "pronoun", "--ablation", "average"])


def test_train_options_override_the_config_file(capsys, tmp_path):
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run(steps=50).to_dict()))
    out = tmp_path / "m"
    res = run_json(
        capsys, "train", "--config", str(config), "--out", str(out), "--steps", "2", "--quiet", "--device", "cpu"
    )
    assert res["finished"] and res["steps"] == 2
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["steps"] == 2 and saved["train"]["batch_size"] == 4  # the rest from the file


def test_export_html(capsys, tiny_model_dir, tmp_path):
    from conftest import random_circuit
    from sparse_circuits.model.inference import load

    model, _, _ = load(tiny_model_dir)
    circuit_dir, out = tmp_path / "circ", tmp_path / "out" / "c.html"
    random_circuit(model, 0.2, task="pronoun").save(circuit_dir, model)
    argv = ["export-html", str(circuit_dir), "--model", str(tiny_model_dir), "--out", str(out), "--n-prompts", "4"]
    assert main(argv) == 0 and out.exists() and str(out) in capsys.readouterr().out


# ------------------------------------------------------------------------- expected failures, one line each


def _fails_with_one_line(capsys, argv, match):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    return err


def test_cli_turns_expected_failures_into_one_line(capsys, tmp_path, tiny_model_dir):
    import yaml

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\nmodel: {d_model: 32\n")
    _fails_with_one_line(capsys, ["train", "--config", bad_yaml, "--out", tmp_path / "m"], "bad.yaml: not valid YAML")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run(steps=8).to_dict()))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _fails_with_one_line(capsys, ["train", "--config", config, "--out", a_file], "a_file is a file")
    argv = ["train", "--config", config, "--out", tiny_model_dir, "--device", "cpu"]
    _fails_with_one_line(capsys, argv, "already holds a trained model")
    _fails_with_one_line(capsys, [*argv[:5], "--steps", "0"], "TrainConfig.steps must be an integer >= 1")


def test_cli_names_the_path_of_a_permission_error(capsys, tmp_path, monkeypatch):
    import yaml
    from sparse_circuits.app import cli

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run().to_dict()))
    monkeypatch.setattr(cli, "Trainer", denied)
    _fails_with_one_line(capsys, ["train", "--config", config, "--out", tmp_path / "m"], "Permission denied")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["train", "--config", config, "--out", tmp_path / "m", "--device", "cuda"]
    _fails_with_one_line(capsys, argv, "--device cuda: no CUDA GPU is available")


def test_prune_out_is_checked_before_pruning(capsys, tmp_path, tiny_model_dir, monkeypatch):
    from sparse_circuits.app import cli

    def no_compute(*args, **kwargs):
        raise AssertionError("--out should be refused before the model is loaded")

    monkeypatch.setattr(cli, "load", no_compute)
    used = tmp_path / "used"
    (used / "seed0").mkdir(parents=True)
    argv = ["prune", tiny_model_dir, "--task", "pronoun", "--ablation", "zero"]
    _fails_with_one_line(capsys, [*argv, "--out", used], "already holds ['seed0']")
    (tmp_path / "f").write_text("x")
    _fails_with_one_line(capsys, [*argv, "--out", tmp_path / "f"], "is a file")
    with storage.output_lock(tmp_path / "busy"):
        _fails_with_one_line(capsys, [*argv, "--out", tmp_path / "busy"], "in use by another process")


@pytest.mark.parametrize("argv", [["--n", "-1"], ["--n", "2.5"], ["--max-new-tokens", "0"]])
def test_cli_counts_must_be_positive_integers(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "M", "--prompt", "x", *argv])
    assert exit_.value.code == 2
    assert f"argument {argv[0]}: must be an integer >= 1" in capsys.readouterr().err
