import json

import pytest
from sparse_circuits.app.cli import main


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_info_json(capsys, tiny_model_dir):
    info = run_json(capsys, "info", str(tiny_model_dir), "--json", "--val-batches", "1")
    for key in ("name", "d_model", "n_layer", "n_head", "l0_target", "nonzero_fraction", "n_params", "n_nonzero",
                "val_loss", "train_tokens"):  # fmt: skip
        assert key in info, key
    assert info["d_model"] == 32 and info["n_head"] == 2 and info["l0_target"] == 0.5
    assert 0.4 < info["nonzero_fraction"] < 0.6 and info["val_loss"] > 0 and info["train_tokens"] == 8 * 4 * 16


def test_evaluate_json(capsys, tiny_model_dir):
    res = run_json(capsys, "evaluate", str(tiny_model_dir), "--task", "ioi", "--split", "val", "--n", "32", "--json")
    assert res["task"] == "ioi" and res["split"] == "val" and res["n"] == 32
    assert {"accuracy", "p_correct", "loss"} <= set(res)


def test_prune_json_and_saved_circuits(capsys, tiny_model_dir, tmp_path):
    res = run_json(capsys, "prune", str(tiny_model_dir), "--task", "pronoun", "--ablation", "zero", "--seeds", "2",
                   "--steps", "3", "--batch-size", "4", "--out", str(tmp_path / "c"), "--json")  # fmt: skip
    assert res["task"] == "pronoun" and res["ablation"] == "zero" and res["total_nodes"] == 2 * 11 * 32
    assert [s["seed"] for s in res["seeds"]] == [0, 1]
    for s in res["seeds"]:
        assert {"nodes", "edges", "loss", "reached_target"} <= set(s)
    assert (tmp_path / "c" / "seed1" / "circuit.json").exists()


def test_sweep_json(capsys, tiny_model_dir):
    res = run_json(capsys, "sweep", str(tiny_model_dir), "--task", "pronoun", "--ablation", "zero", "--trials", "3",
                   "--parallel", "2", "--steps", "2", "--batch-size", "4", "--json")  # fmt: skip
    assert res["n_trials"] == 3 and set(res["best_params"]) == {"k_coef", "lr"}


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
