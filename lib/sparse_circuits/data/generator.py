"""The synthetic pretraining corpus: a procedural generator of SimpleStories-like stories (the offline default).

It writes short lowercase stories (3-8 sentences, about 1.1k distinct words) in which the constructs probed by
the circuit tasks (docs/method.md, Tasks) are frequent and appear in varied frames, not only as the exact task
templates:

* pronoun reference: "when mia went to the park, she ...", "after leo climbed the tree, he ...",
  "kim was tired. she ...": a subject pronoun naming the only character of the clause;
* IOI-style object pronouns: "when leo was at the store, mia urged him to buy bread.": the object pronoun
  names the *other* character (name_1), with same- and opposite-gender pairs alike;
* questions and statements from the same words in another order ("can you see the bird?" /
  "you can see the bird."), half and half, in dialogue and in narration;
* dialogue and filler sentences (weather, places, objects, feelings) for variety.

The ``"rich"`` variant (opt-in, ``CorpusConfig.variant``) writes the same constructs in more frames, with
longer gaps and distractor characters, so that the exact task prompts are a small share of them and no
position or recency shortcut predicts the pronoun (docs/corpus.md, Rich variant). ``"basic"`` is the corpus the
shipped models were trained on, unchanged.

Formatting is what the tokenizer round-trips: lowercase words separated by single spaces, the
punctuation ``. , ? ! "`` attached to the word before it (an opening quote to the word after it), and
no apostrophes. All text lives in the templates of ``words``, so ``statistics.vocabulary()`` lists every
token the generator can emit. Randomness comes only from ``random.Random`` seeded with an int or a string,
which is stable across machines and Python versions (never ``hash()`` of a str).
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain

from .words import (
    BE_PREDICATES,
    BE_SUBJECTS,
    CONTAINERS,
    DIALOGUE_Q,
    DIALOGUE_QA,
    DIALOGUE_S,
    ENDINGS,
    EXCLAIMS,
    FEELINGS,
    FILLER,
    GENDER,
    IOI_RESTS,
    IOI_SITUATIONS,
    IOI_VERBS,
    MODALS,
    NAME_INFO,
    OBJECTS,
    OPENINGS,
    PAIR_FRAMES,
    PLACES,
    PRONOUN_ACTIONS,
    QS_FORMS,
    QS_VPS,
    QS_VPS_ME,
    REACTIONS,
    RICH_LEADS,
    RICH_PAIR_FRAMES,
    RICH_PAIR_TAILS,
    RICH_QS_FORMS,
    RICH_SLOT_LISTS,
    RICH_SOLO_FRAMES,
    SLOT_LISTS,
    SOLO_FRAMES,
    TASK_NAME_WEIGHT,
    TASK_NAMES,
    THING_ADJ,
    WANTS,
    WH_CAN,
    WH_DO,
    WH_WORDS,
    YES,
)

_NAME_POOL = tuple(chain.from_iterable([n] * (TASK_NAME_WEIGHT if n in TASK_NAMES else 1) for n in GENDER))
_IOI_VPS = tuple(
    tuple(f"{v} {{o}} {r}".rstrip() for r in IOI_RESTS[v]) for v in IOI_VERBS
)  # per verb, so every verb is equally frequent whatever its number of endings
_THINGS = tuple(THING_ADJ)


def _with_slots(templates: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each template with the word-list slots it uses, so only those are drawn."""
    parse = string.Formatter().parse
    return tuple((t, tuple(f for _, f, _, _ in parse(t) if f in SLOT_LISTS)) for t in templates)


_OPENING_SLOTS, _ENDING_SLOTS = _with_slots(OPENINGS), _with_slots(ENDINGS)
_FILLER_SLOTS, _EXCLAIM_SLOTS = _with_slots(FILLER), _with_slots(EXCLAIMS)
# Story units and their integer weights: a flat list, so one uniform draw picks a unit.
_UNITS = (
    *("solo",) * 6,
    *("pair",) * 5,
    *("dialogue",) * 4,
    *("narrated_qs",) * 2,
    *("filler",) * 4,
    "exclaim",
)
TRAIN_STREAM, VAL_STREAM = "train", "val"
_STREAMS = (TRAIN_STREAM, VAL_STREAM, "questions")  # "questions" feeds question_statement_pairs
VARIANTS = ("basic", "rich")
# "a old owl" -> "an old owl" (no listed word keeps "a" before a vowel)
_AN_RE = re.compile(r"\ba (?=[aeiou])")


def _rich_frames(groups: dict[str, tuple[str, ...]], weights: dict[str, int]) -> tuple:
    """(group draws, {group: ((template, slots), ...)}): a uniform draw from the first picks a group with
    probability proportional to its weight, then one of its templates is drawn uniformly."""
    parse = string.Formatter().parse
    draws = tuple(chain.from_iterable([g] * weights[g] for g in groups))
    return draws, {g: tuple((t, tuple(f for _, f, _, _ in parse(t) if f)) for t in ts) for g, ts in groups.items()}


# Group weights of the rich frames: the exact task frame is one draw in ten (basic: about one in three).
_RICH_SOLO = _rich_frames(RICH_SOLO_FRAMES, {"task": 1, "varied": 3, "gap": 3, "distractor": 3})
_RICH_PAIR = _rich_frames(RICH_PAIR_FRAMES, {"task": 1, "varied": 2, "recent": 2, "gap": 2, "distractor": 3})
_RICH_TAIL_P, _RICH_LEAD_P = 0.3, 0.4  # a name tail after a pair frame; a lead before a question or statement


class StoryGenerator:
    """Unbounded, deterministic stream of synthetic stories.

    ``stream`` is "train" (the default), "val" (held-out stories, a different random stream for the same
    seed) or "questions" (used by ``question_statement_pairs``).

    ``variant`` is "basic" (the default, the corpus of the shipped models) or "rich" (more frames, gaps and
    distractors; docs/corpus.md).

    ``counts`` tallies the constructs emitted so far (units, not tokens): ``pronoun`` (a subject pronoun
    naming the only character of its clause), ``ioi_same`` / ``ioi_opposite`` (object pronoun naming the
    other of two characters, by gender pair), ``question``, ``statement``, ``dialogue`` (quoted lines),
    ``filler``, ``exclaim``. The rich variant also counts each frame group (``pronoun_task``,
    ``pronoun_gap``, ``ioi_recent``, ...), the third characters by gender relative to the referent
    (``distractor_same`` / ``distractor_opposite``), name tails (``ioi_name``) and leads (``qs_lead``).
    """

    def __init__(self, seed: int = 0, stream: str = TRAIN_STREAM, variant: str = "basic") -> None:
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {_STREAMS}, got {stream!r}")
        if variant not in VARIANTS:
            raise ValueError(f"corpus variant must be one of {VARIANTS}, got {variant!r}")
        # "train" seeds with the plain int; the other streams with a string (hashed through sha512 by
        # random.Random, stable across machines), so they never coincide with any int-seeded train stream.
        # The rich variant seeds every stream with a string of its own, so it shares no draws with basic.
        if variant != "basic":
            seed_key: int | str = f"sparse_circuits.corpus:{variant}:{stream}:{seed}"
        else:
            seed_key = seed if stream == TRAIN_STREAM else f"sparse_circuits.corpus:{stream}:{seed}"
        self._rng = random.Random(seed_key)
        self.variant = variant
        self.counts: Counter[str] = Counter()

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.story()

    # -- small helpers (rng.random() indexing is ~3x faster than rng.choice)
    def _pick(self, seq: Sequence[str]) -> str:
        return seq[int(self._rng.random() * len(seq))]

    def _name(self, *exclude: str) -> str:
        while True:
            name = _NAME_POOL[int(self._rng.random() * len(_NAME_POOL))]
            if name not in exclude:
                return name

    def _solo(self, a: str) -> str:
        pick = self._pick
        p, _, s, _ = NAME_INFO[a]
        self.counts["pronoun"] += 1
        frame = pick(SOLO_FRAMES)
        react = pick(REACTIONS).format(p=p, s=s)
        return frame.format(
            a=a,
            p=p,
            act=pick(PRONOUN_ACTIONS),
            sit=pick(IOI_SITUATIONS),
            react=react,
            feel=pick(FEELINGS),
            want=pick(WANTS),
        )

    def _pair(self, a: str, b: str) -> str:
        pick = self._pick
        self.counts["ioi_same" if GENDER[a] == GENDER[b] else "ioi_opposite"] += 1
        vp = pick(pick(_IOI_VPS)).format(o=NAME_INFO[a][1])
        return pick(PAIR_FRAMES).format(a=a, b=b, sit=pick(IOI_SITUATIONS), feel=pick(FEELINGS), vp=vp)

    def _rich_frame(self, a: str, b: str, frames: tuple) -> tuple[str, str]:
        """(text, group) of one rich frame about the referent ``a`` and the other character ``b``."""
        pick = self._pick
        draws, groups = frames
        group = pick(draws)
        template, slots = pick(groups[group])
        p, o, s, _ = NAME_INFO[a]
        words = {slot: pick(RICH_SLOT_LISTS[slot]) for slot in slots if slot in RICH_SLOT_LISTS}
        if "c" in slots:
            # Solo frames take the story's other character half the time; pair frames, where b already acts,
            # always a third name. Either gender: the grammar, not the gender, picks the referent.
            c = b if "b" not in slots and self._rng.random() < 0.5 else self._name(a, b)
            self.counts["distractor_same" if GENDER[c] == GENDER[a] else "distractor_opposite"] += 1
            words["c"] = c
        if "react" in slots:
            words["react"] = pick(REACTIONS).format(p=p, s=s)
        if "vp" in slots:
            words["vp"] = pick(pick(_IOI_VPS)).format(o=o)
        return template.format(a=a, b=b, p=p, **words), group

    def _rich_solo(self, a: str, b: str) -> str:
        text, group = self._rich_frame(a, b, _RICH_SOLO)
        self.counts["pronoun"] += 1
        self.counts[f"pronoun_{group}"] += 1
        return text

    def _rich_pair(self, a: str, b: str) -> str:
        text, group = self._rich_frame(a, b, _RICH_PAIR)
        self.counts["ioi_same" if GENDER[a] == GENDER[b] else "ioi_opposite"] += 1
        self.counts[f"ioi_{group}"] += 1
        if self._rng.random() < _RICH_TAIL_P:
            self.counts["ioi_name"] += 1
            text += self._pick(RICH_PAIR_TAILS).format(a=a, b=b)
        return text

    def _lead(self, addressee: str | None) -> str:
        """Rich variant: a word or a name said before a question or statement, or nothing (basic: nothing, no
        draw). Only quoted lines, which have an addressee, may start with a name."""
        if self.variant == "basic" or self._rng.random() >= _RICH_LEAD_P:
            return ""
        self.counts["qs_lead"] += 1
        leads = RICH_LEADS if addressee else RICH_LEADS[:-1]
        return self._pick(leads).format(b=addressee)

    def _qs_pair(self) -> tuple[str, str]:
        """A question and the statement made of the same words in another order."""
        pick = self._pick
        q, s = pick(QS_FORMS if self.variant == "basic" else RICH_QS_FORMS)
        xb = pick(BE_SUBJECTS)
        past = self._rng.random() < 0.3
        thing = pick(_THINGS)
        wh_do, wh_can = pick(WH_DO), pick(WH_CAN)
        third = self._name() if self._rng.random() < 0.5 else pick(("he", "she"))
        x = third if self._rng.random() < 0.3 else pick(("i", "you", "we", "they"))
        slots = dict(
            m=pick(MODALS),
            x=x,
            v=pick(QS_VPS),
            vme=pick(QS_VPS_ME),
            xd=pick(("i", "you", "we", "they")),
            x3=third,
            be=xb[2] if past else xb[1],
            xb=xb[0],
            pred=pick(BE_PREDICATES),
            thing=thing,
            tadj=pick(THING_ADJ[thing]),
            wh=wh_do[0],
            wq=wh_do[1],
            ws=wh_do[2],
            whc=wh_can[0],
            wcq=wh_can[1],
            wcs=wh_can[2],
            name=self._name(),
            obj=pick(OBJECTS),
            place=pick(PLACES),
            cont=pick(CONTAINERS),
        )
        return q.format(**slots), s.format(**slots)

    def _dialogue(self, a: str, b: str) -> str:
        q, s = self._qs_pair()
        lead = self._lead(b)  # said by a to b; in question-and-answer only before the question
        r = self._rng.random()
        self.counts["dialogue"] += 1
        if r < 0.3:  # question and answer: one of each, two quoted lines
            self.counts["question"] += 1
            self.counts["statement"] += 1
            self.counts["dialogue"] += 1
            yes = "" if q.split(" ", 1)[0] in WH_WORDS else self._pick(YES)  # "yes" answers yes/no only
            return self._pick(DIALOGUE_QA).format(q=lead + q, s=s[:-1], a=a, b=b, yes=yes)
        if r < 0.65:
            self.counts["question"] += 1
            return self._pick(DIALOGUE_Q).format(q=lead + q, a=a)
        self.counts["statement"] += 1
        return self._pick(DIALOGUE_S).format(s=lead + s[:-1], a=a)

    def _narrated_qs(self) -> str:
        q, s = self._qs_pair()
        lead = self._lead(None)  # before the first sentence
        r = self._rng.random()
        if r < 0.3:
            self.counts["question"] += 1
            self.counts["statement"] += 1
            return f"{lead}{q} {s}"
        self.counts["question" if r < 0.65 else "statement"] += 1
        return lead + (q if r < 0.65 else s)

    def _fill(self, a: str, b: str, templates: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
        """One of ``templates`` (from ``_with_slots``) with its slots drawn from their word lists."""
        pick = self._pick
        template, slots = pick(templates)
        words = {slot: pick(SLOT_LISTS[slot]) for slot in slots}
        return template.format(a=a, b=b, s=NAME_INFO[a][2], kid=NAME_INFO[a][3], **words)

    def story(self) -> str:
        """One story of 3-8 units: mostly an opening, a body about two characters, maybe an ending."""
        rng, pick = self._rng, self._pick
        basic = self.variant == "basic"
        a = self._name()
        b = self._name(a)
        # A quarter of the stories start straight with a body unit, so that task prompts, which follow
        # <eos> directly ("<eos> when mia went to the park,"), look like story openings.
        parts = [self._fill(a, b, _OPENING_SLOTS)] if rng.random() >= 0.25 else []
        for _ in range(2 + int(rng.random() * 5) + (not parts)):
            unit = pick(_UNITS)
            x, y = (a, b) if rng.random() < 0.6 else (b, a)  # the main character is usually first
            if unit == "solo":
                parts.append(self._solo(x) if basic else self._rich_solo(x, y))
            elif unit == "pair":
                parts.append(self._pair(x, y) if basic else self._rich_pair(x, y))
            elif unit == "dialogue":
                parts.append(self._dialogue(x, y))
            elif unit == "narrated_qs":
                parts.append(self._narrated_qs())
            else:
                self.counts[unit] += 1
                parts.append(self._fill(x, y, _FILLER_SLOTS if unit == "filler" else _EXCLAIM_SLOTS))
        if rng.random() < 0.6:
            parts.append(self._fill(a, b, _ENDING_SLOTS))
        return _AN_RE.sub("an ", " ".join(parts))


def generate_stories(seed: int, n: int, variant: str = "basic") -> list[str]:
    """The first ``n`` stories of the train stream for ``seed`` (and corpus ``variant``)."""
    gen = StoryGenerator(seed, variant=variant)
    return [gen.story() for _ in range(n)]


def question_statement_pairs(seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` (question ending in "?", statement ending in ".") pairs from the corpus's own grammar.

    Drawn from a stream separate from the stories (same seed, different RNG), e.g.
    ("can you see the bird?", "you can see the bird.").
    """
    gen = StoryGenerator(seed, stream="questions")
    return [gen._qs_pair() for _ in range(n)]
