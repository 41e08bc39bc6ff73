import json

import pytest
import torch
from conftest import tiny_run
from sparse_circuits.model import checkpoint as ckpt
from sparse_circuits.training.sparsity import n_keep
from sparse_circuits.training.trainer import RunConfig, TrainConfig, Trainer


def _files(d):
    return (d / "model.safetensors").read_bytes(), [
        json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()
    ]


def _strip_time(metrics):
    return [{k: v for k, v in m.items() if k != "time_s"} for m in metrics]


def test_training_is_deterministic_and_sparse(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(tiny_run(), a, "cpu").run(progress=False)
    Trainer(tiny_run(), b, "cpu").run(progress=False)
    wa, ma = _files(a)
    wb, mb = _files(b)
    assert wa == wb and _strip_time(ma) == _strip_time(mb)
    model, config = ckpt.load_model(a)
    for name, (w, axis) in model.sparsifiable_weights().items():
        n_neurons = {None: 0, "row": w.shape[0], "col": w.shape[1]}[axis]
        assert int((w != 0).sum()) <= n_keep(w.numel(), 0.5, n_neurons), name
    assert 0.45 < config["results"]["nonzero_fraction"] <= 0.6
    assert not (a / "checkpoint").exists()  # removed once the model files are written


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, monkeypatch):
    full, killed = tmp_path / "full", tmp_path / "killed"
    Trainer(tiny_run(), full, "cpu").run(progress=False)

    trainer = Trainer(tiny_run(), killed, "cpu")
    real_step = trainer.train_step

    def dying_step(step):
        if step == 3:  # after the checkpoint at step 2 and a logged step 3
            raise KeyboardInterrupt("simulated kill")
        return real_step(step)

    monkeypatch.setattr(trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(progress=False)
    assert (killed / "checkpoint" / "state.json").exists()
    monkeypatch.undo()
    Trainer(tiny_run(), killed, "cpu").run(progress=False)  # a fresh process would do exactly this
    wf, mf = _files(full)
    wk, mk = _files(killed)
    assert wf == wk
    assert _strip_time(mf) == _strip_time(mk)


def test_resume_from_old_checkpoint_after_interrupted_swap(tmp_path):
    out = tmp_path / "m"
    t = Trainer(tiny_run(), out, "cpu")
    t.run(stop_after=2, progress=False)
    (out / "checkpoint").rename(out / "checkpoint.old")  # killed between the two renames
    t2 = Trainer(tiny_run(), out, "cpu")
    assert t2.load_checkpoint() and t2.step == 2


def test_dense_baseline_stays_dense(tmp_path):
    run = tiny_run(l0=1.0)
    run.model["abstopk_sites"] = []
    Trainer(run, tmp_path / "d", "cpu").run(progress=False)
    model, config = ckpt.load_model(tmp_path / "d")
    assert config["results"]["nonzero_fraction"] > 0.99
    assert model.cfg.abstopk_sites == ()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(l0_schedule="exponentail"), "unknown schedule 'exponentail'"),
        (dict(l0_target=0.0), "l0_target"),
        (dict(anneal_start=0.6, anneal_end=0.5), "anneal_start"),
        (dict(steps=0), "steps"),
    ],
)
def test_train_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_run_config_file_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nmodel: {d_model: 32}\ntrain: {stepz: 3}\n")
    with pytest.raises(ValueError, match=r"c.yaml: unknown train config fields \['stepz'\]"):
        RunConfig.load(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        RunConfig.load(tmp_path / "nope.yaml")
    p.write_text("name: x\nmodel: {d_model: 32, vocab_size: 5}\n")
    with pytest.raises(ValueError, match="vocab_size comes from the tokenizer"):
        RunConfig.load(p)


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert configs
    for c in configs:
        run = RunConfig.load(c)
        assert run.name == c.stem


def test_exponential_schedule_reaches_target(tmp_path):
    t = Trainer(tiny_run(steps=10, l0=0.25, l0_schedule="exponential"), tmp_path / "e", "cpu")
    assert t.l0(0) == 1.0 and t.l0(9) == pytest.approx(0.25)
    assert t.lr(9) > 0 and torch.isfinite(torch.tensor(t.lr(5)))


def test_training_never_overwrites_a_finished_model(tmp_path):
    Trainer(tiny_run(steps=2), tmp_path / "m", "cpu").run(progress=False)
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        Trainer(tiny_run(steps=2), tmp_path / "m", "cpu").run(progress=False)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before


def test_sparse_training_equals_dense_training(tmp_path):
    """CSR forward and input gradients (dense weight gradients) train the same model as dense matmuls."""
    runs = {}
    for mode in ("dense", "sparse"):
        trainer = Trainer(tiny_run(l0=0.25), tmp_path / mode, "cpu", execution=mode)
        assert bool(trainer.execution.swapped) == (mode == "sparse")
        trainer.run(progress=False)
        runs[mode] = ckpt.load_model(tmp_path / mode)[0].state_dict(), _strip_time(_files(tmp_path / mode)[1])
    (w_dense, m_dense), (w_sparse, m_sparse) = runs["dense"], runs["sparse"]
    for name, w in w_dense.items():
        torch.testing.assert_close(w_sparse[name], w, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(m_dense, m_sparse, strict=True):
        assert a.keys() == b.keys()
        for key in ("loss", "val_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)


def test_sparse_training_resumes_bitwise(tmp_path, monkeypatch):
    full, killed = tmp_path / "full", tmp_path / "killed"
    Trainer(tiny_run(l0=0.25), full, "cpu", execution="sparse").run(progress=False)
    trainer = Trainer(tiny_run(l0=0.25), killed, "cpu", execution="sparse")
    trainer.run(stop_after=3, progress=False)  # a checkpoint at step 3, as after a kill
    Trainer(tiny_run(l0=0.25), killed, "cpu", execution="sparse").run(progress=False)
    assert _files(full)[0] == _files(killed)[0]


def test_auto_execution_keeps_narrow_models_dense(tmp_path):
    assert not Trainer(tiny_run(), tmp_path, "cpu").execution.swapped
