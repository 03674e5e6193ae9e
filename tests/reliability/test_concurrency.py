"""Concurrency (issue 12): two and four processes on one key (probe; trial), and on different
keys in one store: every process succeeds, each entry is computed once and equals the
reference, ``cache verify`` is clean."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from .helpers import TASKS, entry_arrays, probe_args, stripped_json, trial_args, world

pytestmark = pytest.mark.slow


def _all(procs):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        outs.append(out)
    return outs


def _same_as(c, snap, kinds):
    for kind in kinds:
        got, want = entry_arrays(c.home, kind), entry_arrays(snap, kind)
        assert got.keys() == want.keys(), kind
        for name in got:
            if got[name] != want[name] and name.endswith(".json"):
                assert stripped_json(c.home / name) == stripped_json(snap / name)
            assert got[name] == want[name], name


def _verify(c):
    r = c.run("cache", "verify", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["damaged"] == [] and doc["unrecognised"] == [], doc
    assert doc["stray_temporaries"] == []


@pytest.mark.parametrize("n", [2, 4])
def test_probes_on_one_key(n, pipeline, tmp_path):
    ref, snaps, _ = pipeline
    c = world(tmp_path / "w", ref.model, ref.tasks)
    outs = _all([c.popen(*probe_args(c), "--json") for _ in range(n)])
    computed = Counter(t["task"] for out in outs for t in json.loads(out)["tasks"]
                       if not t["cached"])
    assert computed == Counter(TASKS), f"each task computed once, not {computed}"
    _same_as(c, snaps["probe"], ["probe"])
    _verify(c)


@pytest.mark.parametrize("n", [2, 4])
def test_trials_on_one_key(n, pipeline, tmp_path):
    ref, snaps, _ = pipeline
    c = world(tmp_path / "w", ref.model, ref.tasks, start=snaps["probe"])
    _all([c.popen(*trial_args(c), "--json") for _ in range(n)])
    metas = sorted((c.home / "trial-run").rglob("meta.json"))
    want = sorted((snaps["trial"] / "trial-run").rglob("meta.json"))
    assert len(metas) == len(want)
    _same_as(c, snaps["trial"], ["trial", "trial-run"])
    _verify(c)


def test_different_keys_in_one_store(pipeline, tmp_path):
    ref, snaps, _ = pipeline
    c = world(tmp_path / "w", ref.model, ref.tasks)
    _all([c.popen(*probe_args(c, t)) for t in TASKS])
    _same_as(c, snaps["probe"], ["probe"])
    _verify(c)
