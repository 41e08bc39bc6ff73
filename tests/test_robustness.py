"""Bad input never hurts the user: resumes under a changed config, two writers, junk numbers and hostile files
are refused with a message naming the thing at fault."""

import json
import math
import os
import stat

import pytest
import torch
from conftest import tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from sparse_circuits.core import storage
from sparse_circuits.core.storage import CheckpointError, OutputBusyError
from sparse_circuits.model import checkpoint as ckpt
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.model.inference import load, sample
from sparse_circuits.pruning.pruner import PruneConfig
from sparse_circuits.training.sparsity import project_
from sparse_circuits.training.trainer import TrainConfig, Trainer

# ------------------------------------------------------------------------------------ training resume


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(lr=1e-2), "train.lr: 0.003 -> 0.01"),
        (dict(l0=0.25), "train.l0_target: 0.5 -> 0.25"),
        (dict(steps=8), "train.steps: 6 -> 8"),
    ],
)
def test_resume_under_a_changed_config_is_refused(tmp_path, change, named):
    Trainer(tiny_run(), tmp_path / "m", "cpu").run(stop_after=2, progress=False)
    state_before = (tmp_path / "m" / "checkpoint" / "state.json").read_bytes()
    with pytest.raises(CheckpointError, match="another run config") as err:
        Trainer(tiny_run(**change), tmp_path / "m", "cpu").run(progress=False)
    assert named in str(err.value) and "state.json" in str(err.value)
    assert (tmp_path / "m" / "checkpoint" / "state.json").read_bytes() == state_before  # nothing written
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_resume_under_a_changed_shape_is_refused(tmp_path):
    Trainer(tiny_run(), tmp_path / "m", "cpu").run(stop_after=2, progress=False)
    run = tiny_run()
    run.model["d_model"] = 16
    with pytest.raises(CheckpointError, match="model.d_model: 32 -> 16"):
        Trainer(run, tmp_path / "m", "cpu").run(progress=False)


def test_checkpoint_beyond_the_steps_is_refused_even_without_a_recorded_config(tmp_path):
    """A checkpoint of an older version records no config: its step is still checked against ``steps``."""
    Trainer(tiny_run(), tmp_path / "m", "cpu").run(stop_after=4, progress=False)
    state_file = tmp_path / "m" / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["run"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="checkpoint is at step 4, beyond steps=3"):
        Trainer(tiny_run(steps=3), tmp_path / "m", "cpu").run(progress=False)
    assert not (tmp_path / "m" / "model.safetensors").exists()  # never an untrained model marked finished


def test_resume_with_the_same_config_still_works(tmp_path):
    Trainer(tiny_run(), tmp_path / "m", "cpu").run(stop_after=2, progress=False)
    res = Trainer(tiny_run(), tmp_path / "m", "cpu").run(progress=False)
    assert res["finished"] and res["steps"] == 6


# ------------------------------------------------------------------------------------ one writer


def test_a_busy_output_directory_is_refused_before_any_compute(tmp_path, monkeypatch):
    import sparse_circuits.training.trainer as trainer_module

    def no_compute(*args, **kwargs):
        raise AssertionError("the busy directory should be refused before building anything")

    out = tmp_path / "m"
    with storage.output_lock(out):
        monkeypatch.setattr(trainer_module, "make_tokenizer", no_compute)
        with pytest.raises(OutputBusyError, match="in use by another process"):
            Trainer(tiny_run(), out, "cpu")
    monkeypatch.undo()
    trainer = Trainer(tiny_run(), out, "cpu")  # free again once the first writer is done
    with storage.output_lock(out), pytest.raises(OutputBusyError):
        trainer.run(progress=False)


def test_output_lock_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"), storage.output_lock(tmp_path / "f"):
        pass


def test_atomic_writes_use_unique_names_normal_permissions_and_clean_up(tmp_path, monkeypatch):
    storage.write_json(tmp_path / "a.json", {"x": 1})
    storage.save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(3, 3)})
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.json", "t.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        storage.save_tensors(tmp_path / "t.safetensors", {"w": torch.ones(3, 3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "t.safetensors"]  # no temporary left behind
    assert torch.equal(storage.load_tensors(tmp_path / "t.safetensors")["w"], torch.zeros(3, 3))


# ------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(batch_size=2.5), "TrainConfig.batch_size must be an integer >= 1, got 2.5"),
        (dict(steps=3.5), "TrainConfig.steps must be an integer >= 1"),
        (dict(steps=True), "TrainConfig.steps"),
        (dict(lr=0.0), "TrainConfig.lr must be a finite number > 0"),
        (dict(lr=math.nan), "TrainConfig.lr"),
        (dict(lr="3e-3"), "TrainConfig.lr"),
        (dict(warmup_frac=1.5), "TrainConfig.warmup_frac must be a finite number in \\[0, 1\\]"),
        (dict(weight_decay=-1.0), "TrainConfig.weight_decay"),
        (dict(min_per_neuron=-1), "TrainConfig.min_per_neuron must be an integer >= 0"),
    ],
)
def test_train_numbers_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lr=-1e-3), "PruneConfig.lr must be a finite number > 0"),
        (dict(lr=math.nan), "PruneConfig.lr"),
        (dict(temperature=math.nan), "PruneConfig.temperature"),
        (dict(target_loss=math.inf), "PruneConfig.target_loss"),
        (dict(batch_size=2.5), "PruneConfig.batch_size must be an integer >= 1"),
        (dict(k_coef=math.nan), "PruneConfig.k_coef"),
        (dict(init_mean=math.nan), "PruneConfig.init_mean must be finite"),
    ],
)
def test_prune_numbers_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        PruneConfig(ablation="zero", **kw)


def test_sample_refuses_a_nan_temperature():
    model = SparseGPT(ModelConfig(vocab_size=40, d_model=32))
    with pytest.raises(ValueError, match="temperature >= 0"):
        sample(model, None, "x", temperature=math.nan)


# ------------------------------------------------------------------------------------ loading


def _saved_sparse_model(tmp_path):
    m = SparseGPT(ModelConfig(vocab_size=40, d_model=32))
    for w, axis in m.sparsifiable_weights().values():
        project_(w.data, 0.1, axis)
    ckpt.save_model(m, tmp_path, {"name": "t"})
    path = tmp_path / ckpt.WEIGHTS_FILE
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return path, load_file(str(path)), meta


def _rewrite(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)


def test_sparse_indices_out_of_range_or_negative_are_refused(tmp_path):
    path, raw, meta = _saved_sparse_model(tmp_path)
    key = next(k for k in raw if k.endswith("::indices"))
    for bad_index, match in ((10**8, "indices outside"), (-1, "indices outside")):
        tensors = dict(raw)
        tensors[key] = raw[key].clone()
        tensors[key][0] = bad_index
        _rewrite(path, tensors, meta)
        with pytest.raises(CheckpointError, match=match):
            ckpt.load_model(tmp_path)


def test_a_huge_recorded_shape_is_refused_before_allocating(tmp_path, monkeypatch):
    path, raw, meta = _saved_sparse_model(tmp_path)
    shapes = json.loads(meta["sparse_shapes"])
    name = next(iter(shapes))
    shapes[name] = [200_000, 100_000]  # 80 GB of float32 from a file of a few kilobytes
    _rewrite(path, raw, {"sparse_shapes": json.dumps(shapes)})
    real_zeros = torch.zeros

    def bounded_zeros(*size, **kw):
        assert math.prod(size[0] if isinstance(size[0], tuple | list) else size) < 10**8, "allocated a huge tensor"
        return real_zeros(*size, **kw)

    monkeypatch.setattr(torch, "zeros", bounded_zeros)
    with pytest.raises(CheckpointError, match=f"{name} has shape \\(200000, 100000\\), expected"):
        ckpt.load_model(tmp_path)
    shapes[name] = [-4, 8]
    _rewrite(path, raw, {"sparse_shapes": json.dumps(shapes)})
    with pytest.raises(CheckpointError, match="invalid shape"):
        ckpt.load_model(tmp_path)


def test_nan_or_inf_weights_are_refused(tmp_path):
    path, raw, meta = _saved_sparse_model(tmp_path)
    dense_key = next(k for k in raw if "::" not in k and raw[k].is_floating_point())
    for bad in (math.nan, math.inf):
        tensors = dict(raw)
        tensors[dense_key] = raw[dense_key].clone().flatten()
        tensors[dense_key][0] = bad
        tensors[dense_key] = tensors[dense_key].view(raw[dense_key].shape)
        _rewrite(path, tensors, meta)
        with pytest.raises(CheckpointError, match=f"{dense_key}.*NaN or infinite"):
            ckpt.load_model(tmp_path)


def test_a_swapped_tokenizer_is_detected(tmp_path, tiny_model_dir):
    import shutil

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / ckpt.CONFIG_FILE).read_text())
    assert config["tokenizer_sha256"] == ckpt.tokenizer_sha256(model_dir)
    load(model_dir)  # the tokenizer it was saved with loads
    tok = json.loads((model_dir / ckpt.TOKENIZER_FILE).read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[10:12]  # two ordinary words (the special tokens come first)
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same size, two words swapped: only the hash can tell
    (model_dir / ckpt.TOKENIZER_FILE).write_text(json.dumps(tok))
    with pytest.raises(CheckpointError, match="tokenizer.json is not the tokenizer this model was trained with"):
        load(model_dir)
    del config["tokenizer_sha256"]  # a directory saved before the hash existed still loads
    (model_dir / ckpt.CONFIG_FILE).write_text(json.dumps(config))
    load(model_dir)


# ------------------------------------------------------------------------------------ task specs


def _spec(**changes):
    spec = {
        "name": "t",
        "template": "when {name} {action},",
        "slots": {"name": ["leo", "mia"], "action": ["ran", "sat", "hid"]},
        "target": {"slot": "name", "map": {"leo": "he", "mia": "she"}},
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(template="when {} {name} {action},"), "template field {} is not a slot name"),
        (dict(template="when {0} {name} {action},"), "template field {0} is not a slot name"),
        (dict(template="when {name {action},"), "template 'when {name {action},'"),
        (dict(template="when {name!r} {action},"), "template field {name} is not a slot name"),
        (dict(slots={"name": ["leo", "mia"], "action": [1, 2, 3]}), "slots.action values must be non-empty strings"),
        (dict(slots=["name", "action"]), "slots must be a non-empty mapping"),
        (dict(slots={"name": ["leo", "mia"], "action": "ran sat hid"}), "slots.action must be a non-empty list"),
        (dict(incorrect={"slot": "name", "map": {"leo": "he", "mia": "she"}}), "incorrect gives the same token"),
        (dict(split_slots="action"), "split_slots must be a list of slots, got 'action'"),
        (dict(distinct="name"), "distinct must be a list of lists"),
    ],
)
def test_malformed_task_specs_are_refused(changes, match):
    from sparse_circuits.tasks.spec import TaskSpec, TaskSpecError

    with pytest.raises(TaskSpecError, match=match.replace("{", "\\{").replace("(", "\\(")):
        TaskSpec.from_dict(_spec(**changes))


def test_literal_braces_and_partial_collisions():
    from sparse_circuits.tasks.prompts import Task
    from sparse_circuits.tasks.spec import TaskSpec

    spec = TaskSpec.from_dict(_spec(template="{{quote}} {name} {action},"))
    assert Task(spec).prompt_text({"name": "leo", "action": "ran"}) == "{quote} leo ran,"
    with pytest.warns(UserWarning, match="incorrect equals target for 1 of 2 slot combinations"):
        TaskSpec.from_dict(_spec(incorrect={"slot": "name", "map": {"leo": "she", "mia": "she"}}))


def test_a_split_slot_with_too_few_values_warns_that_test_is_not_held_out():
    from sparse_circuits.tasks.prompts import Task
    from sparse_circuits.tasks.spec import TaskSpec

    with pytest.warns(UserWarning, match="split slot 'action' has 2 values .* test prompts are not held out"):
        spec = TaskSpec.from_dict(_spec(slots={"name": ["leo", "mia"], "action": ["ran", "sat"]}))
    values = Task(spec).split_values
    assert values["train"]["action"] == values["test"]["action"]  # what the warning says


def test_distinct_slots_do_not_count_as_collisions():
    """name_1 and name_2 never take the same value, so target (name_2) and incorrect (name_1) always differ."""
    import warnings

    from sparse_circuits.tasks.spec import TaskSpec

    names = {"leo": "leo", "mia": "mia", "ada": "ada"}
    spec = _spec(
        template="{name_1} and {name_2} {action},",
        slots={"name_1": list(names), "name_2": list(names), "action": ["ran", "sat", "hid"]},
        target={"slot": "name_2", "map": names},
        incorrect={"slot": "name_1", "map": names},
        distinct=[["name_1", "name_2"]],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TaskSpec.from_dict(spec)


# ------------------------------------------------------------------------------------ property-based

_words = st.sampled_from(["leo", "mia", "ada", "ran", "sat", "he", "she", "", " ", "two words"])
_anything = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True), _words, st.lists(_words, max_size=3))
_slot_values = st.one_of(st.lists(st.one_of(_words, st.integers(0, 3)), max_size=4), _words, st.none())
_slot_names = st.sampled_from(["name", "action", "x", "0", ""])
_rule = st.one_of(
    st.fixed_dictionaries({"slot": _slot_names, "map": st.dictionaries(_words, _words, max_size=4)}),
    st.fixed_dictionaries({"constant": _words}),
    _anything,
)
_template_parts = st.sampled_from(["when", "{name}", "{action}", "{}", "{x", "}", "{{", "{0}", ","])
# each field: often a plausible value, sometimes junk; a spec is a valid one with one or several fields replaced
_field_values = {
    "template": st.one_of(st.lists(_template_parts, max_size=5).map(" ".join), _anything),
    "slots": st.one_of(
        st.fixed_dictionaries({"name": st.just(["leo", "mia"]), "action": _slot_values}),
        st.dictionaries(_slot_names, _slot_values, max_size=3),
        _anything,
    ),
    "target": _rule,
    "incorrect": _rule,
    "loss": st.sampled_from(["full", "binary", "hinge"]),
    "split_slots": st.one_of(st.lists(_slot_names, max_size=2), _anything),
    "distinct": st.one_of(st.lists(st.lists(_slot_names, max_size=2), max_size=2), _anything),
}
_one_field = st.sampled_from(sorted(_field_values)).flatmap(lambda k: _field_values[k].map(lambda v: {k: v}))
_spec_dicts = st.one_of(_one_field, st.fixed_dictionaries({}, optional=_field_values)).map(
    lambda changes: _spec(name="p", **changes)
)


@pytest.mark.filterwarnings("ignore:task 'p'")
@settings(max_examples=300, deadline=None)
@given(_spec_dicts)
def test_any_task_spec_works_or_fails_with_a_task_spec_error(spec_dict):
    from sparse_circuits.tasks.prompts import SPLITS, Task
    from sparse_circuits.tasks.spec import TaskSpec, TaskSpecError

    try:
        spec = TaskSpec.from_dict(spec_dict)
    except TaskSpecError:
        return
    task = Task(spec)
    for split in SPLITS:  # an accepted spec yields prompts and answers without a traceback
        for assignment in task.assignments(split)[:5]:
            assert isinstance(task.prompt_text(assignment), str)
            assert spec.correct_of(assignment) != spec.incorrect_of(assignment) or spec.incorrect is not None


_option_values = st.one_of(
    st.integers(-2, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["2.5", "nan", "-inf", "1e-3", "", "abc", "0x10"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["--steps", "--batch-size", "--lr", "--warmup-frac", "--beta2"]), _option_values),
        max_size=3,
    )
)
def test_any_train_numbers_either_parse_into_a_valid_config_or_fail_clearly(options):
    import dataclasses

    from sparse_circuits.app.cli import build_parser
    from sparse_circuits.core.config import given_arguments

    argv = ["train", "--config", "c.yaml", "--out", "o", *[x for pair in options for x in pair]]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's own one-line usage error
        assert exit_.code == 2
        return
    try:
        cfg = dataclasses.replace(TrainConfig(), **given_arguments(args, TrainConfig))
    except ValueError as e:
        assert str(e).startswith("TrainConfig"), e
        return
    assert cfg.steps >= 1 and cfg.batch_size >= 1 and math.isfinite(cfg.lr) and cfg.lr > 0
    assert 0 <= cfg.warmup_frac <= 1 and 0 <= cfg.beta2 <= 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["--lr", "--temperature", "--target-loss", "--k-coef", "--batch-size"]), _option_values
        ),
        max_size=3,
    )
)
def test_any_prune_numbers_either_build_a_valid_config_or_fail_clearly(options):
    from sparse_circuits.app.cli import build_parser
    from sparse_circuits.core.config import given_arguments

    argv = ["prune", "M", "--task", "pronoun", "--ablation", "zero", *[x for pair in options for x in pair]]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 2
        return
    try:
        cfg = PruneConfig(**given_arguments(args, PruneConfig))
    except ValueError as e:
        assert str(e).startswith("PruneConfig"), e
        return
    for value in (cfg.lr, cfg.temperature, cfg.target_loss):
        assert math.isfinite(value) and value > 0
    assert math.isfinite(cfg.k_coef) and cfg.k_coef >= 0 and cfg.batch_size >= 1
