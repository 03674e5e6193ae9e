"""gradts_engine.corr: stored matrices -> correlation matrix, rankings, instances, bootstrap.

Probe entries are written straight into a temporary store in the format that
gradts_engine.results documents (no training), with planted structure: tasks of one family
share a base head pattern, so each task's sibling must rank first. SciPy is the reference.
"""

from __future__ import annotations

import csv
import io
import time
import warnings

import numpy as np
import pytest
import scipy.stats
from safetensors.numpy import load_file

from gradts_engine.corr import CorrResult, correlate_tasks, probed_tasks
from gradts_engine.correlate import layer_l1, minmax
from gradts_engine.errors import (
    ConfigError,
    IncompatibleResultsError,
    MissingResultError,
    UsageError,
)
from gradts_engine.rank_bootstrap import bootstrap_rankings
from gradts_engine.results import find_results, probe_key
from gradts_engine.store import Store

MODEL = "tiny/model"
L, H = 4, 6
SCIPY = {"kendall": scipy.stats.kendalltau, "spearman": scipy.stats.spearmanr,
         "pearson": scipy.stats.pearsonr}


# -- synthetic probe entries -------------------------------------------------------------------
def write_probe(store: Store, task: str, during: np.ndarray, R: np.ndarray | None = None, *,
                model: str = MODEL, model_id: str | None = None, measure: str = "gate",
                settings: dict | None = None, chunk: int = 16) -> None:
    """One probe entry as gradts_engine.results documents it (task + instance chunks)."""
    during = np.asarray(during, np.float64)
    after_raw = R.mean(0) if R is not None else during
    key = probe_key(store, model_cache_id=model_id or f"{model}@0123abcd", model_name=model,
                    task=task, task_fingerprint={"name": task}, data_fingerprint=f"d-{task}",
                    measure=measure, settings=settings or {"epochs": 1, "lr": 1e-4})
    chunks = []
    with store.writer(key) as w:
        w.save_arrays("task", {
            "during": layer_l1(during).astype(np.float32),
            "after": minmax(layer_l1(after_raw)).astype(np.float32),
            "during_raw": during.astype(np.float32), "after_raw": after_raw.astype(np.float32)})
        if R is not None:
            for k, a in enumerate(range(0, len(R), chunk)):
                name = f"instances-{k:05d}"
                w.save_arrays(name, {"R": R[a:a + chunk].astype(np.float32),
                                     "index": np.arange(a, min(len(R), a + chunk))})
                chunks.append(name)
        w.info.update(task_name=task, model_name=model,
                      num_instances=0 if R is None else len(R), num_layers=during.shape[0],
                      num_heads=during.shape[1], model_type="bert", chunks=chunks)


def family_suite(store: Store, families: int = 3, n: int = 24, seed: int = 0, *,
                 shape: tuple[int, int] = (L, H), instances: bool = True, **kw) -> dict[str, str]:
    """``families`` pairs of sibling tasks sharing a base pattern; returns task -> sibling."""
    rng = np.random.default_rng(seed)
    siblings = {}
    for f in range(families):
        base = rng.gamma(2.0, 1.0, size=shape)  # (L, H) the family's head pattern
        a, b = f"fam{f}_a", f"fam{f}_b"
        siblings[a], siblings[b] = b, a
        for t in (a, b):
            during = base * np.exp(0.15 * rng.standard_normal(shape))
            R = None
            if instances:
                R = base[None] * np.exp(0.6 * rng.standard_normal((n, *shape)))  # (n, L, H)
            write_probe(store, t, during, R, **kw)
    return siblings


def stored(store: Store, task: str) -> dict[str, np.ndarray]:
    """Read a probe's arrays straight from its files (independent of gradts_engine.results)."""
    (entry,) = [e for e in store.entries("probe") if e.info["task_name"] == task]
    out = load_file(str(entry.path / "task.safetensors"))
    Rs = [load_file(str(entry.path / f"{c}.safetensors"))["R"] for c in entry.info["chunks"]]
    if Rs:
        out["R"] = np.concatenate(Rs)
    return out


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "home")


@pytest.fixture
def fam(store) -> dict[str, str]:
    return family_suite(store)


# -- the matrix ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["kendall", "spearman", "pearson"])
@pytest.mark.parametrize("estimator", ["during", "after"])
def test_matrix_equals_scipy_on_the_stored_vectors(store, fam, method, estimator):
    res = correlate_tasks(store, MODEL, None, method=method, estimator=estimator)
    assert isinstance(res, CorrResult)
    assert res.tasks == tuple(sorted(fam)) and res.shape == (L, H)
    vec = {t: stored(store, t)[estimator].astype(np.float64).ravel() for t in res.tasks}
    for i, a in enumerate(res.tasks):
        for j, b in enumerate(res.tasks):
            if i == j:
                assert res.stats[i, j] == 1.0
                continue
            ref = SCIPY[method](vec[a], vec[b])
            assert res.stats[i, j] == pytest.approx(ref[0], abs=1e-9)
            assert res.pvalues[i, j] == pytest.approx(ref[1], abs=1e-9, rel=1e-6)
        np.testing.assert_array_equal(res.matrices[a].ravel(), vec[a])


def test_planted_sibling_ranks_first_and_rankings_are_sorted(store, fam):
    res = correlate_tasks(store, MODEL, list(fam))
    for p in res.tasks:
        ranking = res.rankings[p]
        assert ranking[0].task == fam[p], (p, ranking)
        assert [c.rank for c in ranking] == list(range(1, len(res.tasks)))
        assert {c.task for c in ranking} == set(res.tasks) - {p}
        stats = [c.stat for c in ranking]
        assert stats == sorted(stats, reverse=True)
        assert ranking[0].stat == pytest.approx(res.stat(p, fam[p]))
    assert res.primaries == res.tasks and res.instances is None and res.bootstrap is None


def test_task_selection_and_primary_added(store, fam):
    assert probed_tasks(store, MODEL) == sorted(fam)
    res = correlate_tasks(store, MODEL, ["fam1_a", "fam2_b"], primary="fam0_a")
    assert res.tasks == ("fam0_a", "fam1_a", "fam2_b") and res.primaries == ("fam0_a",)
    res = correlate_tasks(store, MODEL, ["fam1_a", "fam1_a", "fam0_b"])
    assert res.tasks == ("fam1_a", "fam0_b")


# -- errors --------------------------------------------------------------------------------------
def test_missing_task_names_the_probe_command(store, fam):
    with pytest.raises(MissingResultError) as e:
        correlate_tasks(store, MODEL, ["fam0_a", "other"])
    assert f"gradts probe --model {MODEL} --task other" in e.value.hint
    with pytest.raises(MissingResultError) as e:  # a typo gets "did you mean"
        correlate_tasks(store, MODEL, ["fam0_a", "fam1_x"])
    assert "did you mean 'fam1_" in e.value.message
    assert "gradts probe --model tiny/model --task fam1_x" in e.value.hint


def test_nothing_probed_with_the_model(store, fam):
    with pytest.raises(MissingResultError) as e:
        correlate_tasks(store, "other/model", None)
    assert "tiny/model" in e.value.message  # names the models that were probed
    assert "gradts probe --model other/model" in e.value.hint


def test_different_models_or_shapes_are_never_compared(store, fam):
    rng = np.random.default_rng(1)
    write_probe(store, "other_rev", rng.random((L, H)), model_id=f"{MODEL}@ffffffff")
    with pytest.raises(IncompatibleResultsError):
        correlate_tasks(store, MODEL, ["fam0_a", "other_rev"])
    with pytest.raises(IncompatibleResultsError):  # every probed task of the model
        correlate_tasks(store, MODEL, None)
    write_probe(store, "wide", rng.random((L, H + 2)))
    with pytest.raises(IncompatibleResultsError):
        correlate_tasks(store, MODEL, ["fam0_a", "wide"])


def test_flag_checks(store, fam):
    with pytest.raises(UsageError):
        correlate_tasks(store, MODEL, None, instances=True)
    with pytest.raises(ConfigError, match="method"):
        correlate_tasks(store, MODEL, None, method="kendal")
    with pytest.raises(ConfigError, match="estimator"):
        correlate_tasks(store, MODEL, None, estimator="final")
    with pytest.raises(UsageError, match="two tasks"):
        correlate_tasks(store, MODEL, ["fam0_a"])


def test_different_settings_warn(store, fam):
    write_probe(store, "fast", np.random.default_rng(2).random((L, H)),
                settings={"epochs": 1, "lr": 5e-5})
    res = correlate_tasks(store, MODEL, ["fam0_a", "fast"])
    assert len(res.warnings) == 1 and "lr" in res.warnings[0] and "fast" in res.warnings[0]


# -- instance level ------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["during", "after"])
def test_instance_summary_equals_direct_scipy(tmp_path, estimator):
    store = Store(tmp_path / "h")
    fam = family_suite(store, families=2, n=11, chunk=4)  # 3 chunks per task
    p = "fam0_a"
    res = correlate_tasks(store, MODEL, None, primary=p, instances=True, estimator=estimator)
    rows = {r.task: r for r in res.instances}
    assert res.instances[0].task == p and res.instances[0].is_primary
    assert [r.task for r in res.instances[1:]] == [c.task for c in res.rankings[p]]
    x = stored(store, p)[estimator].astype(np.float64).ravel()
    for t in fam:
        R = stored(store, t)["R"].astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.array([scipy.stats.kendalltau(
                x, (R[i] / R[i].sum(1, keepdims=True)).ravel())[0] for i in range(len(R))])
        s = rows[t].summary
        assert s.n == 11 and s.n_nan == 0
        assert s.mean == pytest.approx(ref.mean(), abs=1e-9)
        assert s.median == pytest.approx(np.median(ref), abs=1e-9)
        for thr in (0.5, 0.62, 0.7):
            assert s.frac_above[thr] == pytest.approx((ref > thr).mean())
        counts, _ = np.histogram(ref, bins=len(s.hist_counts), range=(-1, 1))
        assert s.hist_counts == tuple(counts)
    # the sibling's instances agree with the primary more than another family's
    assert rows[fam[p]].summary.mean > rows["fam1_a"].summary.mean


def test_candidate_without_instances_is_reported_not_fatal(store, fam):
    write_probe(store, "bare", np.random.default_rng(3).random((L, H)))
    res = correlate_tasks(store, MODEL, None, primary="fam0_a", instances=True)
    rows = {r.task: r for r in res.instances}
    assert rows["bare"].summary is None and "--no-instances" in rows["bare"].note
    assert "gradts probe --model tiny/model --task bare --force" in rows["bare"].note
    assert rows["fam0_b"].summary is not None
    with pytest.raises(MissingResultError, match="no-instances") as e:
        correlate_tasks(store, MODEL, None, primary="fam0_a", bootstrap=5)
    assert "--task bare" in e.value.hint


# -- bootstrap -----------------------------------------------------------------------------------
def test_bootstrap_reproducible_and_equal_to_bootstrap_rankings(store, fam):
    p = "fam1_b"
    kw = dict(primary=p, estimator="after", bootstrap=30)
    a = correlate_tasks(store, MODEL, None, seed=5, **kw)
    b = correlate_tasks(store, MODEL, None, seed=5, **kw)
    c = correlate_tasks(store, MODEL, None, seed=6, **kw)
    assert a.rankings[p] == b.rankings[p] and a.bootstrap.rows == b.bootstrap.rows
    assert [r.ci_low for r in a.rankings[p]] != [r.ci_low for r in c.rankings[p]]
    # the library reference, on instances read straight from the files
    Rs = {t: stored(store, t)["R"] for t in a.tasks}
    ref = bootstrap_rankings(Rs[p], {t: Rs[t] for t in a.tasks if t != p}, 30, 5, level=0.9)
    for cand in a.rankings[p]:
        assert (cand.ci_low, cand.ci_high) == (ref[cand.task].ci_low, ref[cand.task].ci_high)
        assert cand.rank_stability == ref[cand.task].rank_stability
        assert cand.ci_low <= cand.stat + 0.2 and cand.ci_low <= cand.ci_high
    assert a.bootstrap.estimator == "after" and a.bootstrap.note is None
    assert a.rankings[p][0].task == fam[p] and a.rankings[p][0].rank_stability > 0.5


def test_bootstrap_every_primary_matches_single_primary(store, fam):
    every = correlate_tasks(store, MODEL, None, estimator="after", bootstrap=12, seed=3)
    assert set(every.bootstrap.rows) == set(every.tasks)
    one = correlate_tasks(store, MODEL, None, estimator="after", bootstrap=12, seed=3,
                          primary="fam2_a")
    assert every.bootstrap.rows["fam2_a"] == one.bootstrap.rows["fam2_a"]
    assert every.rankings["fam2_a"] == one.rankings["fam2_a"]


def test_bootstrap_with_during_describes_after_and_says_so(store, fam):
    p = "fam0_a"
    res = correlate_tasks(store, MODEL, None, primary=p, bootstrap=10, seed=1)
    assert res.estimator == "during" and res.bootstrap.estimator == "after"
    assert "during" in res.bootstrap.note and "after" in res.bootstrap.note
    assert all(c.ci_low is None for c in res.rankings[p])  # never attached to during numbers
    after = {t: stored(store, t)["after"].astype(np.float64).ravel() for t in res.tasks}
    for row in res.bootstrap.rows[p]:
        assert row.stat == pytest.approx(scipy.stats.kendalltau(after[p], after[row.task])[0])
    assert [r.rank for r in res.bootstrap.rows[p]] == list(range(1, len(res.tasks)))


# -- serialisation ------------------------------------------------------------------------------
def test_to_dict_and_csv(store, fam):
    import json

    res = correlate_tasks(store, MODEL, None, primary="fam0_a", instances=True, bootstrap=5,
                          estimator="after")
    d = json.loads(json.dumps(res.to_dict(), allow_nan=True))
    assert d["tasks"] == list(res.tasks) and len(d["matrix"]) == len(res.tasks)
    assert list(d["rankings"]) == ["fam0_a"] and d["rankings"]["fam0_a"][0]["ci_low"] is not None
    assert d["instances"][0]["frac_above"]["0.62"] is not None
    assert set(d["importance"]) == set(res.tasks)
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    T = len(res.tasks)
    assert len(rows) == T * (T - 1)
    for r in rows:
        assert float(r["stat"]) == pytest.approx(res.stat(r["primary"], r["candidate"]))
    boot = [r for r in rows if r["ci_low"]]
    assert {r["primary"] for r in boot} == {"fam0_a"} and len(boot) == T - 1


def test_twenty_tasks_rank_quickly(tmp_path):
    store = Store(tmp_path / "h")
    family_suite(store, families=10, n=8, shape=(6, 12))
    assert len(find_results(store, MODEL)) == 20
    t = time.perf_counter()
    res = correlate_tasks(store, MODEL, None)
    elapsed = time.perf_counter() - t
    assert len(res.tasks) == 20
    assert sum(res.rankings[p][0].task.split("_")[0] == p.split("_")[0] for p in res.tasks) >= 18
    assert elapsed < 5.0  # about 0.1 s measured; generous on a loaded shared machine
