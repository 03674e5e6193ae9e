"""The built-in demo suite: synthetic sibling tasks with a planted answer (DESIGN.md §7).

GradTS ranks candidate auxiliary tasks for a primary task by how well their attention-head
importance matrices agree (Kendall tau-b). To show that the ranking means something, the demo
suite is built so that the right answer is known in advance: it consists of **families of two
sibling tasks** that need the same linguistic skill but share no content vocabulary and no
sentence template. For every task, its sibling should be the top-ranked candidate.

The four families (DESIGN.md §7 measured an earlier suite of this shape with a pretrained
MiniLM: sibling top-ranked in 31 of 32 task-seed cases at 600 training examples, 1 epoch, lr
1e-4, the ``during`` estimator; see ``tests/test_demo_e2e.py`` for what this version gives):

* ``negation`` -- the label is the polarity of an adjective, flipped by "not". ``neg_movie``
  uses film-review vocabulary and past-tense templates; ``neg_product`` uses shopping
  vocabulary and present-tense templates. Each task has 8 common, clearly positive and 8
  clearly negative adjectives and short templates, so that one epoch learns the task (with
  large adjective sets and "not"/"never", generator version 1, it often did not). Half of the
  rows are negated and the adjective's own polarity is balanced against the label, so the bare
  adjective predicts nothing: the negation has to be read.
* ``agreement`` -- is the copula's number right? ``agree_pp`` puts a prepositional-phrase
  attractor between subject and verb ("the keys to the cabinet are/is rusty"); ``agree_rc``
  puts a relative clause there ("the author that the guards admire is/are calm"). Both end in
  "is"/"are" or "was"/"were" and an adjective. The attractor's number differs from the
  subject's in half of the rows, so "agree with the nearest noun" is at chance. One epoch does
  not learn this family (dev accuracy about 0.5, also with easier variants that were tried):
  its siblings are recovered, when they are, from the shared sentence frame ("the N ... the N
  ... is/are ADJ") rather than a learned skill.
* ``pair_match`` -- sentence pairs (``text_a``, ``text_b``): do both sentences mention the
  same person (``match_person``: full names; half of the negatives share the first or last
  name) / the same city (``match_city``)?
* ``topic`` -- sports vs politics headlines (``topic_news``); gardening vs cooking tips
  (``topic_home``). In both, one cue phrase ("the derby", "the tax bill"; "pruning roses",
  "braising lamb") sits in a neutral frame shared by both classes and is followed by a neutral
  tail ("... according to an early report"; "... without spending a fortune on it"), so the
  topic is read from that phrase alone and both tasks have sentences of 10-17 words, longer
  than the other single-sentence families (with short frames, generator version 1, the topic
  siblings were often out-ranked by the agreement tasks).

There is deliberately no sentiment family: §7 found that one shares lexical polarity/class
skills with negation and topic and blurs the planted structure. Content vocabularies are
disjoint between siblings (and, in this version, across the whole suite); only closed-class
function words ("the", "is", "not", ...) are shared. Texts are lowercase words separated by
single spaces, short enough for max length 48 (pairs included).

Generation is pure Python (no torch) and deterministic in ``(task, split, n, seed,
GENERATOR_VERSION)``: a ``random.Random`` seeded from a SHA-256 of ``"task|split|seed|vN"``
(never Python's salted ``hash()``). Splits draw from independent RNG streams and never share a
text: every candidate text (for pairs, the pair) is assigned to exactly one split by a SHA-256
of the task and the text (3/5 train, 1/5 dev, 1/5 test), independent of the seed, and a split
only accepts texts of its own bucket. So no text of one split appears in another split of the
same task, for any seeds. Rows within a split are distinct. Labels are balanced by
construction: rows are drawn in blocks that contain every (label, nuisance) combination once,
in shuffled order with labels paired, so the label counts of any prefix differ by at most one,
and ``generate(t, s, 100)`` is the first 100 rows of ``generate(t, s, 600)``. Each task's text
space holds thousands of distinct texts per label, far more than the default 600/200/200.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from .demo_rows import (  # the words and row makers
    MOVIE_GENRES,
    MOVIE_NEG,
    MOVIE_NOUNS,
    MOVIE_POS,
    MOVIE_TEMPLATES,
    PRODUCT_COLORS,
    PRODUCT_NEG,
    PRODUCT_NOUNS,
    PRODUCT_POS,
    PRODUCT_TEMPLATES,
    Maker,
    Row,
    make_agree_pp,
    make_agree_rc,
    make_match_city,
    make_match_person,
    make_topic_home,
    make_topic_news,
    negation_maker,
)

__all__ = [
    "DEFAULT_SIZES",
    "DEMO_SUITE",
    "DEMO_TASKS",
    "FAMILIES",
    "GENERATOR_VERSION",
    "SIBLINGS",
    "TASK_INFO",
    "DemoTaskInfo",
    "generate",
    "vocabulary",
]

DEMO_SUITE: str = "demo"
GENERATOR_VERSION: int = 2  # bump whenever the generated rows change: it is part of cache keys
DEFAULT_SIZES: dict[str, int] = {"train": 600, "dev": 200, "test": 200}

# Every candidate text belongs to exactly one split: bucket = sha256(task, text) mod 5.
_SPLIT_BUCKETS: dict[str, frozenset[int]] = {
    "train": frozenset({0, 1, 2}),
    "dev": frozenset({3}),
    "test": frozenset({4}),
}
_N_BUCKETS = 5
_MAX_TRIES_PER_ROW = 20_000


@dataclass(frozen=True)
class DemoTaskInfo:
    """Declaration of one demo task: its family, input fields and label names (index = id)."""

    name: str
    family: str
    description: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _TaskSpec:
    info: DemoTaskInfo
    # One block of combos; within it labels alternate 0, 1, 0, 1, ... (see _combo_block).
    combos: tuple[tuple[int, ...], ...]
    make: Maker


_SINGLE = ("text_a",)
_PAIR = ("text_a", "text_b")
_LABEL_ONLY = ((0,), (1,))
# (label, nuisance) with labels alternating, so any prefix of a block is balanced to within 1.
_LABEL_BY_BINARY = ((0, 0), (1, 0), (0, 1), (1, 1))

_SPECS: dict[str, _TaskSpec] = {
    spec.info.name: spec
    for spec in (
        _TaskSpec(
            DemoTaskInfo(
                "neg_movie",
                "negation",
                "Film reviews: is the verdict positive? Adjective polarity flipped by "
                "'not' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            negation_maker(
                {
                    "noun": MOVIE_NOUNS,
                    "genre": MOVIE_GENRES,
                },
                MOVIE_TEMPLATES,
                MOVIE_POS,
                MOVIE_NEG,
            ),
        ),
        _TaskSpec(
            DemoTaskInfo(
                "neg_product",
                "negation",
                "Product reviews: is the verdict positive? Adjective polarity flipped by "
                "'not' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            negation_maker(
                {"noun": PRODUCT_NOUNS, "color": PRODUCT_COLORS},
                PRODUCT_TEMPLATES,
                PRODUCT_POS,
                PRODUCT_NEG,
            ),
        ),
        _TaskSpec(
            DemoTaskInfo(
                "agree_pp",
                "agreement",
                "Subject-verb agreement across a prepositional-phrase attractor "
                "('the keys to the cabinet are rusty'): grammatical or not.",
                _SINGLE,
                ("ungrammatical", "grammatical"),
            ),
            _LABEL_BY_BINARY,
            make_agree_pp,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "agree_rc",
                "agreement",
                "Subject-verb agreement across a relative clause "
                "('the author that the guards admire is calm'): grammatical or not.",
                _SINGLE,
                ("ungrammatical", "grammatical"),
            ),
            _LABEL_BY_BINARY,
            make_agree_rc,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "match_person",
                "pair_match",
                "Sentence pair: do both sentences mention the same person (full name)?",
                _PAIR,
                ("different", "same"),
            ),
            _LABEL_ONLY,
            make_match_person,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "match_city",
                "pair_match",
                "Sentence pair: do both sentences mention the same city?",
                _PAIR,
                ("different", "same"),
            ),
            _LABEL_ONLY,
            make_match_city,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "topic_news",
                "topic",
                "Headline topic: sports or politics.",
                _SINGLE,
                ("sports", "politics"),
            ),
            _LABEL_ONLY,
            make_topic_news,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "topic_home",
                "topic",
                "Household tip topic: gardening or cooking.",
                _SINGLE,
                ("gardening", "cooking"),
            ),
            _LABEL_ONLY,
            make_topic_home,
        ),
    )
}

DEMO_TASKS: tuple[str, ...] = tuple(_SPECS)
TASK_INFO: dict[str, DemoTaskInfo] = {name: spec.info for name, spec in _SPECS.items()}
FAMILIES: dict[str, tuple[str, str]] = {
    "negation": ("neg_movie", "neg_product"),
    "agreement": ("agree_pp", "agree_rc"),
    "pair_match": ("match_person", "match_city"),
    "topic": ("topic_news", "topic_home"),
}
SIBLINGS: dict[str, str] = {}
for _a, _b in FAMILIES.values():
    SIBLINGS[_a], SIBLINGS[_b] = _b, _a
del _a, _b


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _row_key(row: Row, fields: tuple[str, ...]) -> str:
    return "\x1f".join(str(row[f]) for f in fields)


def _split_of(task: str, key: str) -> str:
    bucket = _stable_int(f"{task}\x1e{key}") % _N_BUCKETS
    for split, buckets in _SPLIT_BUCKETS.items():
        if bucket in buckets:
            return split
    raise AssertionError("unreachable: every bucket belongs to a split")


def generate(task: str, split: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """Generate ``n`` rows (default ``DEFAULT_SIZES[split]``) of a demo task's split.

    Rows are ``{"text_a": str, "label": int}`` plus ``"text_b"`` for pair tasks. Deterministic
    in ``(task, split, n, seed, GENERATOR_VERSION)``; a shorter ``n`` gives a prefix of a longer
    one. Raises ``KeyError`` for an unknown task or split, ``ValueError`` for a negative ``n`` or
    one larger than the split's share of the task's text space allows.
    """
    if task not in _SPECS:
        raise KeyError(f"unknown demo task {task!r}; known: {', '.join(DEMO_TASKS)}")
    if split not in _SPLIT_BUCKETS:
        raise KeyError(f"unknown split {split!r}; known: {', '.join(_SPLIT_BUCKETS)}")
    if n is None:
        n = DEFAULT_SIZES[split]
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    spec = _SPECS[task]
    fields = spec.info.text_fields
    rng = random.Random(_stable_int(f"{task}|{split}|{seed}|v{GENERATOR_VERSION}"))

    rows: list[dict] = []
    seen: set[str] = set()
    block: list[tuple[int, ...]] = []
    while len(rows) < n:
        if not block:
            # Shuffle label-balanced pairs of combos, keeping labels alternating within the
            # block: shuffle the nuisance values, then the order of (0, 1) within each pair.
            block = _combo_block(rng, spec.combos)
        combo = block.pop(0)
        for _ in range(_MAX_TRIES_PER_ROW):
            row = spec.make(rng, combo)
            key = _row_key(row, fields)
            if key not in seen and _split_of(task, key) == split:
                seen.add(key)
                rows.append(row)
                break
        else:
            raise ValueError(
                f"cannot draw {n} distinct rows for demo task {task!r} split {split!r}: the "
                f"text space ran out after {len(rows)}; ask for fewer rows"
            )
    return rows


def _combo_block(rng: random.Random, combos: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    """One block covering every combo once; labels of consecutive pairs are {0, 1}, so any
    prefix of the concatenated blocks has label counts differing by at most one."""
    by_label: dict[int, list[tuple[int, ...]]] = {}
    for combo in combos:
        by_label.setdefault(combo[0], []).append(combo)
    zeros, ones = list(by_label[0]), list(by_label[1])
    rng.shuffle(zeros)
    rng.shuffle(ones)
    block: list[tuple[int, ...]] = []
    for zero, one in zip(zeros, ones, strict=True):
        block.extend((zero, one) if rng.random() < 0.5 else (one, zero))
    return block


def vocabulary(sizes: Mapping[str, int] | None = None, seed: int = 0) -> list[str]:
    """The sorted words of the rows :func:`generate` gives every task for ``sizes`` (split ->
    number of rows; default 60 training rows): the vocabulary of a tiny test tokenizer that
    reads the demo texts without unknown words (``models.make_tiny_model(words=...)``)."""
    words: set[str] = set()
    for task in DEMO_TASKS:
        for split, n in (sizes or {"train": 60}).items():
            for row in generate(task, split, n, seed):
                words.update(row["text_a"].split())
                words.update(row.get("text_b", "").split())
    return sorted(words)
