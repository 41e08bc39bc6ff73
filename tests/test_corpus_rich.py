"""The corpus variants: "basic" frozen byte for byte (the shipped models' corpus), "rich" opt-in, in the same
vocabulary, and following the one referent rule in all its new frames."""

import hashlib
import json
import re
from itertools import islice
from pathlib import Path

import pytest
from sparse_circuits.core.config import strict_from_dict
from sparse_circuits.data.batches import BatchStream
from sparse_circuits.data.generator import StoryGenerator, generate_stories, question_statement_pairs
from sparse_circuits.data.sources import CorpusConfig, iter_texts
from sparse_circuits.data.statistics import (
    RICH_CONSTRUCTS,
    corpus_statistics,
    template_words,
    tokenize_words,
    vocabulary,
)
from sparse_circuits.data.tokenizer import UNK, build_tokenizer, decode, encode_batch
from sparse_circuits.data.words import (
    FEMALE_NAMES,
    IOI_SITUATIONS,
    IOI_VERBS,
    MALE_NAMES,
    NAME_INFO,
    PRONOUN_ACTIONS,
    RICH_TEMPLATE_SOURCES,
)

MODELS = Path(__file__).parents[1] / "data" / "models"
NAMES = "|".join(MALE_NAMES + FEMALE_NAMES)


def _alt(phrases) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


def _sha(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def rich() -> list[str]:
    return generate_stories(0, 1500, "rich")


def test_basic_variant_is_frozen():
    """Hashes taken from the code the shipped models were trained with: any change to basic text fails here."""
    assert _sha(generate_stories(0, 200)) == "aee4a612a119e0d33c25da047b2aa4b16d8e25925b31fe2d55e78318ebfdc349"
    assert _sha(generate_stories(7, 200, "basic")) == "0f5987c7aaa5473c7b52430be47db586a6ae68af119e16cc3c924f7d1210f55e"
    val = list(islice(StoryGenerator(0, stream="val"), 200))
    assert _sha(val) == "ac30020093e10da87bf93bf31d4f5c2f5c6f08483470278fbf2ec43be731f459"
    pairs = [f"{q}|{s}" for q, s in question_statement_pairs(0, 200)]
    assert _sha(pairs) == "a0ba74338dbc810897ca678e32f82658ddc6ac389a4e194a8d36dad42d3d75d3"
    assert len(vocabulary()) == 1091
    assert _sha(vocabulary()) == "284a7ab13996acead446cf598146b4d9aff757f0616dca16a59a9799a274b19b"


def test_corpus_config_variant():
    assert CorpusConfig().variant == "basic"
    # Models written before the field existed lack it and read as basic; every shipped model is basic.
    for config in sorted(MODELS.glob("*/config.json")):
        corpus = json.loads(config.read_text())["corpus"]
        assert corpus.get("variant", "basic") == "basic"
        assert strict_from_dict(CorpusConfig, corpus).variant == "basic"
    assert strict_from_dict(CorpusConfig, {"source": "synthetic", "seed": 0}).variant == "basic"
    assert CorpusConfig(variant="rich").variant == "rich"
    with pytest.raises(ValueError, match=r"corpus\.variant.*'fancy'"):
        CorpusConfig(variant="fancy")
    with pytest.raises(ValueError, match="synthetic source only"):
        CorpusConfig(source="simplestories", variant="rich")
    with pytest.raises(ValueError, match="variant"):
        StoryGenerator(0, variant="fancy")


def test_rich_is_deterministic_and_its_streams_disjoint():
    assert generate_stories(3, 30, "rich") == generate_stories(3, 30, "rich")
    assert generate_stories(3, 30, "rich") != generate_stories(4, 30, "rich")
    train = list(islice(iter_texts(CorpusConfig(seed=3, variant="rich"), "train"), 200))
    val = list(islice(iter_texts(CorpusConfig(seed=3, variant="rich"), "val"), 200))
    assert train == generate_stories(3, 200, "rich")
    assert not set(train) & set(val)
    assert not set(train) & set(generate_stories(3, 200))


def test_batch_stream_reads_the_variant():
    tok = build_tokenizer()
    rows = {v: BatchStream(CorpusConfig(variant=v), tok, 64, 4).batch(0) for v in ("basic", "rich")}
    assert not rows["basic"].equal(rows["rich"])
    assert rows["rich"].equal(BatchStream(CorpusConfig(variant="rich"), tok, 64, 4).batch(0))


def test_rich_words_are_in_the_vocabulary(rich):
    vocab = set(vocabulary())
    for source in RICH_TEMPLATE_SOURCES:
        for text in source:
            assert set(template_words(text)) <= vocab, text
    tok = build_tokenizer()
    unk = tok.token_to_id(UNK)
    for story, ids in zip(rich[:300], encode_batch(tok, rich[:300])):
        assert unk not in ids
        assert decode(tok, ids) == story
    seen = set()
    for story in rich:
        assert story == story.lower() and "  " not in story and story.count('"') % 2 == 0
        assert not any(f" {p}" in story for p in ".,?!"), story
        seen.update(tokenize_words(story))
    assert seen <= vocab


def test_task_forms_keep_their_answer(rich):
    """The exact task prompts stay well posed: after them comes the referent's pronoun, every time."""
    pronoun = re.compile(rf"(?:^|[.?!] )when ({NAMES}) (?:{_alt(PRONOUN_ACTIONS)}), (\w+)")
    ioi = re.compile(rf"(?:^|[.?!] )when ({NAMES}) (?:{_alt(IOI_SITUATIONS)}), ({NAMES}) (?:{_alt(IOI_VERBS)}) (\w+)")
    text = "\n".join(rich)
    found = pronoun.findall(text)
    assert len(found) > 50 and all(NAME_INFO[n][0] == p for n, p in found)
    found = ioi.findall(text)
    assert len(found) > 50 and all(NAME_INFO[n1][1] == o for n1, _, o in found)


def test_distractors_and_recency_do_not_decide_the_referent(rich):
    """A name between the referent and the pronoun, of either gender, is never the referent; in "{b} saw {a}
    ... and {verb} him/her" the referent is the later name."""
    text = "\n".join(rich)
    # when A <words with a second name C, no comma>, he/she -> A
    embedded = re.findall(rf"(?:^|[.?!] )when ({NAMES})((?: [a-z]+)*? ({NAMES})(?: [a-z]+)*), (he|she) ", text)
    assert all(NAME_INFO[a][0] == p for a, _, _, p in embedded)
    opposite = sum(NAME_INFO[a][0] != NAME_INFO[c][0] for a, _, c, _ in embedded)
    assert opposite > 30 and len(embedded) - opposite > 30  # both genders of distractor
    recent = re.findall(rf"({NAMES}) saw ({NAMES}) at the [a-z]+ and (?:{_alt(IOI_VERBS)}) (him|her)\b", text)
    assert len(recent) > 10 and all(NAME_INFO[a][1] == o for _, a, o in recent)
    later = re.findall(
        rf"(?:after|while|when) ({NAMES}) [a-z ]+, ({NAMES}) [a-z ]+, (?:and then |so |and )(he|she) ", text
    )
    assert len(later) > 10 and all(NAME_INFO[a][0] == p for _, a, p in later)
    two_subjects = re.findall(
        rf"when ({NAMES}) [a-z ]+, ({NAMES}) and ({NAMES}) (?:{_alt(IOI_VERBS)}) (him|her)\b", text
    )
    assert len(two_subjects) > 10 and all(NAME_INFO[a][1] == o for a, _, _, o in two_subjects)


def test_rich_statistics():
    basic, rich = corpus_statistics(0, 800), corpus_statistics(0, 800, "rich")
    assert rich["variant"] == "rich" and not set(RICH_CONSTRUCTS) & set(basic["counts"])
    for construct in RICH_CONSTRUCTS:
        assert rich["counts"][construct] > 0, construct
    # the exact task frames are a much smaller share, the constructs themselves as frequent as in basic
    assert rich["counts"]["pronoun_task_form"] < 0.4 * basic["counts"]["pronoun_task_form"]
    assert rich["counts"]["ioi_task_form"] < 0.4 * basic["counts"]["ioi_task_form"]
    assert rich["per_story"]["pronoun"] > 0.9 * basic["per_story"]["pronoun"]
    assert rich["per_story"]["ioi_same"] + rich["per_story"]["ioi_opposite"] > 0.9 * (
        basic["per_story"]["ioi_same"] + basic["per_story"]["ioi_opposite"]
    )
    assert rich["pronoun_task_form_agree"] == 1.0 and rich["ioi_task_form_agree"] == 1.0
    assert 0.4 <= rich["question_fraction"] <= 0.6
    # where a sentence names both genders, neither the last nor the first name gives the pronoun reliably
    assert basic["pronoun_shortcuts"]["subject"]["n"] == 0
    assert basic["pronoun_shortcuts"]["object"]["first"] > 0.85
    for kind in ("subject", "object"):
        row = rich["pronoun_shortcuts"][kind]
        assert row["n"] > 100 and row["recency"] < 0.5 and row["first"] < 0.85, (kind, row)
