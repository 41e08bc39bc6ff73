"""What the synthetic corpus contains: its words as the tokenizer splits them, the vocabulary the generator can
emit, and the rates of the constructs the circuit tasks probe (``corpus_statistics``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain

from .generator import StoryGenerator
from .words import (
    FEMALE_NAMES,
    GENDER,
    IOI_SITUATIONS,
    IOI_VERBS,
    MALE_NAMES,
    NAME_INFO,
    PRONOUN_ACTIONS,
    TEMPLATE_SOURCES,
)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SLOT_RE = re.compile(r"\{\w*\}")


def tokenize_words(text: str) -> list[str]:
    """Words and single punctuation characters, as the word-level tokenizer splits them."""
    return _TOKEN_RE.findall(text)


def template_words(template: str) -> list[str]:
    """The words and punctuation of a template, its ``{slot}`` fields left out."""
    return tokenize_words(_SLOT_RE.sub(" ", template))


def vocabulary() -> list[str]:
    """Every word and punctuation token the generator can emit, sorted. The rich variant's frames use only
    these words (``RICH_TEMPLATE_SOURCES``, checked by a test), so this one list covers both variants."""
    words: set[str] = set()
    for source in TEMPLATE_SOURCES:
        for text in source:
            words.update(template_words(text))
    return sorted(words)


# ------------------------------------------------------------------------------------ statistics


def _alternation(phrases: Sequence[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_NAMES_RE = _alternation(MALE_NAMES + FEMALE_NAMES)
# The exact task prompts (docs/method.md, Tasks), found in the text, with the pronoun the corpus put after them.
_ACTIONS_RE = _alternation(PRONOUN_ACTIONS)
_PRONOUN_TASK_RE = re.compile(rf"(?:^|[.?!] )when ({_NAMES_RE}) (?:{_ACTIONS_RE}), (he|she) ")
_IOI_TASK_RE = re.compile(
    rf"(?:^|[.?!] )when ({_NAMES_RE}) (?:{_alternation(IOI_SITUATIONS)}), ({_NAMES_RE}) "
    rf"(?:{_alternation(IOI_VERBS)}) (him|her)\b"
)
_NAME_SET = frozenset(MALE_NAMES + FEMALE_NAMES)
CONSTRUCTS = (
    "pronoun",
    "pronoun_task_form",
    "ioi_same",
    "ioi_opposite",
    "ioi_task_form",
    "question",
    "statement",
    "dialogue",
    "filler",
    "exclaim",
)
# Counted by the rich variant only (see StoryGenerator): frame groups, third characters, name tails, leads.
RICH_CONSTRUCTS = (
    *(f"pronoun_{g}" for g in ("task", "varied", "gap", "distractor")),
    *(f"ioi_{g}" for g in ("task", "varied", "recent", "gap", "distractor")),
    "ioi_name",
    "distractor_same",
    "distractor_opposite",
    "qs_lead",
)


_PRONOUN_GENDER = {"he": "male", "him": "male", "his": "male", "she": "female", "her": "female"}
_SENTENCE_BREAKS = frozenset('.?!"')


def pronoun_shortcuts(tokens: Sequence[Sequence[str]]) -> dict:
    """How often two shortcuts would pick the right gender for a pronoun, where they could fail.

    Over every pronoun whose sentence so far (since ``.`` ``?`` ``!`` or a quote) names characters of both
    genders, ``recency`` is the share that agree with the gender of the last name before them and ``first``
    the share that agree with the first name of the sentence; ``n`` counts them, separately for subject
    pronouns (``he``/``she``) and object or possessive ones (``him``/``her``/``his``). A share near 1.0 means
    the shortcut solves that construct in this corpus.
    """
    out = {kind: {"n": 0, "recency": 0, "first": 0} for kind in ("subject", "object")}
    for story in tokens:
        names: list[str] = []
        for w in story:
            if w in _SENTENCE_BREAKS:
                names = []
            elif w in GENDER:
                names.append(w)
            elif w in _PRONOUN_GENDER and len({GENDER[n] for n in names}) > 1:
                row = out["subject" if w in ("he", "she") else "object"]
                row["n"] += 1
                row["recency"] += GENDER[names[-1]] == _PRONOUN_GENDER[w]
                row["first"] += GENDER[names[0]] == _PRONOUN_GENDER[w]
    for row in out.values():
        for key in ("recency", "first"):
            row[key] = row[key] / max(1, row["n"])
    return out


def corpus_statistics(seed: int = 0, n_stories: int = 2000, variant: str = "basic") -> dict:
    """Rates of each construct per story and per 1000 tokens over ``n_stories`` stories of ``seed`` and
    corpus ``variant`` (the rich variant adds its ``RICH_CONSTRUCTS``).

    Construct counts come from the generator (units emitted; see ``StoryGenerator``); the ``*_task_form``
    counts are found in the text and check that the exact task prompts occur, with the pronoun the task
    expects (``*_task_form_agree`` = share whose pronoun matches the gender of the referent, should be 1.0).
    ``mean_story_sentences`` counts sentence ends (``.`` ``?`` ``!``, inside quotes too); ``pronoun_shortcuts``
    is ``pronoun_shortcuts`` of the stories.
    """
    gen = StoryGenerator(seed, variant=variant)
    stories = [gen.story() for _ in range(n_stories)]
    tokens = [tokenize_words(s) for s in stories]
    n_tokens = sum(map(len, tokens))
    words = Counter(chain.from_iterable(tokens))
    counts = dict(gen.counts)
    pronoun_agree = ioi_agree = 0
    pronoun_form = ioi_form = 0
    for story in stories:
        for name, pron in _PRONOUN_TASK_RE.findall(story):
            pronoun_form += 1
            pronoun_agree += NAME_INFO[name][0] == pron
        for n1, _, obj in _IOI_TASK_RE.findall(story):
            ioi_form += 1
            ioi_agree += NAME_INFO[n1][1] == obj
    counts["pronoun_task_form"] = pronoun_form
    counts["ioi_task_form"] = ioi_form
    constructs = CONSTRUCTS + (RICH_CONSTRUCTS if variant == "rich" else ())
    n_q, n_s = counts.get("question", 0), counts.get("statement", 0)
    return {
        "seed": seed,
        "variant": variant,
        "n_stories": n_stories,
        "n_tokens": n_tokens,
        "mean_story_tokens": n_tokens / n_stories,
        "mean_story_sentences": sum(words[p] for p in ".?!") / n_stories,
        "distinct_words": len(words),
        "vocabulary_size": len(vocabulary()),
        "per_story": {c: counts.get(c, 0) / n_stories for c in constructs},
        "per_1k_tokens": {c: 1000 * counts.get(c, 0) / n_tokens for c in constructs},
        "counts": {c: counts.get(c, 0) for c in constructs},
        "question_fraction": n_q / max(1, n_q + n_s),
        "pronoun_task_form_agree": pronoun_agree / max(1, pronoun_form),
        "ioi_task_form_agree": ioi_agree / max(1, ioi_form),
        "name_token_fraction": sum(words[n] for n in _NAME_SET) / n_tokens,
        "name_counts": {n: words[n] for n in MALE_NAMES + FEMALE_NAMES},
        "pronoun_shortcuts": pronoun_shortcuts(tokens),
    }
