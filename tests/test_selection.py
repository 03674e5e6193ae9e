"""selection/: results stored by the previous format still load; run keys are unchanged; the
one codec round-trips every record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gradts_engine.mtl import MTLSettings
from gradts_engine.selection.fg import load_fg_result
from gradts_engine.selection.ledger import RunContext, run_key
from gradts_engine.selection.records import (
    AuxKept,
    Cut,
    FgResult,
    NoiseVerdict,
    TrialSummary,
    decode,
    encode,
)
from gradts_engine.selection.trial import load_trial_summary
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

# Written by the code before the selection/ package (gradts_engine/trial.py and fg.py at
# commit 5be623d) with the fake trainers of tests/test_trial.py and tests/test_fg.py: a trial
# with 2 seeds, --compare random,all and --holdout-fraction 0.5, then fg with two thresholds.
LEGACY = Path(__file__).parent / "data" / "legacy"
PRIMARY, AUX = "neg_movie", ["neg_product", "topic_news"]


def _store_entry(store: Store, kind: str, name: str, d: dict) -> None:
    key = store.key(kind, ["m", d["primary"]], {"legacy": True})
    with store.writer(key, info={"primary": d["primary"], "model_name": d["model_name"]}) as w:
        w.save_json(name, d)


def test_a_trial_summary_of_the_previous_format_loads(store_root: Path) -> None:
    stored = json.loads((LEGACY / "trial_summary.json").read_text())
    store = Store(store_root)
    _store_entry(store, "trial", "summary", stored)
    s = load_trial_summary(store, stored["model_name"], PRIMARY)
    assert isinstance(s, TrialSummary)
    assert s.primary == PRIMARY and s.seeds == (2018, 2019) and len(s.trials) >= 2
    assert s.baseline.aux == () and s.selected == tuple(stored["selected"])
    assert [c.role for c in s.comparisons] == [c["role"] for c in stored["comparisons"]]
    assert [h.kind for h in s.holdout] == ["test", "holdout"]
    assert s.verdict.level == pytest.approx(0.9)
    assert s.probes == {}                                # a field the old format lacks
    again = s.to_json()
    assert again.pop("probes") == {}
    assert again.pop("distributed") == {}                # nor this one (torchrun's runs)
    assert again == stored                               # the same layout, value for value


def test_an_fg_result_of_the_previous_format_loads(store_root: Path) -> None:
    stored = json.loads((LEGACY / "fg_result.json").read_text())
    store = Store(store_root)
    _store_entry(store, "fg", "result", stored)
    r = load_fg_result(store, stored["model_name"], PRIMARY)
    assert isinstance(r, FgResult)
    assert [row.cut for row in r.rows] == [Cut("threshold", 0.3), Cut("threshold", 1.0)]
    assert r.rows[1].primary_alone and r.rows[1].kept_total == 0
    assert r.baseline.source in ("ledger", "trained") and r.trial is not None
    again = r.to_json()
    assert again.pop("probes") == {}
    assert again.pop("distributed") == {}
    assert again == stored


def test_run_keys_are_those_of_the_previous_format() -> None:
    """Resume across the change: the ledger builds the very keys the old code built."""
    want = json.loads((LEGACY / "run_keys.json").read_text())
    reg = build_registry(include_user=False, demo_sizes={"train": 40, "dev": 20, "test": 20})
    specs = {n: reg.get(n) for n in [PRIMARY, *AUX]}
    ctx = RunContext("m", "m", reg.get(PRIMARY), specs, dict.fromkeys(specs, "fp"),
                     {PRIMARY: "probe/p", AUX[0]: "probe/a"}, MTLSettings(epochs=1), "fp32",
                     {"split": "dev", "report": ["test"]})
    store = Store("/nonexistent-never-written")
    key = run_key(store, ctx, tuple(AUX), 2018)
    assert [str(key), key.digest] == want["plain"]
    subsets = {AUX[0]: np.array([1, 3, 5]), AUX[1]: np.array([0, 2])}
    fkey = run_key(store, ctx, tuple(AUX), 2018, subsets)
    assert [str(fkey), fkey.digest] == want["subsets"]


def test_codec_round_trip_and_defaults() -> None:
    v = NoiseVerdict(0.1, None, 0.3, 0.9, None, True, "m", 5, 10)
    assert decode(NoiseVerdict, encode(v)) == v
    # a missing field takes its default; null in a float field is NaN; unknown keys ignored
    k = decode(AuxKept, {"task": "a", "kept": 2, "total": 4, "min_tau": None, "extra": 1})
    assert k.n_nan == 0 and math.isnan(k.min_tau) and k.fraction == 0.5
    assert encode(k)["min_tau"] is None
