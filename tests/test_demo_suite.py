"""The built-in demo suite (DESIGN.md §7): planted sibling tasks, deterministic and leak-free."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

import pytest

from gradts_engine.tasks import demo, demo_rows
from gradts_engine.tasks.demo import (
    DEFAULT_SIZES,
    DEMO_SUITE,
    DEMO_TASKS,
    FAMILIES,
    GENERATOR_VERSION,
    SIBLINGS,
    TASK_INFO,
    DemoTaskInfo,
    generate,
)

SPLITS = ("train", "dev", "test")
PAIR_TASKS = ("match_person", "match_city")

# Closed-class words that any two tasks may share; everything else counts as content.
FUNCTION_WORDS = frozenset(
    """
    the a an this that my your our their its his her i we you she he it they me
    is are was were be been has have had do does did
    not never
    of to in on at for with by from into after before until across through over under above
    near behind beside inside so and or as all
    """.split()  # noqa: SIM905
)


@cache
def rows(task: str, split: str, seed: int = 0) -> tuple[dict, ...]:
    return tuple(generate(task, split, seed=seed))


def key(task: str, row: dict) -> str:
    return "\x1f".join(row[f] for f in TASK_INFO[task].text_fields)


def content_words(task: str) -> set[str]:
    words: set[str] = set()
    for split in SPLITS:
        for row in rows(task, split):
            for field in TASK_INFO[task].text_fields:
                words.update(row[field].split())
    return words - FUNCTION_WORDS


# --- the declarations ------------------------------------------------------------------------


def test_declarations_are_consistent() -> None:
    assert DEMO_SUITE == "demo"
    assert isinstance(GENERATOR_VERSION, int)
    assert DEFAULT_SIZES == {"train": 600, "dev": 200, "test": 200}
    assert len(DEMO_TASKS) == 8 == len(set(DEMO_TASKS))
    assert all(t.isidentifier() for t in DEMO_TASKS)
    assert sorted(t for pair in FAMILIES.values() for t in pair) == sorted(DEMO_TASKS)
    assert set(SIBLINGS) == set(DEMO_TASKS)
    for task, sibling in SIBLINGS.items():
        assert sibling != task and SIBLINGS[sibling] == task
        assert TASK_INFO[task].family == TASK_INFO[sibling].family
    for family, (a, b) in FAMILIES.items():
        assert TASK_INFO[a].family == TASK_INFO[b].family == family
    for name, info in TASK_INFO.items():
        assert isinstance(info, DemoTaskInfo) and info.name == name and info.description
        assert info.text_fields in (("text_a",), ("text_a", "text_b"))
        assert len(info.labels) == 2 == len(set(info.labels))
    assert {t for t in DEMO_TASKS if len(TASK_INFO[t].text_fields) == 2} == set(PAIR_TASKS)
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass: FrozenInstanceError
        TASK_INFO["neg_movie"].name = "x"  # type: ignore[misc]


def test_unknown_task_or_split_and_bad_n() -> None:
    with pytest.raises(KeyError):
        generate("sst2", "train")
    with pytest.raises(KeyError):
        generate("neg_movie", "validation")
    with pytest.raises(ValueError):
        generate("neg_movie", "train", n=-1)


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_deterministic_and_seed_dependent(task: str) -> None:
    assert generate(task, "dev", n=50) == generate(task, "dev", n=50)
    assert generate(task, "dev", n=50, seed=1) == generate(task, "dev", n=50, seed=1)
    assert generate(task, "dev", n=50, seed=1) != generate(task, "dev", n=50, seed=0)
    assert generate(task, "dev", n=50) != generate(task, "test", n=50)


def _digest(module: object) -> str:
    out = {t: module.generate(t, s, n=20) for t in DEMO_TASKS for s in SPLITS}  # type: ignore[attr-defined]
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()


def test_stable_across_processes_and_no_torch_import() -> None:
    """Same rows under another PYTHONHASHSEED (no salted hash()), and the module is pure Python."""
    root = Path(demo.__file__).parents[2]
    code = f"""
import hashlib, json, sys
sys.path.insert(0, {str(root)!r})
from gradts_engine.tasks import demo as m
assert "torch" not in sys.modules and "transformers" not in sys.modules
out = {{t: m.generate(t, s, n=20) for t in m.DEMO_TASKS for s in ("train", "dev", "test")}}
print(hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest())
"""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == _digest(demo)


# --- sizes, fields, labels -------------------------------------------------------------------


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_sizes_fields_and_label_ids(task: str) -> None:
    info = TASK_INFO[task]
    for split in SPLITS:
        got = rows(task, split)
        assert len(got) == DEFAULT_SIZES[split]
        for row in got:
            assert set(row) == {*info.text_fields, "label"}
            for f in info.text_fields:
                assert isinstance(row[f], str) and row[f] == row[f].strip() != ""
                assert "  " not in row[f]
            assert isinstance(row["label"], int) and 0 <= row["label"] < len(info.labels)
    assert generate(task, "train", n=0) == []
    assert len(generate(task, "train", n=7)) == 7
    # A shorter request is a prefix of a longer one.
    assert generate(task, "train", n=37) == list(rows(task, "train")[:37])


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_labels_balanced(task: str) -> None:
    for split in SPLITS:
        counts = Counter(r["label"] for r in rows(task, split))
        n = DEFAULT_SIZES[split]
        assert abs(counts[0] - counts[1]) <= 0.05 * n
        assert abs(counts[0] - counts[1]) <= 1  # balanced by construction
    for n in (1, 2, 11, 50):
        counts = Counter(r["label"] for r in generate(task, "dev", n=n, seed=3))
        assert abs(counts[0] - counts[1]) <= 1


# --- no leakage, distinct texts --------------------------------------------------------------


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_rows_distinct_and_splits_disjoint(task: str) -> None:
    keys = {}
    for split in SPLITS:
        split_keys = [key(task, r) for r in rows(task, split)]
        assert len(split_keys) == len(set(split_keys)), f"duplicate text in {task}/{split}"
        keys[split] = set(split_keys)
    assert not keys["train"] & keys["dev"]
    assert not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]
    # Split membership does not depend on the seed: other seeds never leak across splits either.
    other = {key(task, r) for r in generate(task, "test", n=100, seed=7)}
    assert not other & (keys["train"] | keys["dev"])


# --- the planted structure -------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sibling_content_vocabularies_disjoint(family: str) -> None:
    a, b = FAMILIES[family]
    shared = content_words(a) & content_words(b)
    assert not shared, f"{a} and {b} share content words {sorted(shared)}"


def test_no_content_words_shared_anywhere_in_the_suite() -> None:
    vocab = {t: content_words(t) for t in DEMO_TASKS}
    for i, a in enumerate(DEMO_TASKS):
        for b in DEMO_TASKS[i + 1 :]:
            assert not vocab[a] & vocab[b], (a, b, sorted(vocab[a] & vocab[b]))


def _adjective(text: str) -> tuple[str, bool]:
    """The predicate adjective: the word after the last copula/negator; and whether negated."""
    words = text.split()
    markers = [i for i, w in enumerate(words) if w in {"was", "is", "been", "not", "never"}]
    return words[markers[-1] + 1], ("not" in words or "never" in words)


@pytest.mark.parametrize("task", FAMILIES["negation"])
def test_negation_label_needs_the_negation(task: str) -> None:
    train = rows(task, "train")
    parsed = [(*_adjective(r["text_a"]), r["label"]) for r in train]
    # Half of the rows are negated, and negation alone predicts nothing.
    negated = [lab for _, neg, lab in parsed if neg]
    assert 0.45 <= len(negated) / len(parsed) <= 0.55
    assert 0.4 <= sum(negated) / len(negated) <= 0.6
    # Every adjective occurs with both labels, so the bare adjective is not enough ...
    by_adj: dict[str, Counter] = defaultdict(Counter)
    for adj, _, lab in parsed:
        by_adj[adj][lab] += 1
    assert len(by_adj) >= 16
    for adj, counts in by_adj.items():
        if sum(counts.values()) >= 6:
            assert counts[0] and counts[1], f"{adj!r} always has label {set(counts)}"
    # ... and a per-adjective majority vote is near chance.
    majority = sum(max(c.values()) for c in by_adj.values()) / len(parsed)
    assert majority < 0.7
    # ... while polarity XOR negation explains every label: an adjective's label when not
    # negated is fixed, and negation flips it.
    polarity = {adj: lab for adj, neg, lab in parsed if not neg}
    for adj, neg, lab in parsed:
        if adj in polarity:
            assert lab == (1 - polarity[adj] if neg else polarity[adj])


@pytest.mark.parametrize("task", FAMILIES["agreement"])
def test_agreement_label_is_subject_verb_agreement(task: str) -> None:
    # In this vocabulary, plural nouns and singular present/past verbs end in "s" and the other
    # forms do not: grammatical iff the head noun and the main verb differ in that respect.
    head_at, verb_at = 1, 5 if task == "agree_pp" else 6
    attracted = 0
    train = rows(task, "train")
    for row in train:
        words = row["text_a"].split()
        head, verb = words[head_at], words[verb_at]
        assert row["label"] == int(head.endswith("s") != verb.endswith("s")), row
        attractor = words[4]
        attracted += head.endswith("s") != attractor.endswith("s")
        if task == "agree_rc":  # the relative clause's own verb always agrees with its subject
            assert words[4].endswith("s") != words[5].endswith("s"), row
    # The attractor has the other number half of the time, so "agree with the nearest noun"
    # is right on only half of the rows (chance): the head noun has to be found.
    assert 0.4 <= attracted / len(train) <= 0.6


def test_match_person_labels_and_hard_negatives() -> None:
    shares_one_name = 0
    for row in rows("match_person", "train"):
        first, last = row["text_a"].split()[:2]
        b_words = row["text_b"].split()
        same = any(b_words[i : i + 2] == [first, last] for i in range(len(b_words) - 1))
        assert row["label"] == int(same), row
        if not same and (first in b_words or last in b_words):
            shares_one_name += 1
    assert shares_one_name >= 150  # about 2/3 of the 300 negatives


def test_match_city_labels() -> None:
    cities = set(demo_rows.CITIES)
    for row in rows("match_city", "train"):
        in_a = cities & set(row["text_a"].split())
        in_b = cities & set(row["text_b"].split())
        assert len(in_a) == len(in_b) == 1
        assert row["label"] == int(in_a == in_b)


def test_texts_short_enough_for_max_length_48() -> None:
    # Whitespace words are a lower bound on wordpieces; stay far below 48 to leave room.
    for task in DEMO_TASKS:
        longest = max(
            sum(len(r[f].split()) for f in TASK_INFO[task].text_fields) for r in rows(task, "train")
        )
        assert longest <= 32, (task, longest)


def test_vocabulary_covers_every_word_of_the_rows() -> None:
    sizes = {"train": 30, "dev": 10}
    vocab = demo.vocabulary(sizes)
    assert vocab == sorted(set(vocab))
    for task in demo.DEMO_TASKS:
        for split, n in sizes.items():
            for row in demo.generate(task, split, n):
                assert set((row["text_a"] + " " + row.get("text_b", "")).split()) <= set(vocab)
