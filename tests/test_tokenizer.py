"""The word-level tokenizer: ids, round trips, unknown words, saving and loading."""

import json

import pytest
from sparse_circuits.data.generator import generate_stories
from sparse_circuits.data.statistics import vocabulary
from sparse_circuits.data.tokenizer import (
    EOS,
    UNK,
    build_tokenizer,
    decode,
    encode,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    single_token_id,
    train_tokenizer,
)
from sparse_circuits.data.words import FEMALE_NAMES, MALE_NAMES


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_special_ids_and_deterministic_vocab(tok):
    assert tok.token_to_id(EOS) == 0 and tok.token_to_id(UNK) == 1
    assert tok.get_vocab_size() == len(vocabulary()) + 2
    assert build_tokenizer().get_vocab() == tok.get_vocab()
    words = [tok.id_to_token(i) for i in range(2, tok.get_vocab_size())]
    assert words == sorted(words)


def test_round_trip_on_corpus_text(tok):
    stories = generate_stories(11, 300)
    ids = encode_batch(tok, stories)
    assert ids == [encode(tok, s) for s in stories]
    unk = tok.token_to_id(UNK)
    for story, row in zip(stories, ids):
        assert unk not in row
        assert decode(tok, row) == story
    joined = f" {EOS} ".join(stories[:3])
    assert decode(tok, encode(tok, joined)) == joined
    assert decode(tok, [0, *ids[0]], skip_special_tokens=True) == stories[0]


def test_decode_is_readable(tok):
    for text in ("when mia went to the park, she", '"can you help me?" asked mia.', 'leo said, "let us go."'):
        assert decode(tok, encode(tok, text)) == text
    assert encode(tok, "When MIA went") == encode(tok, "when mia went")


def test_unknown_words_map_to_unk(tok):
    ids = encode(tok, "mia saw a qwerty plonk; zebra!")
    assert ids.count(tok.token_to_id(UNK)) == 3  # two unknown words and ";"
    assert decode(tok, ids) == "mia saw a <unk> <unk> <unk> zebra!"
    assert encode(tok, "") == []


def test_single_tokens(tok):
    for word in (*MALE_NAMES, *FEMALE_NAMES, "he", "she", "him", "her", "?", ".", ",", "!", '"', "when"):
        assert tok.id_to_token(single_token_id(tok, word)) == word
    with pytest.raises(ValueError, match="qwerty"):
        single_token_id(tok, "qwerty")
    with pytest.raises(ValueError, match="the park"):
        single_token_id(tok, "the park")


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    save_tokenizer(tok, path)
    loaded = load_tokenizer(path)
    assert loaded.get_vocab() == tok.get_vocab()
    text = generate_stories(2, 1)[0]
    assert encode(loaded, text) == encode(tok, text) and decode(loaded, encode(loaded, text)) == text


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_tokenizer(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.json"):
        load_tokenizer(corrupt)
    other = tmp_path / "other.json"
    save_tokenizer(train_tokenizer(["a b c"]), other)
    data = json.loads(other.read_text())
    data["model"]["vocab"] = {"a": 0, "<eos>": 1, "<unk>": 2}
    data["added_tokens"] = []
    other.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other.json"):
        load_tokenizer(other)


def test_train_tokenizer_orders_by_count_then_word():
    texts = ["The cat sat. The dog sat!", "the cat ran.", "A bird."]
    tok = train_tokenizer(texts)
    order = [tok.id_to_token(i) for i in range(tok.get_vocab_size())]
    assert order[:2] == [EOS, UNK]
    assert order[2:] == [".", "the", "cat", "sat", "!", "a", "bird", "dog", "ran"]
    assert train_tokenizer(reversed(texts)).get_vocab() == tok.get_vocab()
    assert train_tokenizer(texts, min_frequency=2).get_vocab_size() == 2 + 4
    assert train_tokenizer(texts, max_vocab=5).get_vocab_size() == 5
    assert decode(tok, encode(tok, "the cat sat.")) == "the cat sat."
