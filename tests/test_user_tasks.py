"""User tasks declared in spec files: any file path works as ``--task``, a saved circuit records its task's
spec, and every command (export-html included) works on it without the task being registered."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from sparse_circuits.app.cli import main
from sparse_circuits.circuits.circuit import Circuit, task_record
from sparse_circuits.model.inference import load
from sparse_circuits.tasks import Task, TaskSpec, TaskSpecError, get_task, task_names

SPEC = {
    "name": "object_pronoun",
    "template": "when {name} {action}, mom hugged",
    "slots": {"name": ["leo", "alex", "mia", "lily"], "action": ["ran home", "went to the park", "was sad", "fell"]},
    "target": {"slot": "name", "map": {"leo": "him", "alex": "him", "mia": "her", "lily": "her"}},
    "loss": "binary",
}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "object_pronoun.task"  # any file name: the suffix does not decide
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_a_spec_file_of_any_name_is_a_task(spec_file):
    task = get_task(str(spec_file))
    assert task.spec == TaskSpec.from_dict(SPEC) and task.loss == "binary"
    assert get_task(spec_file).spec == task.spec  # a Path works too
    assert "object_pronoun" not in task_names()  # reading a file registers nothing


def test_prune_save_and_export_html_of_a_yaml_task(capsys, tiny_model_dir, spec_file, tmp_path):
    out = tmp_path / "circuits"
    prune_argv = [
        "prune",
        str(tiny_model_dir),
        "--task",
        str(spec_file),
        "--ablation",
        "zero",
        "--steps",
        "3",
        "--batch-size",
        "4",
    ]
    assert main([*prune_argv, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["task"] == "object_pronoun"

    circuit = Circuit.load(out / "seed0")
    assert circuit.meta["task"] == "object_pronoun" and circuit.task().spec == TaskSpec.from_dict(SPEC)
    assert circuit.at_count(5).task().spec == circuit.task().spec  # smaller budgets keep the task
    _, tok, _ = load(tiny_model_dir)
    shown = circuit.task().data("test", tok, 4).texts
    assert shown == get_task(str(spec_file)).data("test", tok, 4).texts

    spec_file.unlink()  # the circuit alone must be enough
    page = tmp_path / "c.html"
    argv = ["export-html", str(out / "seed0"), "--model", str(tiny_model_dir), "--out", str(page), "--n-prompts", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    html = page.read_text()
    assert "circuit: object_pronoun" in html  # the page is about the task, and shows its prompts' last words
    assert len(re.findall(r">mom</span><span[^>]*>hugged</span></td>", html)) >= len(shown)


def test_builtin_tasks_round_trip_and_constrained_ones_go_by_name():
    pronoun = task_record(get_task("pronoun"))
    assert TaskSpec.from_dict(json.loads(json.dumps(pronoun["task_spec"]))) == get_task("pronoun").spec
    ioi = task_record(get_task("ioi"))  # its gender relation is Python: found again by name
    assert ioi == {"task": "ioi"}
    circuit = Circuit(torch.ones(3, dtype=torch.bool), torch.ones(3), meta=ioi)
    assert circuit.task().spec.constraint is not None and circuit.task().name == "ioi"
    with pytest.raises(ValueError, match="records no task"):
        Circuit(torch.ones(3, dtype=torch.bool), torch.ones(3)).task()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"name: [unclosed\n", "not a valid task spec"),
        (b"\xff\xfe\x00binary", "not a valid task spec"),
        (b"just a sentence\n", "task spec"),
        (yaml.safe_dump({**SPEC, "loss": "hinge"}).encode(), "unknown loss 'hinge'"),
    ],
)
def test_a_file_that_is_no_spec_gets_a_clear_error(capsys, tiny_model_dir, tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(TaskSpecError, match=match) as e:
        get_task(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert main(["evaluate", str(tiny_model_dir), "--task", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "error" in err


def test_a_directory_or_missing_file_is_named(tmp_path):
    with pytest.raises(TaskSpecError, match="not a file"):
        get_task(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        get_task(str(tmp_path / "missing.yaml"))
    with pytest.raises(KeyError, match="unknown task 'pronouns'"):
        get_task("pronouns")


def test_the_inspector_shows_a_saved_user_task_circuit(tiny_model_dir, spec_file, tmp_path):
    from conftest import random_circuit
    from sparse_circuits.viz.widgets import CircuitInspector

    model, tok, _ = load(tiny_model_dir)
    random_circuit(model, 0.2, **task_record(get_task(str(spec_file)))).save(tmp_path / "c", model)
    spec_file.unlink()
    w = CircuitInspector(
        {"tiny": (model, tok)},
        {"c": Circuit.load(tmp_path / "c")},
        n_prompts=3,
        snippet_batches=1,
        snippet_batch_size=2,
    )
    assert w.task.value == "object_pronoun"
    assert w.view.data.texts == Task(TaskSpec.from_dict(SPEC)).data("test", tok, 3).texts


# ---- docs/tasks.md: its field reference and word lists are generated here, so they cannot drift from the code

WORD_LISTS = {  # key in the doc's YAML block -> (constant in data/words.py, what it is)
    "male_task_names": ("TASK_MALE_NAMES", "the male names the corpus uses most; the built-in tasks use these"),
    "female_task_names": ("TASK_FEMALE_NAMES", "the female names the corpus uses most"),
    "male_names": ("MALE_NAMES", "every male name in the corpus (the task names first)"),
    "female_names": ("FEMALE_NAMES", "every female name in the corpus"),
    "pronoun_actions": ("PRONOUN_ACTIONS", "past-tense actions of one character, as in 'when {name} {action},'"),
    "ioi_situations": ("IOI_SITUATIONS", "where or how name_1 is, as in 'when {name_1} {situation},'"),
    "ioi_verbs": ("IOI_VERBS", "verbs that take name_1 as object, as in '{name_2} {verb} him'"),
}


def field_reference() -> str:
    """The TaskSpec field table: every field, its default, and the docstring written under it in spec.py."""
    import dataclasses

    from sparse_circuits.core.config import field_docs

    docs, rows = field_docs(TaskSpec), ["| field | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(TaskSpec):
        if f.default is not dataclasses.MISSING:
            default = f"`{json.dumps(f.default)}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{json.dumps(f.default_factory())}`"
        else:
            default = "required"
        rows.append(f"| `{f.name}` | {default} | {docs[f.name].replace('|', '/')} |")
    return "\n".join(rows)


def word_list_block() -> str:
    """The corpus word lists as one YAML block whose entries paste into a spec's ``slots``."""
    import textwrap

    from sparse_circuits.data import words

    lines = ["```yaml"]
    for key, (constant, what) in WORD_LISTS.items():
        lines.append(f"# {constant}: {what}")
        flow = f"{key}: [{', '.join(getattr(words, constant))}]"
        lines += textwrap.wrap(flow, width=110, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join([*lines, "```"])


@pytest.mark.parametrize("section", [field_reference, word_list_block])
def test_docs_tasks_md_matches_the_code(section):
    expected = section()
    doc = (Path(__file__).parents[1] / "docs" / "tasks.md").read_text()
    assert expected in doc, f"docs/tasks.md is out of date; its section should read:\n{expected}"


def test_the_documented_word_lists_are_the_corpus_lists():
    from sparse_circuits.data import words

    block = word_list_block().removeprefix("```yaml\n").removesuffix("\n```")
    parsed = yaml.safe_load(block)
    assert parsed == {key: list(getattr(words, constant)) for key, (constant, _) in WORD_LISTS.items()}
