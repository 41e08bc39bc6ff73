"""Word-level tokenizer (Hugging Face ``tokenizers``): one token per lowercased word or punctuation mark.

A word-level vocabulary keeps every name, pronoun and punctuation mark a single token, which the circuit
tasks need (the answer of a task is one next token). Ids are deterministic: ``<eos>`` is 0, ``<unk>`` is
1, then the words (sorted for the synthetic corpus, by frequency for a real one). Unknown words map to
``<unk>``. ``decode`` undoes the pre-tokenization for text written the way the corpus writes it (no space
before ``. , ? !``, quotes attached to what they enclose), so ``decode(encode(text)) == text`` there.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from .statistics import vocabulary

EOS, UNK = "<eos>", "<unk>"
SPECIAL_TOKENS = (EOS, UNK)
# End-of-text and unknown tokens as the reference models' tokenizers spell them (OpenAI's BPE, Drori's
# WordPiece); a tokenizer of ours uses EOS / UNK with the fixed ids 0 and 1.
EOS_SPELLINGS = (EOS, "<|endoftext|>", "[EOS]")
UNK_SPELLINGS = (UNK, "[UNK]")
# Pre-tokenization pattern of OpenAI's tinypython BPE tokenizers (its vocab.bpe / encoder.json do not carry it).
TINYPYTHON_PATTERN = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# Tokens written without a space before them, and (for "'") without one after them either.
_NO_SPACE_BEFORE = frozenset(".,?!:;)'")
_NO_SPACE_AFTER = frozenset("('")


def _normalizer() -> normalizers.Normalizer:
    # Typographic quotes, as in some real datasets, become the plain ones the vocabulary knows.
    return normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Replace(Regex("[\u201c\u201d]"), '"'),
            normalizers.Replace(Regex("[\u2018\u2019]"), "'"),
            normalizers.Lowercase(),
        ]
    )


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Split on whitespace, then make every non-word character its own piece ("help?"" -> help ? ").
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"[^\w\s]"), behavior="isolated"),
        ]
    )


def _from_vocab(words: Iterable[str]) -> Tokenizer:
    """A tokenizer whose ids are the specials, then ``words`` in the given order (duplicates dropped)."""
    vocab: dict[str, int] = {}
    for w in (*SPECIAL_TOKENS, *words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # matched before normalization: "<eos>" stays one token
    return tok


def _split_words(text: str) -> list[str]:
    """Pre-tokenize one text exactly as the tokenizer does."""
    return [piece for piece, _ in _PRE.pre_tokenize_str(_NORM.normalize_str(text))]


_NORM, _PRE = _normalizer(), _pre_tokenizer()


def build_tokenizer(words: Iterable[str] | None = None) -> Tokenizer:
    """Tokenizer over ``words`` (default: the synthetic corpus's whole vocabulary), ids sorted by word."""
    if words is None:
        words = vocabulary()
    cleaned = set()
    for w in words:
        if w in SPECIAL_TOKENS:  # always present, with the fixed ids 0 and 1
            continue
        pieces = _split_words(w)
        if len(pieces) != 1:
            raise ValueError(f"vocabulary entry {w!r} is not a single word or punctuation mark: {pieces}")
        cleaned.add(pieces[0])
    return _from_vocab(sorted(cleaned))


def train_tokenizer(texts: Iterable[str], min_frequency: int = 1, max_vocab: int | None = None) -> Tokenizer:
    """Word-level tokenizer fitted to ``texts``: words seen ``min_frequency`` times or more, most frequent
    first (ties by word, so the ids do not depend on the order of the texts); at most ``max_vocab`` ids
    including the two specials."""
    if max_vocab is not None and max_vocab < len(SPECIAL_TOKENS):
        raise ValueError(f"max_vocab must be at least {len(SPECIAL_TOKENS)} (the specials), got {max_vocab}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(_split_words(text))
    for special in SPECIAL_TOKENS:
        counts.pop(special, None)
    ranked = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
    if max_vocab is not None:
        ranked = ranked[: max_vocab - len(SPECIAL_TOKENS)]
    return _from_vocab(ranked)


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write ``tok`` as a ``tokenizer.json`` file (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer saved by ``save_tokenizer`` (or an imported reference tokenizer, whose end-of-text token
    is one of EOS_SPELLINGS); a clear error names the file if it is missing or bad."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception on malformed json
        raise ValueError(f"could not read tokenizer file {path}: {e}") from e
    if tok.token_to_id(EOS) is None and any(tok.token_to_id(t) is not None for t in EOS_SPELLINGS):
        return tok  # a reference model's tokenizer, with its own special-token ids
    for i, special in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(special) != i:
            raise ValueError(f"tokenizer file {path} does not map {special!r} to id {i} as this project does")
    return tok


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` (no special tokens added)."""
    return tok.encode(text, add_special_tokens=False).ids


def encode_batch(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (batched in Rust; no special tokens added)."""
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]


def decode(tok: Tokenizer, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
    """Readable text: words joined by spaces, punctuation attached as the corpus writes it.

    A double quote opens or closes by parity, counted from the start or the last ``<eos>``. A subword
    tokenizer decodes with its own decoder.
    """
    if not is_word_level(tok):
        return tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
    out: list[str] = []
    in_quote = False
    glue_next = True  # no space before the first token, nor after an opening quote
    for i in ids:
        t = tok.id_to_token(int(i))
        if t is None:
            raise ValueError(f"token id {i} is not in the vocabulary (size {tok.get_vocab_size()})")
        if t in SPECIAL_TOKENS:
            in_quote = False if t == EOS else in_quote
            if skip_special_tokens:
                continue
        if t == '"':
            if in_quote:  # closing: attach to the previous token
                out.append(t)
            else:
                out.append(t if glue_next else " " + t)
            in_quote = not in_quote
            glue_next = in_quote
            continue
        out.append(t if glue_next or t in _NO_SPACE_BEFORE else " " + t)
        glue_next = t in _NO_SPACE_AFTER
    return "".join(out)


def single_token_id(tok: Tokenizer, word: str) -> int:
    """The id of ``word`` if it is exactly one known token; ValueError naming the word otherwise."""
    ids = encode(tok, word)
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens ({tok.encode(word).tokens}), not a single token")
    if ids[0] == unk_id(tok) and word not in UNK_SPELLINGS:
        raise ValueError(f"{word!r} is not in the tokenizer's vocabulary")
    return ids[0]


def is_word_level(tok: Tokenizer) -> bool:
    """Whether ``tok`` is a word-level tokenizer like this project's (one token per word)."""
    return isinstance(tok.model, models.WordLevel)


def _special_id(tok: Tokenizer, spellings: tuple[str, ...]) -> int | None:
    return next((i for i in map(tok.token_to_id, spellings) if i is not None), None)


def eos_id(tok: Tokenizer) -> int:
    """Id of the end-of-text token (``<eos>`` here, ``<|endoftext|>`` or ``[EOS]`` in a reference tokenizer)."""
    i = _special_id(tok, EOS_SPELLINGS)
    if i is None:
        raise ValueError(f"the tokenizer has no end-of-text token (one of {list(EOS_SPELLINGS)})")
    return i


def unk_id(tok: Tokenizer) -> int | None:
    """Id of the unknown-word token, or None for a tokenizer without one (a byte-level BPE)."""
    return _special_id(tok, UNK_SPELLINGS)


def answer_token_id(tok: Tokenizer, word: str) -> int:
    """The token id of ``word`` as a next-token answer, i.e. following a space.

    Word-level: the vocabulary entry itself. Subword: the text " word" must encode to one known token;
    otherwise ValueError naming the word and its pieces.
    """
    if is_word_level(tok):
        vocab = tok.get_vocab()
        if word not in vocab:
            raise ValueError(f"{word!r} is not a single token of the vocabulary")
        return vocab[word]
    return single_token_id(tok, " " + word)


def data_gym_tokenizer(vocab_bpe: str | Path, encoder_json: str | Path, pattern: str = TINYPYTHON_PATTERN) -> Tokenizer:
    """A byte-level BPE tokenizer from GPT-2 "data gym" files (``vocab.bpe`` merges + ``encoder.json`` ids).

    Pre-tokenization splits by ``pattern`` (as tiktoken does), then maps bytes to the data-gym characters; merges
    apply in file order. Entries of encoder.json outside the merged vocabulary (``<|endoftext|>``) become special
    tokens with their ids. Errors name the file at fault.
    """
    vocab_bpe, encoder_json = Path(vocab_bpe), Path(encoder_json)
    for f in (vocab_bpe, encoder_json):
        if not f.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {f}")
    try:
        ids = json.loads(encoder_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{encoder_json} is not valid JSON: {e}") from e
    lines = vocab_bpe.read_text(encoding="utf-8").split("\n")
    if not lines or not lines[0].startswith("#version"):
        raise ValueError(f"{vocab_bpe} does not start with a '#version' line")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise ValueError(f"{vocab_bpe}: merge lines must be two pieces separated by a space, got {bad[:3]}")
    # Every merge product and every single byte is a BPE token; anything else in encoder.json is a special.
    bpe_tokens = set(pre_tokenizers.ByteLevel.alphabet()) | {a + b for a, b in merges}
    specials = {t: i for t, i in ids.items() if t not in bpe_tokens}
    missing = sorted(bpe_tokens - set(ids))
    if missing:
        raise ValueError(f"{encoder_json} has no id for BPE tokens {missing[:5]}")
    tok = Tokenizer(models.BPE(vocab={t: i for t, i in ids.items() if t in bpe_tokens}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    for t, i in sorted(specials.items(), key=lambda kv: kv[1]):
        if i != tok.get_vocab_size():
            raise ValueError(f"{encoder_json}: special token {t!r} has id {i}, expected the next free id")
        tok.add_special_tokens([t])
    return tok
