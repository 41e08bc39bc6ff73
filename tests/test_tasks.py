import pytest
import torch
from sparse_circuits.data.tokenizer import build_tokenizer
from sparse_circuits.data.words import gender_of
from sparse_circuits.tasks import (
    SPLITS,
    TaskSpec,
    TaskSpecError,
    evaluate,
    filter_prompts,
    get_task,
    per_example_loss,
    register_task,
    task_names,
)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_every_builtin_task_builds_on_every_split(tok):
    for name in task_names():
        task = get_task(name)
        for split in SPLITS:
            data = task.data(split, tok, 16)
            assert len(data) > 0
            # the answer position holds the prompt's last token; <eos> leads every row
            assert (data.tokens[:, 0] == tok.token_to_id("<eos>")).all()
            assert (data.correct != data.incorrect).all()


def test_template_splits_are_disjoint_and_shared_within_a_family():
    for family, slot in (("pronoun", "action"), ("ioi", "situation"), ("questions", "sentence")):
        task = get_task(family)
        parts = [set(task.split_values[s][slot]) for s in SPLITS]
        assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert get_task("ioi").split_values == get_task("ioi_same").split_values
    assert get_task("pronoun").split_values == get_task("nonsense").split_values


def test_targets_follow_the_rules():
    g = gender_of
    for a in get_task("pronoun").assignments("test"):
        assert get_task("pronoun").spec.correct_of(a) == ("he" if g(a["name"]) == "male" else "she")
    for a in get_task("nonsense").assignments("test"):
        assert get_task("nonsense").spec.correct_of(a) == ("is" if g(a["name"]) == "male" else "when")
    ioi, same = get_task("ioi"), get_task("ioi_same")
    for a in ioi.assignments("test")[:500]:
        assert g(a["name_1"]) != g(a["name_2"])
        assert ioi.spec.correct_of(a) == ("him" if g(a["name_1"]) == "male" else "her")
    for a in same.assignments("test")[:500]:
        assert g(a["name_1"]) == g(a["name_2"]) and a["name_1"] != a["name_2"]
    q = get_task("questions")
    labels = {q.spec.correct_of(a) for a in q.assignments("train")}
    assert labels == {"?", "."}
    assert get_task("pronoun_constant").spec.correct_of(get_task("pronoun").assignments("test")[0]) == "he"


def test_binary_and_full_losses():
    from sparse_circuits.tasks import TaskData

    logits = torch.randn(5, 11)
    data = TaskData(
        torch.zeros(5, 2, dtype=torch.long),
        torch.ones(5, dtype=torch.long),
        torch.tensor([1, 2, 3, 4, 5]),
        torch.tensor([6, 7, 8, 9, 10]),
        [""] * 5,
        [{}] * 5,
    )
    full = per_example_loss(logits, data, "full")
    torch.testing.assert_close(full, -logits.log_softmax(-1)[torch.arange(5), data.correct])
    binary = per_example_loss(logits, data, "binary")
    diff = logits[torch.arange(5), data.correct] - logits[torch.arange(5), data.incorrect]
    torch.testing.assert_close(binary, -torch.nn.functional.logsigmoid(diff))
    with pytest.raises(ValueError, match="unknown loss"):
        per_example_loss(logits, data, "hinge")


def _spec(**kw):
    d = dict(
        name="mine",
        template="when {name} {action},",
        slots={"name": ["leo", "mia"], "action": ["ran home"]},
        target={"slot": "name", "map": {"leo": "he", "mia": "she"}},
        loss="full",
    )
    d.update(kw)
    return d


def test_user_task_from_dict_and_yaml(tok, tmp_path):
    with pytest.warns(UserWarning, match="split slot 'action' has 1 values"):  # one action: not held out
        task = register_task(_spec())
    assert "mine" in task_names() and get_task("mine").name == "mine"
    data = task.data("train", tok)
    assert sorted(data.texts) == ["when leo ran home,", "when mia ran home,"]
    p = tmp_path / "t.yaml"
    p.write_text(
        "name: yml\ntemplate: 'when {name} ran,'\nslots: {name: [leo, mia]}\n"
        "target: {slot: name, map: {leo: he, mia: she}}\nloss: binary\n"
    )
    assert get_task(str(p)).loss == "binary"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(template="when {nam} {action},"), r"unknown slot \{nam\}"),
        (dict(target={"slot": "name", "map": {"leo": "he him", "mia": "she"}}), "target token 'he him'"),
        (dict(slots={"name": [], "action": ["ran home"]}), "slots.name must be a non-empty list"),
        (dict(loss="hinge"), "unknown loss 'hinge'"),
        (dict(target={"slot": "name", "map": {"leo": "he"}}), r"target.map has no token for \['mia'\]"),
        (dict(colour="red"), r"unknown fields \['colour'\]"),
    ],
)
def test_bad_task_specs_name_the_field(kw, match):
    with pytest.raises(TaskSpecError, match=match):
        TaskSpec.from_dict(_spec(**kw))


def test_words_outside_the_vocabulary_are_rejected(tok):
    with pytest.warns(UserWarning, match="not held out"):
        task = get_task(_spec(slots={"name": ["leo", "mia"], "action": ["xylophoned wildly"]}))
    with pytest.raises(TaskSpecError, match="slots.action word 'xylophoned wildly' is outside the vocabulary"):
        task.data("train", tok)
    with pytest.warns(UserWarning, match="not held out"):
        task = get_task(_spec(target={"slot": "name", "map": {"leo": "zzyzx", "mia": "she"}}))
    with pytest.raises(TaskSpecError, match="target token 'zzyzx'"):
        task.data("train", tok)


def test_unknown_task_and_split():
    with pytest.raises(KeyError, match="unknown task 'pronouns'"):
        get_task("pronouns")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        get_task("pronoun").assignments("dev")


def test_evaluate_and_filter_on_a_model(tiny_model_dir):
    from sparse_circuits.model.inference import load

    model, tok, _ = load(tiny_model_dir)
    task = get_task("ioi")
    data = task.data("val", tok, 64)
    res = evaluate(model, data, task.loss)
    assert set(res) >= {"n", "accuracy", "p_correct", "loss"} and res["n"] == 64
    assert 0 <= res["accuracy"] <= 1 and 0 < res["p_correct"] < 1
    kept, frac = filter_prompts(model, data, min_p_full=0.0, min_p_binary=0.0)
    assert frac == 1.0 and len(kept) == 64
    kept, frac = filter_prompts(model, data, min_p_full=1.1)
    assert frac == 0.0 and len(kept) == 0


def test_names_split_only_when_asked_and_then_disjoint_with_every_answer(tok):
    for name, slots in (("pronoun", ["name"]), ("ioi", ["name_1", "name_2"]), ("nonsense", ["name"])):
        task = get_task(name)
        every_name = set(task.spec.slots[slots[0]])
        assert all(set(task.split_values[s][slot]) == every_name for s in SPLITS for slot in slots)  # off: shared
        split = task.with_names_split()
        names = [split.name_split[s] for s in SPLITS]
        assert set().union(*names) == every_name and not (
            names[0] & names[1] | names[0] & names[2] | names[1] & names[2]
        )
        for s, part in zip(SPLITS, names):
            assert {gender_of(n) for n in part} == {"male", "female"}  # every answer in every split
            assert all(set(split.split_values[s][slot]) == part for slot in slots)  # one partition for all name slots
            used = {a[slot] for a in split.assignments(s) for slot in slots}
            assert used <= part
        template_slot = {"pronoun": "action", "nonsense": "action", "ioi": "situation"}[name]
        assert all(split.split_values[s][template_slot] == task.split_values[s][template_slot] for s in SPLITS)
        assert split.data("test", tok, 8).texts  # held-out prompts: unseen names and unseen templates
    assert get_task("pronoun").with_names_split().name_split == get_task("nonsense").with_names_split().name_split
    with pytest.raises(TaskSpecError, match="split_names needs name_slots"):
        get_task("questions").with_names_split()
    with pytest.raises(TaskSpecError, match="name_slots names unknown slot 'who'"):
        TaskSpec.from_dict(_spec(name_slots=["who"], split_slots=[]))


def test_verbatim_counts_punctuation_answers_and_reads_the_variant():
    from sparse_circuits.data.generator import generate_stories
    from sparse_circuits.tasks import verbatim_in_corpus

    # Questions end in "?" or "." written without a space; some test prompts of the corpus must be found.
    questions = verbatim_in_corpus(get_task("questions"), "test", n_stories=300)
    assert questions["verbatim"] > 0 and questions["variant"] == "basic"
    # Each hit is a real substring of the corpus of the variant asked for.
    rich = verbatim_in_corpus(get_task("pronoun"), "test", n_stories=300, variant="rich")
    text = "\n".join(generate_stories(0, 300, variant="rich"))
    task = get_task("pronoun")
    found = sum(f"{task.prompt_text(a)} {task.spec.correct_of(a)}" in text for a in task.assignments("test"))
    assert rich["variant"] == "rich" and rich["verbatim"] == found
