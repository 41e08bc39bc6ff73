"""The synthetic story corpus, its configuration and the SimpleStories loader (on a local fixture)."""

from itertools import islice
from pathlib import Path

import pytest
from sparse_circuits.data.generator import StoryGenerator, generate_stories, question_statement_pairs
from sparse_circuits.data.sources import CorpusConfig, iter_texts, load_simplestories
from sparse_circuits.data.statistics import corpus_statistics, template_words, tokenize_words, vocabulary
from sparse_circuits.data.words import (
    FEMALE_NAMES,
    GENDER,
    IOI_SITUATIONS,
    IOI_VERBS,
    MALE_NAMES,
    PRONOUN_ACTIONS,
    TASK_FEMALE_NAMES,
    TASK_MALE_NAMES,
    TEMPLATE_SOURCES,
    gender_of,
)

FIXTURE = Path(__file__).parent / "fixtures" / "simplestories"
PRONOUNS = {"he", "she", "him", "her", "his", "hers", "himself", "herself"}


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return generate_stories(0, 400) + generate_stories(7, 200)


def test_same_seed_same_stories_and_streams_differ():
    assert generate_stories(3, 20) == generate_stories(3, 20)
    assert generate_stories(3, 20) != generate_stories(4, 20)
    val = list(islice(StoryGenerator(3, stream="val"), 20))
    assert val == list(islice(StoryGenerator(3, stream="val"), 20))
    assert not set(val) & set(generate_stories(3, 20))
    assert list(islice(iter(StoryGenerator(5)), 5)) == generate_stories(5, 5)
    with pytest.raises(ValueError, match="stream"):
        StoryGenerator(0, stream="test")


def test_name_lists():
    assert MALE_NAMES[:5] == ("leo", "samuel", "jose", "peter", "alex") == TASK_MALE_NAMES
    assert FEMALE_NAMES[:5] == ("mia", "rita", "kim", "maria", "lily") == TASK_FEMALE_NAMES
    assert len(MALE_NAMES) >= 25 and len(FEMALE_NAMES) >= 25
    names = MALE_NAMES + FEMALE_NAMES
    assert len(set(names)) == len(names)
    assert all(n.isalpha() and n.islower() for n in names)
    assert {gender_of(n) for n in MALE_NAMES} == {"male"}
    assert {gender_of(n) for n in FEMALE_NAMES} == {"female"}
    with pytest.raises(ValueError, match="bob"):
        gender_of("bob")


def test_names_are_not_common_words():
    other_words = set()
    for source in TEMPLATE_SOURCES:
        if source in (MALE_NAMES, FEMALE_NAMES):
            continue
        for text in source:
            other_words.update(template_words(text))
    assert not other_words & set(MALE_NAMES + FEMALE_NAMES)


def test_task_phrase_lists():
    assert len(PRONOUN_ACTIONS) >= 60 and len(IOI_SITUATIONS) >= 96
    assert len(set(PRONOUN_ACTIONS)) == len(PRONOUN_ACTIONS)
    assert len(set(IOI_SITUATIONS)) == len(IOI_SITUATIONS)
    assert IOI_VERBS == tuple(
        "welcomed reminded taught handed gave warned guided showed beckoned followed urged told supported "
        "hugged trusted helped invited comforted led thanked".split()
    )
    for phrase in PRONOUN_ACTIONS + IOI_SITUATIONS:  # no gender cue inside the phrase itself
        words = phrase.split()
        assert not set(words) & PRONOUNS, phrase
        assert all(w.isalpha() for w in words), phrase


def test_text_format_and_vocabulary(stories):
    vocab = set(vocabulary())
    assert 1000 <= len(vocab) <= 3000
    assert {".", ",", "?", "!", '"'} <= vocab
    assert not {t for t in vocab if not t.isalnum()} - {".", ",", "?", "!", '"'}
    seen = set()
    for story in stories:
        assert story == story.lower() and "'" not in story and "  " not in story
        assert story == story.strip() and story[-1] in '.?!"'
        assert not any(f" {p}" in story for p in ".,?!"), story
        assert story.count('"') % 2 == 0
        seen.update(tokenize_words(story))
    assert seen <= vocab, seen - vocab
    assert len(seen) > 0.8 * len(vocab)  # the vocabulary is not padded with words that never appear


def test_story_lengths(stories):
    n_sentences = [sum(story.count(p) for p in ".?!") for story in stories]
    assert min(n_sentences) >= 3 and max(n_sentences) <= 16
    assert 3 <= sum(n_sentences) / len(n_sentences) <= 9


def test_statistics_cover_every_construct():
    stats = corpus_statistics(seed=0, n_stories=300)
    for construct, rate in stats["per_story"].items():
        assert rate > 0, construct
    assert stats["counts"]["ioi_same"] > 20 and stats["counts"]["ioi_opposite"] > 20
    assert 0.4 <= stats["question_fraction"] <= 0.6
    assert stats["pronoun_task_form_agree"] == 1.0 and stats["ioi_task_form_agree"] == 1.0
    assert all(stats["name_counts"][n] > 0 for n in TASK_MALE_NAMES + TASK_FEMALE_NAMES)
    assert stats["n_tokens"] == pytest.approx(300 * stats["mean_story_tokens"])


def test_pronouns_agree_with_the_referent(stories):
    """Single-character clauses put the name's own subject pronoun after the comma."""
    checked = 0
    for story in stories:
        words = tokenize_words(story)
        for i in range(len(words) - 2):
            if words[i] == "," and words[i + 1] in ("he", "she"):
                start = max(j for j in range(i) if words[j] in (".", "?", "!", '"') or j == 0)
                names = [w for w in words[start:i] if w in GENDER]
                if len(names) == 1:
                    assert words[i + 1] == ("he" if gender_of(names[0]) == "male" else "she"), story
                    checked += 1
    assert checked > 100


def test_question_statement_pairs():
    pairs = question_statement_pairs(seed=1, n=300)
    assert pairs == question_statement_pairs(seed=1, n=300)
    assert len(set(pairs)) > 250
    for q, s in pairs:
        assert q.endswith("?") and s.endswith(".") and "?" not in s and "." not in q
        assert "," not in q + s and '"' not in q + s
        shared = set(q[:-1].split()) & set(s[:-1].split())
        assert len(shared) >= 2, (q, s)
    assert {q.split()[0] for q, _ in pairs} >= {"can", "do", "is", "why", "who", "what"}


def test_corpus_config_validation():
    with pytest.raises(ValueError, match=r"source.*synthetic"):
        CorpusConfig(source="wikipedia")
    with pytest.raises(ValueError, match="val_split"):
        CorpusConfig(source="simplestories", split="train", val_split="train")
    assert CorpusConfig().source == "synthetic"


def test_iter_texts_synthetic():
    cfg = CorpusConfig(seed=2)
    train = list(islice(iter_texts(cfg, "train"), 50))
    assert train == generate_stories(2, 50)
    val = list(islice(iter_texts(cfg, "val"), 50))
    assert not set(train) & set(val)
    with pytest.raises(ValueError, match="stream"):
        next(iter_texts(cfg, "dev"))


# ------------------------------------------------------------------------ SimpleStories loader


@pytest.fixture
def datasets():
    return pytest.importorskip("datasets")  # an optional dependency (the real-data extra)


def test_load_simplestories_local_fixture(datasets):
    train = list(load_simplestories(str(FIXTURE), split="train"))
    test = list(load_simplestories(str(FIXTURE), split="test", streaming=False))
    assert len(train) == 8 and len(test) == 3
    assert all(t == t.lower() for t in train + test)
    assert test[0].startswith("when mia went to the park, she")
    single = list(load_simplestories(str(FIXTURE / "test.jsonl"), split="test"))
    assert single == test


def test_load_simplestories_missing_column(datasets):
    with pytest.raises(ValueError, match="'text'"):
        list(load_simplestories(str(FIXTURE), text_column="text"))


def test_load_simplestories_missing_local_path(datasets, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_simplestories(str(tmp_path / "nope"))


def test_load_simplestories_unreachable(datasets, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="source: synthetic"):
        load_simplestories("SimpleStories/SimpleStories")


def test_iter_texts_simplestories_cycles(datasets):
    cfg = CorpusConfig(source="simplestories", dataset=str(FIXTURE))
    val = list(islice(iter_texts(cfg, "val"), 7))
    assert val[:3] == val[3:6] and val[6] == val[0]
    assert next(iter_texts(cfg, "train")) != val[0]
