"""Tests for GradTS-fg: instance selection against a direct SciPy computation, keep-fraction
counts, sweeps, stored selections, the run ledger (resume), keep-nothing, the trial link and
errors.

Training is replaced by a fake trainer (scores scripted from the number of kept instances)
except in one test that trains a tiny random model for real; probe entries (task matrices
and per-instance matrices) are written directly into the store in the format that
gradts_engine/results.py documents.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.stats

from gradts_engine import results
from gradts_engine.config import FgSettings, RunSettings, TrialSettings
from gradts_engine.data import data_fingerprint
from gradts_engine.errors import ConfigError, MissingResultError, UsageError
from gradts_engine.models import resolve_model
from gradts_engine.mtl import EpochRecord, MTLResult
from gradts_engine.selection.cuts import (
    find_selections,
    load_selection,
    make_cuts,
    select_instances,
)
from gradts_engine.selection.fg import load_fg_result, run_fg
from gradts_engine.selection.ledger import read_run
from gradts_engine.selection.records import Cut
from gradts_engine.signal import ImportanceSignal
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

SIZES = {"train": 40, "dev": 20, "test": 20}
PRIMARY = "neg_movie"
AUX = ["neg_product", "topic_news"]
L, H = 3, 4


@pytest.fixture(scope="module")
def reg():
    return build_registry(include_user=False, demo_sizes=SIZES)


def write_probe(store: Store, model: str, spec, during: np.ndarray, R: np.ndarray | None,
                *, chunk: int = 16, settings: dict | None = None, data_fp: str | None = None
                ) -> None:
    """A probe entry as gradts_engine/results.py documents it (task + instance chunks)."""
    during = np.asarray(during, np.float64)
    key = results.probe_key(store, model_cache_id=resolve_model(model).cache_id,
                            model_name=model, task=spec.name, task_fingerprint=spec.fingerprint(),
                            data_fingerprint=data_fp or data_fingerprint(spec, store=store),
                            measure="gate",
                            settings=settings or {"epochs": 1})
    chunks = []
    with store.writer(key) as w:
        m = (during / during.sum(-1, keepdims=True)).astype(np.float32)
        w.save_arrays("task", {"during": m, "after": m, "during_raw": m, "after_raw": m})
        if R is not None:
            for k, a in enumerate(range(0, len(R), chunk)):
                w.save_arrays(f"instances-{k:05d}", {
                    "R": R[a:a + chunk].astype(np.float32),
                    "index": np.arange(a, min(len(R), a + chunk), dtype=np.int64)})
                chunks.append(f"instances-{k:05d}")
        w.info.update(task_name=spec.name, model_name=model,
                      num_instances=0 if R is None else len(R), num_layers=L, num_heads=H,
                      model_type="bert", chunks=chunks)


def probe_suite(store: Store, model: str, reg, *, seed: int = 0, instances=True) -> dict:
    """Primary pattern ``base``; each aux instance = base or noise, mixed (tau spread wide)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.0, (L, H))
    write_probe(store, model, reg.get(PRIMARY), base, None)
    Rs = {}
    for t in AUX:
        n = SIZES["train"]
        w = np.linspace(0.0, 1.0, n)[:, None, None]                     # (n, 1, 1)
        noise = rng.gamma(2.0, 1.0, (n, L, H))
        R = w * base[None] * np.exp(0.1 * rng.standard_normal((n, L, H))) + (1 - w) * noise
        R = R[rng.permutation(n)]
        Rs[t] = R
        write_probe(store, model, reg.get(t), base * 1.1, R if instances else None)
    return {"base": base, **Rs}


def reference_taus(base: np.ndarray, R: np.ndarray) -> np.ndarray:
    """SciPy's Kendall tau-b of the primary vector against each layer-L1-normalised R_i."""
    x = (base / base.sum(-1, keepdims=True)).astype(np.float32).astype(np.float64).ravel()
    out = []
    for Ri in R.astype(np.float32).astype(np.float64):
        v = Ri / Ri.sum(-1, keepdims=True)
        out.append(scipy.stats.kendalltau(x, v.ravel()).statistic)
    return np.array(out)


class FakeTrainer:
    """Scripted best-epoch accuracy: 0.5 + 0.004 per kept auxiliary instance (all if none)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, ref, primary, aux, *, seed, subsets=None, eval_index=None, report=None,
                 **kw) -> MTLResult:
        names = tuple(a.name for a in aux)
        subsets = dict(subsets or {})
        self.calls.append({"aux": names, "seed": seed, "subsets": subsets})
        n_kept = sum(len(subsets[a]) if a in subsets else SIZES["train"] for a in names)
        acc = min(1.0, 0.5 + 0.004 * n_kept + 0.01 * (seed - 2018))
        y = np.arange(SIZES["dev"]) % 2
        right = int(round(acc * len(y)))
        pred = np.where(np.arange(len(y)) < right, y, 1 - y)
        acc = float((pred == y).mean())
        return MTLResult(
            primary=primary.name, aux=names, seed=seed,
            epochs=(EpochRecord(1, {primary.name: 0.5}, {primary.name: 40}, {"accuracy": acc},
                                0.01),),
            best_epoch=1, best_metrics={"accuracy": acc}, main_metric="accuracy", seconds=0.01,
            dev_predictions=pred, dev_labels=y, dev_index=np.arange(len(y)),
            report_metrics={name: {"accuracy": acc} for name in (report or {})},
            train_sizes={primary.name: 40, **{a: len(subsets.get(a, range(40))) for a in names}})


def go(reg, store, model, fake, *, aux=AUX, trial=None, thresholds=None, keep_fraction=None,
       seeds=None, method=None, **kw):
    trial = trial or TrialSettings(epochs=1)
    if seeds is not None:
        trial = dataclasses.replace(trial, seeds=seeds)
    return run_fg(model, reg.get(PRIMARY), None if aux is None else [reg.get(a) for a in aux],
                  store=store, run=RunSettings(device="cpu"), trial_settings=trial,
                  cuts=make_cuts(thresholds, keep_fraction), signal=ImportanceSignal.parse(
                      method=method), train_fn=fake, registry=reg, **kw)


# -- selection -------------------------------------------------------------------------------
def test_selection_matches_direct_scipy_computation(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    planted = probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    res = go(reg, store, model_dir, fake, thresholds=[0.3])
    (row,) = res.rows
    for t in AUX:
        tau = reference_taus(planted["base"], planted[t])
        want = np.flatnonzero(tau >= 0.3)
        assert 0 < want.size < SIZES["train"]          # the planted spread straddles 0.3
        k = next(k for k in row.kept if k.task == t)
        assert (k.kept, k.total) == (want.size, SIZES["train"])
        assert k.min_tau == pytest.approx(tau[want].min(), abs=1e-6)
        got = load_selection(store, store.entry(_key_of(store, row.selection_key)))[t]
        assert got.dtype == np.int64 and np.array_equal(got, want)
        # the trainer received exactly these indices
        assert np.array_equal(np.sort(fake.calls[-1]["subsets"][t]), want)
        # the tau distribution reported beside the selection
        d = next(d for d in res.taus if d.task == t)
        assert (d.n, d.n_nan) == (SIZES["train"], 0)
        assert d.max == pytest.approx(tau.max(), abs=1e-6)
        assert d.median == pytest.approx(np.median(tau), abs=1e-6)
        assert d.q90 == pytest.approx(np.quantile(tau, 0.9), abs=1e-6)


def _key_of(store: Store, key_path: str):
    (e,) = [e for e in store.entries("fg-selection") if e.key_path == key_path]
    return store.key(e.kind, e.meta["names"], e.spec)


def test_threshold_is_inclusive_and_nan_never_kept() -> None:
    idx = np.arange(6)
    tau = np.array([0.62, 0.61999, 0.9, np.nan, -0.2, 0.62])
    assert select_instances(idx, tau, Cut("threshold", 0.62)).tolist() == [0, 2, 5]
    assert select_instances(idx, tau, Cut("threshold", -1.0)).tolist() == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("frac,count", [(0.25, 10), (0.5, 20), (0.01, 0), (1.0, 40)])
def test_keep_fraction_keeps_the_right_count(reg, store_root, model_dir, frac, count) -> None:
    store = Store(store_root)
    planted = probe_suite(store, model_dir, reg)
    res = go(reg, store, model_dir, FakeTrainer(), keep_fraction=frac)
    (row,) = res.rows
    assert row.cut == Cut("keep_fraction", frac)
    for k in row.kept:
        assert (k.kept, k.total) == (count, 40)
        if count:
            tau = reference_taus(planted["base"], planted[k.task])
            kept = load_selection(store, _key_of(store, row.selection_key))[k.task]
            top = np.argsort(-tau, kind="stable")[:count]
            assert sorted(kept.tolist()) == sorted(top.tolist())


def test_keep_fraction_ties_broken_by_index() -> None:
    idx = np.array([5, 1, 3, 0])
    tau = np.array([0.5, 0.5, 0.5, np.nan])
    assert select_instances(idx, tau, Cut("keep_fraction", 0.5)).tolist() == [1, 3]
    assert select_instances(idx, tau, Cut("keep_fraction", 1.0)).tolist() == [1, 3, 5]


def test_make_cuts() -> None:
    assert make_cuts(None, None, FgSettings()) == (Cut("threshold", 0.62),)
    assert make_cuts(None, None, FgSettings(keep_fraction=0.3)) == (Cut("keep_fraction", 0.3),)
    assert make_cuts([0.4, 0.5, 0.4], None) == (Cut("threshold", 0.4), Cut("threshold", 0.5))
    with pytest.raises(UsageError):
        make_cuts([0.5], 0.2)
    for bad in ([1.5], [math.nan]):
        with pytest.raises(ConfigError):
            make_cuts(bad, None)
    with pytest.raises(ConfigError):
        make_cuts(None, 0.0)


# -- training, ledger, sweep -----------------------------------------------------------------
def test_sweep_one_row_per_threshold_and_resume(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    sweep = [0.2, 0.4, 0.62, 0.95]
    res = go(reg, store, model_dir, fake, thresholds=sweep)
    assert [r.cut.value for r in res.rows] == sweep
    fr = [r.fraction for r in res.rows]
    assert fr == sorted(fr, reverse=True) and fr[0] > fr[-1]
    # baseline + one run per cut that keeps something (shared runs for identical selections)
    distinct = {tuple(sorted((t, tuple(v)) for t, v in c["subsets"].items()))
                for c in fake.calls if c["aux"]}
    assert len(fake.calls) == 1 + len(distinct) == res.trained
    assert res.baseline.source == "trained" and res.baseline.aux == ()
    for r in res.rows:
        want = 0.5 + 0.004 * r.kept_total if not r.primary_alone else res.baseline.mean
        assert r.mean == pytest.approx(want, abs=0.05 + 1e-9)
        assert r.seeds == (2018,) and r.ledger and r.selection_cached is False
    assert res.best is not None and res.best.cut.value == 0.2
    # the same command again: nothing trained, every selection and run from the store
    again = go(reg, store, model_dir, fake, thresholds=sweep)
    assert again.trained == 0 and len(fake.calls) == res.trained
    assert all(r.all_cached and r.selection_cached for r in again.rows)
    assert again.taus == res.taus and len(res.taus) == len(AUX)
    assert [r.mean for r in again.rows] == [r.mean for r in res.rows]
    assert again.baseline.source == "ledger"
    # --force recomputes the selections and retrains the fg runs (not the baseline)
    forced = go(reg, store, model_dir, fake, thresholds=sweep, force=True)
    assert forced.trained == len(distinct)
    assert not any(r.selection_cached for r in forced.rows)


def test_seeds(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    res = go(reg, store, model_dir, fake, thresholds=[0.3], seeds=3)
    (row,) = res.rows
    assert row.seeds == (2018, 2019, 2020) and len(row.scores) == 3 and row.std > 0
    assert len(fake.calls) == 6 and res.baseline.seeds == (2018, 2019, 2020)


def test_keep_nothing_trains_primary_alone(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    res = go(reg, store, model_dir, fake, thresholds=[1.0])
    (row,) = res.rows
    assert row.primary_alone and row.trained_aux == () and row.kept_total == 0
    assert [c["aux"] for c in fake.calls] == [()]          # the baseline only
    assert row.mean == res.baseline.mean and row.ledger == res.baseline.ledger
    (note,) = [n for n in res.notes if "kept no auxiliary instance" in n]
    assert "tau ≥ 1" in note and "trained alone" in note
    # the note says how high the taus go and what to try instead
    top = max(res.taus, key=lambda t: t.max)
    assert f"{top.max:.2f} ({top.task}" in note and "--keep-fraction" in note


def test_keep_all_is_the_trials_run(reg, store_root, model_dir) -> None:
    """tau >= -1 keeps every instance: the run is P + aux unfiltered (the trial's key)."""
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    res = go(reg, store, model_dir, fake, thresholds=[-1.0])
    assert [c["subsets"] for c in fake.calls] == [{}, {}]
    (row,) = res.rows
    assert row.fraction == 1.0 and res.trial is None    # no trial had trained it before
    again = go(reg, store, model_dir, fake, thresholds=[0.3])
    assert again.trial is not None and again.trial.source == "ledger"
    assert again.trial.mean == pytest.approx(row.mean)


def test_after_trial_uses_its_selection_and_ledger(reg, store_root, model_dir) -> None:
    from gradts_engine.selection.trial import run_trial

    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    fake = FakeTrainer()
    s = run_trial(model_dir, reg.get(PRIMARY), [reg.get(a) for a in AUX], store=store,
                  run=RunSettings(device="cpu"), trial=TrialSettings(epochs=1, patience=2),
                  train_fn=fake)
    assert s.selected                                       # more aux data scores higher
    n_trial = len(fake.calls)
    res = go(reg, store, model_dir, fake, aux=None, thresholds=[0.3, 0.5])
    assert res.aux == s.selected and res.aux_source == "trial"
    assert res.baseline.source == "ledger" and res.baseline.mean == pytest.approx(s.baseline.mean)
    assert res.trial is not None and res.trial.mean == pytest.approx(s.selected_trial.mean)
    assert all(c["subsets"] for c in fake.calls[n_trial:])  # only fg runs were trained
    assert res.trained == len(fake.calls) - n_trial > 0
    stored = load_fg_result(store, model_dir, PRIMARY)
    assert stored is not None and stored.to_json() == res.to_json()


def test_selections_are_stored_and_reloadable(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    res = go(reg, store, model_dir, FakeTrainer(), thresholds=[0.3, 0.6])
    entries = find_selections(store, model_dir, PRIMARY)
    assert {e.key_path for e in entries} == {r.selection_key for r in res.rows}
    for r in res.rows:
        e = next(e for e in entries if e.key_path == r.selection_key)
        assert e.spec["cut"] == {"threshold": r.cut.value} and e.spec["estimator"] == "during"
        assert [a["task"] for a in e.spec["aux"]] == AUX and e.spec["method"] == "kendall"
        kept = load_selection(store, e)
        assert {t: len(v) for t, v in kept.items()} == {k.task: k.kept for k in r.kept}
    # a different estimator or method is a different selection
    go(reg, store, model_dir, FakeTrainer(), thresholds=[0.3], method="spearman")
    assert len(find_selections(store, model_dir, PRIMARY)) == 3


# -- errors ------------------------------------------------------------------------------------
def test_no_trial_and_no_aux_names_the_trial_command(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    with pytest.raises(MissingResultError) as e:
        go(reg, store, model_dir, FakeTrainer(), aux=None)
    assert f"gradts trial --model {model_dir} --primary {PRIMARY}" in e.value.hint


def test_aux_probed_without_instances(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg, instances=False)
    with pytest.raises(MissingResultError) as e:
        go(reg, store, model_dir, FakeTrainer())
    assert "--no-instances" in e.value.message
    assert "gradts probe" in e.value.hint and "--force" in e.value.hint


def test_unprobed_aux(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_suite(store, model_dir, reg)
    with pytest.raises(MissingResultError) as e:
        go(reg, store, model_dir, FakeTrainer(), aux=["topic_home"])
    assert "gradts probe" in e.value.hint and "topic_home" in e.value.hint


def test_probe_of_other_data(reg, store_root, model_dir) -> None:
    """Aux instance indices must fit the current train split; a stale primary is a note."""
    store = Store(store_root)
    planted = probe_suite(store, model_dir, reg)
    fresh = go(reg, store, model_dir, FakeTrainer(), thresholds=[0.3])
    assert not any("stale" in n for n in fresh.notes)
    write_probe(Store(store_root), model_dir, reg.get(AUX[0]), planted["base"], planted[AUX[0]],
                settings={"epochs": 2}, data_fp="older-data")
    for e in store.entries("probe"):   # keep only the probe of other data for AUX[0]
        if e.info["task_name"] == AUX[0] and e.spec["data"] != "older-data":
            store.remove(store.key("probe", e.meta["names"], e.spec))
    with pytest.raises(MissingResultError) as err:
        go(reg, store, model_dir, FakeTrainer(), thresholds=[0.3])
    assert "other data" in err.value.message and "--force" in err.value.hint
    write_probe(store, model_dir, reg.get(PRIMARY), planted["base"], None,
                settings={"epochs": 2}, data_fp="older-data")
    for e in store.entries("probe"):
        if e.info["task_name"] == PRIMARY and e.spec["data"] != "older-data":
            store.remove(store.key("probe", e.meta["names"], e.spec))
    res = go(reg, store, model_dir, FakeTrainer(), aux=AUX[1:], thresholds=[0.3])
    assert any("may be stale" in n and PRIMARY in n for n in res.notes)


# -- real training on a tiny model -------------------------------------------------------------
def test_real_training_uses_the_kept_instances(reg, store_root, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from gradts_engine.models import make_tiny_model
    from gradts_engine.tasks import demo

    torch.set_num_threads(1)
    words: set[str] = set()
    for t in [PRIMARY, *AUX]:
        for split, n in SIZES.items():
            for r in demo.generate(t, split, n):
                words.update(r["text_a"].split())
    model = str(make_tiny_model(tmp_path / "tiny", words=sorted(words)))
    store = Store(store_root)
    probe_suite(store, model, reg)
    res = run_fg(model, reg.get(PRIMARY), [reg.get(a) for a in AUX], store=store,
                 run=RunSettings(device="cpu"),
                 trial_settings=TrialSettings(epochs=1, batch_size=16, max_length=32, lr=1e-3),
                 cuts=make_cuts(None, 0.25))
    (row,) = res.rows
    assert res.trained == 2 and 0.0 <= row.mean <= 1.0 and not row.primary_alone
    (ledger,) = row.ledger
    (e,) = [e for e in store.entries("trial-run") if e.key_path == ledger]
    mtl = read_run(store, e)
    assert dict(mtl.train_sizes) == {PRIMARY: 40, AUX[0]: 10, AUX[1]: 10}
    assert e.spec["subsets"]["sizes"] == {AUX[0]: 10, AUX[1]: 10}
