"""gradts_engine.correlate against SciPy (the independent reference) and direct loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats

from gradts_engine import correlate as C
from gradts_engine import rank_bootstrap as RB
from gradts_engine.correlate import (
    RankedCandidate,
    correlate,
    correlate_many,
    correlation_matrix,
    instance_summary,
    layer_l1,
    minmax,
    rank_candidates,
    task_matrix,
)
from gradts_engine.errors import ConfigError, DataError, IncompatibleResultsError
from gradts_engine.rank_bootstrap import BootstrapStat, attach_bootstrap, bootstrap_rankings

METHODS = ("kendall", "spearman", "pearson")
SCIPY = {
    "kendall": scipy.stats.kendalltau,
    "spearman": scipy.stats.spearmanr,
    "pearson": scipy.stats.pearsonr,
}
TOL = 1e-6


def scipy_rows(x, Y, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = [SCIPY[method](x, y) for y in Y]
    return np.array([r[0] for r in ref], float), np.array([r[1] for r in ref], float)


def assert_close(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL, equal_nan=True)


def sample(rng, shape, ties):
    # ties: integers from a small range; otherwise continuous (no ties, almost surely)
    return rng.integers(0, 5, size=shape) if ties else rng.standard_normal(shape)


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------------------------
# agreement with SciPy


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("D", [5, 20, 144])
@pytest.mark.parametrize("ties", [False, True])
def test_correlate_matches_scipy(method, D, ties):
    rng = np.random.default_rng(D * 10 + ties)
    for _ in range(6):
        x, y = sample(rng, D, ties), sample(rng, D, ties)
        s, p = correlate(x, y, method)
        ref = SCIPY[method](x, y)
        assert isinstance(s, float) and isinstance(p, float)
        assert_close([s, p], [ref[0], ref[1]])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("D", [5, 20, 144])
@pytest.mark.parametrize("ties", [False, True])
def test_correlate_many_matches_scipy_across_chunks(method, D, ties):
    rng = np.random.default_rng(1000 + D * 10 + ties)
    x, Y = sample(rng, D, ties), sample(rng, (37, D), ties)  # 37 rows, chunks of 8
    s, p = correlate_many(x, Y, method, chunk_size=8)
    assert s.shape == p.shape == (37,)
    rs, rp = scipy_rows(x, Y, method)
    assert_close(s, rs)
    assert_close(p, rp)
    s2, p2 = correlate_many(x, Y, method)  # one chunk gives the same numbers
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(p, p2)


@pytest.mark.parametrize("D", [20, 144])
def test_kendall_ties_on_one_side_only(D):
    rng = np.random.default_rng(D)
    for x_ties, y_ties in [(True, False), (False, True)]:
        x, Y = sample(rng, D, x_ties), sample(rng, (15, D), y_ties)
        Y[0] = x  # perfect agreement with itself
        # a mix of tied and untied rows in one chunk
        Y[1:4] = sample(rng, (3, D), not y_ties)
        for method in METHODS:
            s, p = correlate_many(x, Y, method)
            rs, rp = scipy_rows(x, Y, method)
            assert_close(s, rs)
            assert_close(p, rp)


def test_kendall_tiles_and_chunks(monkeypatch):
    monkeypatch.setattr(C, "_KENDALL_TILE", 16)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(30)
    Y = np.concatenate([rng.standard_normal((50, 30)), rng.integers(0, 4, (53, 30))])
    rng.shuffle(Y)
    s, p = correlate_many(x, Y, "kendall", chunk_size=41)
    rs, rp = scipy_rows(x, Y, "kendall")
    assert_close(s, rs)
    assert_close(p, rp)


@pytest.mark.parametrize("D", [2, 3, 33, 34, 40, 144, 180])
def test_kendall_exact_pvalue_branches(D):
    # SciPy uses the exact null distribution without ties when D <= 33 or when at most one
    # pair is discordant (or concordant); these rows sit on both sides of that rule.
    rng = np.random.default_rng(D)
    x = rng.permutation(D).astype(float)
    up = np.sort(x)
    rows = [x, -x, rng.permutation(D).astype(float)]
    swap = x.copy()
    i, j = np.argsort(x)[:2]
    swap[i], swap[j] = swap[j], swap[i]  # one discordant pair
    rows += [swap, -swap, up[::-1]]
    Y = np.array(rows)
    s, p = correlate_many(x, Y)
    rs, rp = scipy_rows(x, Y, "kendall")
    assert_close(s, rs)
    assert_close(p, rp)


def test_float32_and_integer_inputs():
    rng = np.random.default_rng(7)
    x = rng.random(144).astype(np.float32)
    Y = rng.random((20, 144)).astype(np.float32)
    for method in METHODS:
        s, p = correlate_many(x, Y, method)
        rs, rp = scipy_rows(x.astype(np.float64), Y.astype(np.float64), method)
        assert s.dtype == np.float64
        assert_close(s, rs)
        assert_close(p, rp)
    xi, Yi = rng.integers(0, 3, 20), rng.integers(0, 3, (9, 20))
    s, p = correlate_many(xi, Yi.astype(bool))
    assert_close(s, scipy_rows(xi, Yi.astype(bool).astype(int), "kendall")[0])


# --------------------------------------------------------------------------------------------
# degenerate inputs and errors


@pytest.mark.parametrize("method", METHODS)
def test_constant_and_nan_inputs_give_nan(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12)
    const = np.full(12, 2.5)
    assert all(np.isnan(correlate(const, x, method)))
    assert all(np.isnan(correlate(x, const, method)))
    assert all(np.isnan(correlate(const, const, method)))
    Y = rng.standard_normal((4, 12))
    Y[1] = 7.0
    Y[2, 3] = np.nan
    s, p = correlate_many(x, Y, method)
    assert np.isnan(s[[1, 2]]).all() and np.isnan(p[[1, 2]]).all()
    assert np.isfinite(s[[0, 3]]).all() and np.isfinite(p[[0, 3]]).all()
    s, p = correlate_many(const, Y, method)
    assert np.isnan(s).all() and np.isnan(p).all()
    s, p = correlate_many(x, np.empty((0, 12)), method)
    assert s.shape == p.shape == (0,)


def test_shape_mismatch_and_unknown_method_are_errors():
    with pytest.raises(IncompatibleResultsError):
        correlate(np.arange(5.0), np.arange(6.0))
    with pytest.raises(IncompatibleResultsError):
        correlate_many(np.arange(5.0), np.ones((3, 6)))
    with pytest.raises(IncompatibleResultsError):
        correlate_many(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ConfigError, match="kendall"):
        correlate(np.arange(5.0), np.arange(5.0), "kendal")
    with pytest.raises(ConfigError):
        correlate_many(np.arange(5.0), np.ones((3, 5)), chunk_size=0)


# --------------------------------------------------------------------------------------------
# matrix and ranking


@pytest.mark.parametrize("method", METHODS)
def test_correlation_matrix(method):
    rng = np.random.default_rng(11)
    V = rng.standard_normal((6, 30))
    V[3] = V[0] * 2 + 1  # perfectly related pair
    S, P = correlation_matrix(V, method)
    assert S.shape == P.shape == (6, 6)
    np.testing.assert_array_equal(S, S.T)
    np.testing.assert_array_equal(P, P.T)
    np.testing.assert_array_equal(np.diag(S), 1.0)
    np.testing.assert_array_equal(np.diag(P), 0.0)
    for i in range(6):
        for j in range(6):
            if i != j:
                assert_close([S[i, j], P[i, j]], list(SCIPY[method](V[i], V[j])))
    assert S[0, 3] == pytest.approx(1.0)
    V[2] = 0.0
    S, P = correlation_matrix(V, method)
    assert np.isnan(S[2]).all() and np.isnan(S[:, 2]).all() and np.isnan(P[2, 2])


def test_rank_candidates_order_nan_and_ties():
    stats = {
        "primary": (1.0, 0.0),
        "b": (0.3, 0.01),
        "nan2": (float("nan"), float("nan")),
        "a": (0.3, 0.02),
        "c": (0.9, 0.001),
        "nan1": (float("nan"), float("nan")),
        "d": (-0.2, 0.5),
    }
    ranked = rank_candidates("primary", stats)
    assert [r.task for r in ranked] == ["c", "a", "b", "d", "nan1", "nan2"]
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5, 6]
    assert ranked[1] == RankedCandidate("a", 0.3, 0.02, 2)
    assert ranked[0].ci_low is None and ranked[0].rank_stability is None
    assert rank_candidates("x", {}) == []
    boot = {"c": BootstrapStat(0.88, 0.8, 0.95, 1.0)}
    with_boot = attach_bootstrap(ranked, boot)
    assert (with_boot[0].ci_low, with_boot[0].ci_high, with_boot[0].rank_stability) == (
        0.8,
        0.95,
        1.0,
    )
    assert with_boot[1] == ranked[1]


# --------------------------------------------------------------------------------------------
# task matrices


def test_layer_l1_minmax_task_matrix_against_loops():
    rng = np.random.default_rng(2)
    R = rng.random((9, 4, 6)).astype(np.float32)  # (N, L, H)
    R[:, 2, :] = 0.0  # a layer with all-zero importance
    mean = np.zeros((4, 6))
    for i in range(9):
        for layer in range(4):
            for h in range(6):
                mean[layer, h] += float(R[i, layer, h]) / 9
    l1 = np.zeros((4, 6))
    for layer in range(4):
        total = sum(mean[layer])
        for h in range(6):
            l1[layer, h] = mean[layer, h] / total if total else 0.0
    lo, hi = min(l1.ravel()), max(l1.ravel())
    ref = np.array([[(v - lo) / (hi - lo) for v in row] for row in l1])

    np.testing.assert_allclose(layer_l1(mean), l1, rtol=1e-13, atol=0)
    np.testing.assert_allclose(minmax(l1), ref, rtol=1e-13, atol=1e-15)
    tm = task_matrix(R)
    assert tm.dtype == np.float64 and tm.shape == (4, 6)
    np.testing.assert_allclose(tm, ref, rtol=1e-12, atol=1e-15)
    assert tm.min() == 0.0 and tm.max() == 1.0
    assert (layer_l1(mean)[2] == 0).all()
    # batched over leading axes; a constant matrix scales to zeros
    batch = np.stack([mean, np.full((4, 6), 3.0)])
    np.testing.assert_allclose(minmax(batch)[0], minmax(mean))
    np.testing.assert_array_equal(minmax(batch)[1], 0.0)
    np.testing.assert_allclose(layer_l1(batch)[0], l1)
    with pytest.raises(DataError):
        task_matrix(np.empty((0, 4, 6)))


# --------------------------------------------------------------------------------------------
# bootstrap


def _suite(rng, n=40, L=3, H=4):
    base = rng.random((L, H))
    primary = base + 0.05 * rng.random((n, L, H))
    return primary, {
        "twin": primary.copy(),
        "near": base + 0.5 * rng.random((L, H)) + 0.1 * rng.random((n + 5, L, H)),
        "noise": rng.random((n + 10, L, H)).astype(np.float32),
    }


def test_bootstrap_counts_equal_explicit_resampling():
    rng = np.random.default_rng(0)
    R = rng.random((13, 2, 3))
    got = RB.bootstrap_task_vectors(R, 5, np.random.default_rng(42))
    gen = np.random.default_rng(42)
    for b in range(5):
        idx = gen.integers(0, 13, size=13)
        np.testing.assert_allclose(got[b], task_matrix(R[idx]).ravel(), rtol=1e-12, atol=1e-14)


def test_bootstrap_rankings():
    rng = np.random.default_rng(4)
    primary, cands = _suite(rng)
    a = bootstrap_rankings(primary, cands, n_boot=60, seed=1)
    b = bootstrap_rankings(primary, cands, n_boot=60, seed=1)
    c = bootstrap_rankings(primary, cands, n_boot=60, seed=2)
    assert a == b
    assert a != c
    assert set(a) == {"twin", "near", "noise"}
    assert all(isinstance(v, BootstrapStat) for v in a.values())
    assert a["twin"].rank_stability == 1.0
    full = correlate(task_matrix(primary).ravel(), task_matrix(cands["twin"]).ravel())[0]
    assert full == pytest.approx(1.0)
    for stat in a.values():
        assert stat.ci_low <= stat.mean <= stat.ci_high
        assert 0.0 <= stat.rank_stability <= 1.0
    # a clear case: a weakly related task with a wide interval around its full-data tau
    full, _ = correlate(task_matrix(primary).ravel(), task_matrix(cands["noise"]).ravel())
    assert a["noise"].ci_low < full - 0.1 and full + 0.1 < a["noise"].ci_high
    assert a["twin"].ci_low > a["noise"].ci_high
    # a task's resamples do not depend on which other candidates are present
    only = bootstrap_rankings(primary, {"near": cands["near"]}, n_boot=60, seed=1)
    assert (only["near"].mean, only["near"].ci_low) == (a["near"].mean, a["near"].ci_low)
    wider = bootstrap_rankings(primary, cands, n_boot=60, seed=1, level=0.99)
    assert wider["near"].ci_low <= a["near"].ci_low and wider["near"].ci_high >= a["near"].ci_high
    assert bootstrap_rankings(primary, {}, n_boot=5, seed=0) == {}


def test_bootstrap_errors():
    rng = np.random.default_rng(0)
    primary, cands = _suite(rng)
    with pytest.raises(IncompatibleResultsError):
        bootstrap_rankings(primary, {"x": rng.random((5, 4, 3))}, n_boot=3, seed=0)
    with pytest.raises(ConfigError):
        bootstrap_rankings(primary, cands, n_boot=0, seed=0)
    with pytest.raises(ConfigError):
        bootstrap_rankings(primary, cands, n_boot=3, seed=0, level=1.0)


# --------------------------------------------------------------------------------------------
# instance summary


def test_instance_summary():
    stats = np.array([-1.0, -0.2, 0.1, 0.5, 0.55, 0.62, 0.65, 0.7, 0.9, 1.0, np.nan])
    s = instance_summary(stats)
    finite = stats[~np.isnan(stats)]
    assert s.n == 11 and s.n_nan == 1
    assert s.mean == pytest.approx(finite.mean())
    assert s.median == pytest.approx(np.median(finite))
    assert s.frac_above == {0.5: 0.6, 0.62: 0.4, 0.7: 0.2}  # strictly above
    assert sum(s.hist_counts) == 10 and len(s.hist_counts) == 10
    assert s.hist_edges[0] == -1.0 and s.hist_edges[-1] == 1.0 and len(s.hist_edges) == 11
    assert s.hist_counts[0] == 1 and s.hist_counts[-1] == 2  # -1.0 | 0.9 and 1.0
    s4 = instance_summary(finite, thresholds=(0.0,), bins=4)
    assert s4.frac_above == {0.0: 0.8} and s4.hist_counts == (1, 1, 1, 7)
    empty = instance_summary(np.array([]))
    assert empty.n == 0 and np.isnan(empty.mean) and sum(empty.hist_counts) == 0


def test_kendall_wide_vectors():
    # more than 256 entries: a wider accumulator than for D <= 256
    rng = np.random.default_rng(9)
    for ties in (False, True):
        x, Y = sample(rng, 300, ties), sample(rng, (4, 300), ties)
        s, p = correlate_many(x, Y)
        rs, rp = scipy_rows(x, Y, "kendall")
        assert_close(s, rs)
        assert_close(p, rp)
