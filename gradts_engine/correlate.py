"""Correlation of head-importance matrices: task level, instance level, rankings (DESIGN.md §2).

GradTS (Ma et al., EMNLP 2021, §3.2) ranks the candidate auxiliary tasks of a primary task by
Kendall's tau-b between flattened head-importance matrices: two tasks whose heads are ranked
alike share the features that matter. Spearman's rho and Pearson's r are options. GradTS-fg
(§3.3) scores every instance of an auxiliary task by the correlation of its own matrix ``R_i``
with the primary's task matrix ``I_T``, so the instance level compares one vector ``(D,)``
against up to ~10^5 vectors ``(N, D)``; :func:`correlate_many` does that vectorised and in
chunks of bounded memory.

Every statistic and two-sided p-value equals SciPy's (``kendalltau`` tau-b with its default
``method='auto'``, ``spearmanr``, ``pearsonr``) to within 1e-6; SciPy is the reference in the
tests. Constant (or NaN-containing) inputs give ``(nan, nan)`` and raise no warning. SciPy
is imported inside the functions that need it, so importing this module stays cheap.

Symbols: ``D = L*H`` entries per flattened matrix; ``x`` the primary's vector ``(D,)``; ``Y``
the other vectors ``(N, D)``; ``P = D(D-1)/2`` pairs of entries.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from gradts_engine.errors import ConfigError, DataError, IncompatibleResultsError, did_you_mean

Method = Literal["kendall", "spearman", "pearson"]
METHODS: tuple[str, ...] = get_args(Method)

# Kendall compares entries in tiles of this many rows: (D, tile) arrays stay in cache.
_KENDALL_TILE = 2048


# ---------------------------------------------------------------------------------------------
# validation


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(
            f"unknown correlation method '{method}'",
            hint=did_you_mean(method, METHODS) or f"choose one of {', '.join(METHODS)}",
            method=method,
        )


def _as_numeric(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        return a.astype(np.float64)
    return a


def _has_nan(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        return np.isnan(a).any(axis=axis)
    return np.zeros(a.shape[0], bool) if axis is not None else np.bool_(False)


# ---------------------------------------------------------------------------------------------
# Kendall tau-b


def _tie_stats(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tie sums of rows sorted ascending ``s`` (m, D), as in ``scipy.stats.kendalltau``.

    With ``t`` the size of each group of equal values: ``(sum t(t-1)/2, sum t(t-1)(t-2),
    sum t(t-1)(2t+5))`` per row, int64 (m,) each.
    """
    m, D = s.shape
    new = np.ones((m, D), bool)  # (m, D) True where a new group of equal values starts
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:])
    group = np.cumsum(new, axis=1) - 1 + D * np.arange(m)[:, None]  # (m, D) global group id
    t = np.bincount(group.ravel(), minlength=m * D).reshape(m, D).astype(np.int64)  # (m, D)
    tt1 = t * (t - 1)
    return (tt1 // 2).sum(1), (tt1 * (t - 2)).sum(1), (tt1 * (2 * t + 5)).sum(1)


@functools.lru_cache(maxsize=64)
def _kendall_exact_cdf(n: int) -> np.ndarray:
    """P(C <= c) for c = 0..n(n-1)/2 under independence, C the concordant-pair count.

    The count of permutations of n items with c inversions (Mahonian numbers), built exactly
    with Python integers: Kendall, *Rank Correlation Methods* (1970), as in SciPy.
    """
    counts = [1]
    for j in range(2, n + 1):  # multiply the generating function by 1 + q + ... + q^(j-1)
        prefix = [0]
        for v in counts:
            prefix.append(prefix[-1] + v)
        size = len(counts) + j - 1
        counts = [prefix[min(k + 1, len(counts))] - prefix[max(k + 1 - j, 0)] for k in range(size)]
    total = math.factorial(n)
    cum, acc = [], 0
    for v in counts:
        acc += v
        cum.append(acc / total)
    return np.array(cum)


def _kendall_exact_p(n: int, c: np.ndarray) -> np.ndarray:
    """SciPy's exact two-sided p-value for ``c`` concordant pairs of n untied items (c,)."""
    tot = n * (n - 1) // 2
    c = np.minimum(c, tot - c)  # the null distribution is symmetric
    if n == 2:
        return np.ones(c.shape)
    if n <= 33:
        p = 2.0 * _kendall_exact_cdf(n)[c]
    else:  # exact is used beyond 33 items only when min(dis, con) <= 1
        p0 = 2.0 / math.factorial(n) if n < 171 else 0.0
        p1 = 2.0 / math.factorial(n - 1) if n < 172 else 0.0
        p = np.where(c == 0, p0, p1)
    p = np.where(4 * c == n * (n - 1), 1.0, p)
    return np.clip(p, 0.0, 1.0)


@dataclass(frozen=True)
class _KendallPrimary:
    D: int
    order: np.ndarray  # (D,) stable argsort of x
    start: np.ndarray  # (D,) in sorted order: first position whose x is strictly larger
    xtie: int
    x0: int
    x1: int


def _kendall_primary(x: np.ndarray) -> _KendallPrimary:
    order = np.argsort(x, kind="stable")
    xs = x[order]
    start = np.searchsorted(xs, xs, side="right")
    xtie, x0, x1 = (int(v[0]) for v in _tie_stats(xs[None, :]))
    return _KendallPrimary(x.shape[0], order, start, xtie, x0, x1)


def _count_greater(zT: np.ndarray, start: np.ndarray, less: bool = False) -> np.ndarray:
    """For each column of ``zT`` (D, n): #pairs i<j (sorted by x, x_i < x_j) with z_j > z_i.

    With ``less=True`` counts z_j < z_i instead. Pairs tied in x are skipped through ``start``.
    One comparison and one add per i over the (D - start_i, n) block: the (n, P) sign matrix
    is never materialised.
    """
    D, n = zT.shape
    dtype = np.uint8 if D <= 256 else (np.uint16 if D <= 65536 else np.uint32)
    acc = np.zeros((D, n), dtype)  # (D, n) per j: how many earlier i it beats
    hit = np.empty((D, n), bool)
    compare = np.less if less else np.greater
    for i in range(D - 1):
        s = int(start[i])
        if s >= D:
            break  # start is non-decreasing: no pair left
        h = hit[s:]
        compare(zT[s:], zT[i], out=h)
        np.add(acc[s:], h.view(np.uint8) if dtype == np.uint8 else h, out=acc[s:])
    return acc.sum(0, dtype=np.int64)  # (n,)


def _kendall_rows(kp: _KendallPrimary, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall tau-b and SciPy's 'auto' p-value of ``x`` against each row of ``Y`` (n, D)."""
    from scipy import special  # imported here: keeps `gradts --help` fast (DESIGN §3)

    n, D = Y.shape
    tot = D * (D - 1) // 2
    stat = np.full(n, np.nan)
    pval = np.full(n, np.nan)
    ys = np.sort(Y, axis=1)  # (n, D)
    tied = (ys[:, 1:] == ys[:, :-1]).any(1)  # (n,) rows with ties in y
    ytie = np.zeros(n, np.int64)
    y0 = np.zeros(n, np.int64)
    y1 = np.zeros(n, np.int64)
    if tied.any():
        ytie[tied], y0[tied], y1[tied] = _tie_stats(ys[tied])

    # numerator S = concordant - discordant, exact integers (n,)
    zT = np.ascontiguousarray(Y[:, kp.order].T)  # (D, n) columns in x order
    gt = _count_greater(zT, kp.start)
    S = 2 * gt - (tot - kp.xtie)  # no ties in y: every counted pair is concordant or discordant
    if tied.any():
        S[tied] = gt[tied] - _count_greater(np.ascontiguousarray(zT[:, tied]), kp.start, True)

    ok = (ytie < tot) & ~_has_nan(Y, axis=1)  # (n,) constant or NaN rows stay NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = S / np.sqrt(tot - kp.xtie) / np.sqrt((tot - ytie).astype(np.float64))
    stat[ok] = np.clip(tau[ok], -1.0, 1.0)

    # p-value: SciPy's method='auto' -> exact without ties if D <= 33 or min(dis, con) <= 1
    exact = np.zeros(n, bool)
    if kp.xtie == 0:
        dis = (tot - S) // 2
        exact = ok & ~tied & ((D <= 33) | (np.minimum(dis, tot - dis) <= 1))
        if exact.any():
            pval[exact] = _kendall_exact_p(D, (tot - dis)[exact])
    asym = ok & ~exact
    if asym.any():
        m = D * (D - 1.0)
        var = (
            (m * (2 * D + 5) - kp.x1 - y1[asym]) / 18.0
            + (2.0 * kp.xtie * ytie[asym]) / m
            + (kp.x0 * y0[asym].astype(np.float64)) / (9.0 * m * (D - 2))
        )
        z = S[asym] / np.sqrt(var)
        pval[asym] = 2.0 * special.ndtr(-np.abs(z))
    return stat, pval


# ---------------------------------------------------------------------------------------------
# Pearson and Spearman


def _pearson_rows(x: np.ndarray, Y: np.ndarray, t_test: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's r of ``x`` (D,) against each row of ``Y`` (n, D), float64.

    p-value as ``scipy.stats.pearsonr`` (beta distribution of r under independence) or, with
    ``t_test``, as ``scipy.stats.spearmanr`` (Student's t with D-2 degrees of freedom).
    """
    from scipy import special

    D = x.shape[0]
    Y = Y.astype(np.float64, copy=False)
    const = (Y[:, :1] == Y).all(1) | np.isnan(Y).any(1)  # (n,)
    xm = x - x.mean()
    Ym = Y - Y.mean(1, keepdims=True)  # (n, D)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = xm / np.linalg.norm(xm)
        r = (Ym @ xm) / np.linalg.norm(Ym, axis=1)  # (n,)
        r = np.clip(r, -1.0, 1.0)
        r[const] = np.nan
        if t_test:  # spearmanr
            dof = D - 2
            t = r * np.sqrt((dof / ((r + 1.0) * (1.0 - r))).clip(0))
            p = 2.0 * special.stdtr(dof, -np.abs(t))
        elif D == 2:  # pearsonr returns exactly +-1 and p = 1
            r = np.round(r)
            p = np.where(np.isnan(r), np.nan, 1.0)
        else:
            ab = D / 2 - 1
            p = 2.0 * special.betaincc(ab, ab, (np.abs(r) + 1.0) / 2.0)
    return r, p


# ---------------------------------------------------------------------------------------------
# public API: correlations


def correlate_many(
    primary: np.ndarray,
    others: np.ndarray,
    method: Method | str = "kendall",
    chunk_size: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Correlate one vector with many: GradTS-fg's instance level (paper §3.3, DESIGN §2).

    ``primary`` (D,) against each row of ``others`` (N, D); returns ``(stats, pvalues)``, each
    (N,) float64, equal to SciPy's per-row results. Work goes in chunks of ``chunk_size`` rows
    (memory O(chunk_size * D)).

    Kendall tau-b: with the entries sorted by ``primary``, S = concordant - discordant over
    the P pairs is counted by one comparison per pair, done column block by column block on
    the whole chunk (the product ``sign(Y_i - Y_j) @ sign(x_i - x_j)``, without building the
    (N, P) sign matrix); the tie corrections come from each row's sorted values. Spearman:
    average ranks, then Pearson. Rows that are constant or contain NaN give NaN.
    """
    _check_method(method)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
    x = _as_numeric(primary)
    Y = _as_numeric(others)
    if x.ndim != 1 or Y.ndim != 2 or Y.shape[1] != x.shape[0]:
        raise IncompatibleResultsError(
            f"cannot correlate a vector of shape {x.shape} with rows of shape {Y.shape}",
            hint="compare matrices from the same model, flattened to the same length",
        )
    N, D = Y.shape
    stats = np.full(N, np.nan)  # (N,)
    pvalues = np.full(N, np.nan)  # (N,)
    if N == 0 or D < 2 or bool(_has_nan(x)) or bool((x == x[0]).all()):
        return stats, pvalues

    if method == "kendall":
        kp = _kendall_primary(x)
        step = min(chunk_size, _KENDALL_TILE)
        for a in range(0, N, step):
            stats[a : a + step], pvalues[a : a + step] = _kendall_rows(kp, Y[a : a + step])
    else:
        from scipy.stats import rankdata

        spearman = method == "spearman"
        xv = rankdata(x) if spearman else x.astype(np.float64)
        for a in range(0, N, chunk_size):
            chunk = Y[a : a + chunk_size]  # (n, D)
            if spearman:
                bad = np.isnan(chunk).any(1) if np.issubdtype(chunk.dtype, np.floating) else None
                chunk = rankdata(chunk, axis=1)  # (n, D) average ranks of ties
                if bad is not None:
                    chunk[bad] = np.nan
            stats[a : a + chunk_size], pvalues[a : a + chunk_size] = _pearson_rows(
                xv, chunk, t_test=spearman
            )
    return stats, pvalues


def correlate(
    x: np.ndarray, y: np.ndarray, method: Method | str = "kendall"
) -> tuple[float, float]:
    """(statistic, two-sided p-value) between two flattened importance matrices (DESIGN §2).

    Kendall tau-b by default (GradTS §3.2), Spearman or Pearson as options; equal to
    ``scipy.stats.kendalltau`` / ``spearmanr`` / ``pearsonr``. Constant input: ``(nan, nan)``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 1 or y.shape != x.shape:
        raise IncompatibleResultsError(
            f"cannot correlate vectors of shapes {x.shape} and {y.shape}",
            hint="compare matrices from the same model, flattened to the same length",
        )
    s, p = correlate_many(x, y[None, :], method)
    return float(s[0]), float(p[0])


def correlation_matrix(
    vectors: np.ndarray, method: Method | str = "kendall"
) -> tuple[np.ndarray, np.ndarray]:
    """All pairwise correlations of task vectors (T, D): ``(stats, pvalues)``, each (T, T).

    Symmetric; diagonal 1 and 0 (NaN for a constant vector, whose correlation is undefined).
    """
    V = np.asarray(vectors)
    if V.ndim != 2:
        raise IncompatibleResultsError(f"expected task vectors (T, D), got shape {V.shape}")
    T = V.shape[0]
    stats = np.full((T, T), np.nan)
    pvalues = np.full((T, T), np.nan)
    for i in range(T):
        s, p = correlate_many(V[i], V[i:], method)  # (T - i,)
        stats[i, i:] = stats[i:, i] = s
        pvalues[i, i:] = pvalues[i:, i] = p
        if not np.isnan(s[0]):
            stats[i, i], pvalues[i, i] = 1.0, 0.0
    return stats, pvalues


# ---------------------------------------------------------------------------------------------
# rankings


@dataclass(frozen=True)
class RankedCandidate:
    """One candidate auxiliary task in the ranking for a primary task (GradTS §3.2)."""

    task: str
    stat: float
    pvalue: float
    rank: int  # 1-based
    ci_low: float | None = None
    ci_high: float | None = None
    rank_stability: float | None = None  # fraction of bootstrap replicates keeping this rank


def _rank_order(names: Sequence[str], stats: np.ndarray) -> np.ndarray:
    """Indices sorting candidates by stat descending, NaN last, ties by name (C,)."""
    name_pos = np.argsort(np.argsort(np.array(names, dtype=object)))  # (C,) alphabetical rank
    nan = np.isnan(stats)
    key = np.where(nan, 0.0, -stats)
    return np.lexsort((name_pos, key, nan))


def rank_candidates(
    primary: str, stats: Mapping[str, tuple[float, float]]
) -> list[RankedCandidate]:
    """Rank candidate tasks for ``primary`` by correlation, highest first (GradTS §3.2).

    ``stats`` maps task name to (statistic, p-value); an entry for ``primary`` itself is
    skipped. NaN statistics rank last; equal statistics are ordered by name.
    """
    names = [t for t in stats if t != primary]
    values = np.array([float(stats[t][0]) for t in names], dtype=np.float64)
    order = _rank_order(names, values) if names else []
    return [
        RankedCandidate(
            task=names[i],
            stat=float(stats[names[i]][0]),
            pvalue=float(stats[names[i]][1]),
            rank=r + 1,
        )
        for r, i in enumerate(order)
    ]


# ---------------------------------------------------------------------------------------------
# task matrices (DESIGN §2, estimator 'after')


def layer_l1(m: np.ndarray) -> np.ndarray:
    """Divide each layer's row of heads by its sum (..., L, H); all-zero rows stay zero."""
    m = np.asarray(m, dtype=np.float64)
    total = m.sum(axis=-1, keepdims=True)  # (..., L, 1)
    return np.divide(m, total, out=np.zeros_like(m), where=total != 0)


def minmax(m: np.ndarray) -> np.ndarray:
    """Scale each (L, H) matrix to [0, 1] over all its entries (..., L, H); constant -> 0."""
    m = np.asarray(m, dtype=np.float64)
    lo = m.min(axis=(-2, -1), keepdims=True)
    span = m.max(axis=(-2, -1), keepdims=True) - lo
    return np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)


def task_matrix(instances: np.ndarray) -> np.ndarray:
    """Task matrix ``I_T = minmax(layer_l1(mean_i R_i))`` from raw instance matrices (N, L, H).

    DESIGN §2, estimator 'after' (the original GradTS code); float64 (L, H).
    """
    R = np.asarray(instances)
    if R.ndim != 3 or R.shape[0] == 0:
        raise DataError(f"expected instance matrices (N, L, H) with N >= 1, got shape {R.shape}")
    return minmax(layer_l1(R.mean(axis=0, dtype=np.float64)))


# ---------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class BootstrapStat:
    """A candidate's correlation with the primary over bootstrap replicates."""

    mean: float
    ci_low: float  # percentile interval at the requested level
    ci_high: float
    rank_stability: float  # fraction of replicates where its rank equals the full-data rank


_ROWS_PER_MATMUL = 16384  # instance rows converted to float64 at a time
_COUNTS_PER_BLOCK = 1 << 22  # replicate-by-instance count entries held at a time


def _bootstrap_task_vectors(R: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Flattened task matrices of ``n_boot`` resamples of the rows of ``R`` (N, L, H).

    A resample's mean is ``counts @ R / N`` with ``counts`` the multiplicity of each instance
    (instances drawn with replacement), so no resampled copy of ``R`` is ever built. Returns
    (n_boot, L*H) float64.
    """
    N, L, H = R.shape
    X = R.reshape(N, L * H)  # (N, D)
    out = np.empty((n_boot, L * H))
    block = max(1, _COUNTS_PER_BLOCK // N)
    for b0 in range(0, n_boot, block):
        b1 = min(n_boot, b0 + block)
        counts = np.stack(
            [np.bincount(rng.integers(0, N, size=N), minlength=N) for _ in range(b0, b1)]
        ).astype(np.float64)  # (b, N)
        means = np.zeros((b1 - b0, L * H))  # (b, D)
        for r0 in range(0, N, _ROWS_PER_MATMUL):
            r1 = min(N, r0 + _ROWS_PER_MATMUL)
            means += counts[:, r0:r1] @ X[r0:r1].astype(np.float64)
        means /= N
        out[b0:b1] = minmax(layer_l1(means.reshape(-1, L, H))).reshape(b1 - b0, L * H)
    return out


def _task_rng(seed: int, name: str | None) -> np.random.Generator:
    # one stream per task, keyed by its name: a task's resamples do not depend on the others
    key = (0,) if name is None else (1, zlib.crc32(name.encode("utf-8")))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def bootstrap_rankings(
    primary_instances: np.ndarray,
    candidate_instances: Mapping[str, np.ndarray],
    n_boot: int,
    seed: int,
    method: Method | str = "kendall",
    level: float = 0.90,
) -> dict[str, BootstrapStat]:
    """How stable the candidate ranking is under resampling of instances (DESIGN §2 'after').

    Each replicate resamples every task's instances (N_t, L, H) with replacement, rebuilds the
    task matrices with :func:`task_matrix`'s formula, and correlates the primary with every
    candidate. Per candidate: the mean statistic over replicates, the percentile interval at
    ``level``, and the fraction of replicates whose rank equals the full-data rank.
    Reproducible for a given ``seed`` (one NumPy ``Generator`` stream per task name).
    """
    _check_method(method)
    if n_boot < 1:
        raise ConfigError(f"the number of bootstrap replicates must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"the interval level must lie strictly between 0 and 1, got {level}")
    P = np.asarray(primary_instances)
    if P.ndim != 3 or P.shape[0] == 0:
        raise DataError(f"expected instance matrices (N, L, H) with N >= 1, got shape {P.shape}")
    names = list(candidate_instances)
    cands = {t: np.asarray(candidate_instances[t]) for t in names}
    for t, R in cands.items():
        if R.ndim != 3 or R.shape[1:] != P.shape[1:] or R.shape[0] == 0:
            raise IncompatibleResultsError(
                f"task '{t}' has instance matrices of shape {R.shape}, the primary {P.shape}",
                hint="compare tasks probed with the same model",
                task=t,
            )
    C = len(names)
    if C == 0:
        return {}

    x = task_matrix(P).ravel()  # (D,)
    V = np.stack([task_matrix(cands[t]).ravel() for t in names])  # (C, D)
    xb = _bootstrap_task_vectors(P, n_boot, _task_rng(seed, None))  # (B, D)
    Vb = np.stack([_bootstrap_task_vectors(cands[t], n_boot, _task_rng(seed, t)) for t in names])
    return _bootstrap_stats(names, x, V, xb, Vb, method, level)


def _bootstrap_stats(names: Sequence[str], x: np.ndarray, V: np.ndarray, xb: np.ndarray,
                     Vb: np.ndarray, method: Method | str, level: float
                     ) -> dict[str, BootstrapStat]:
    """Per candidate: mean and percentile interval of the replicate statistics, and how often
    it keeps its full-data rank. ``x`` (D,) and ``V`` (C, D) are the full-data vectors of the
    primary and the candidates, ``xb`` (B, D) and ``Vb`` (C, B, D) their replicates."""
    C, n_boot = len(names), xb.shape[0]
    full_stats, _ = correlate_many(x, V, method)
    full_rank = np.empty(C, np.int64)
    full_rank[_rank_order(names, full_stats)] = np.arange(1, C + 1)
    boot = np.empty((n_boot, C))  # (B, C)
    ranks = np.empty((n_boot, C), np.int64)
    for b in range(n_boot):
        boot[b], _ = correlate_many(xb[b], Vb[:, b], method)
        ranks[b, _rank_order(names, boot[b])] = np.arange(1, C + 1)

    q = 100.0 * np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    result = {}
    for c, t in enumerate(names):
        s = boot[:, c][~np.isnan(boot[:, c])]
        lo, hi = np.percentile(s, q) if s.size else (np.nan, np.nan)
        result[t] = BootstrapStat(
            mean=float(s.mean()) if s.size else float("nan"),
            ci_low=float(lo),
            ci_high=float(hi),
            rank_stability=float(np.mean(ranks[:, c] == full_rank[c])),
        )
    return result


def attach_bootstrap(
    ranking: Sequence[RankedCandidate], boot: Mapping[str, BootstrapStat]
) -> list[RankedCandidate]:
    """Copy a ranking with the bootstrap interval and rank stability filled in where known."""
    out = []
    for rc in ranking:
        b = boot.get(rc.task)
        if b is None:
            out.append(rc)
        else:
            out.append(
                RankedCandidate(
                    rc.task, rc.stat, rc.pvalue, rc.rank, b.ci_low, b.ci_high, b.rank_stability
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# instance-level summary (GradTS-fg)


@dataclass(frozen=True)
class InstanceSummary:
    """Distribution of instance-level correlations with the primary (GradTS-fg, §3.3).

    ``mean``, ``median`` and ``frac_above`` (fraction strictly above each threshold) are over
    the non-NaN statistics; ``n`` counts all instances, ``n_nan`` those without a statistic.
    The histogram spans [-1, 1].
    """

    n: int
    mean: float
    median: float
    frac_above: dict[float, float]
    hist_counts: tuple[int, ...]
    hist_edges: tuple[float, ...]
    n_nan: int = 0


def instance_summary(
    stats: np.ndarray, thresholds: Sequence[float] = (0.5, 0.62, 0.7), bins: int = 10
) -> InstanceSummary:
    """Summarise instance-level statistics (N,): centre, fractions above thresholds, histogram.

    The default thresholds include the original GradTS-fg cut, 0.62 (DESIGN §1).
    """
    s = np.asarray(stats, dtype=np.float64).ravel()  # (N,)
    finite = s[~np.isnan(s)]
    counts, edges = np.histogram(np.clip(finite, -1.0, 1.0), bins=bins, range=(-1.0, 1.0))
    has = finite.size > 0
    return InstanceSummary(
        n=int(s.size),
        mean=float(finite.mean()) if has else float("nan"),
        median=float(np.median(finite)) if has else float("nan"),
        frac_above={
            float(t): float((finite > t).mean()) if has else float("nan") for t in thresholds
        },
        hist_counts=tuple(int(c) for c in counts),
        hist_edges=tuple(float(e) for e in edges),
        n_nan=int(s.size - finite.size),
    )


# ---------------------------------------------------------------------------------------------
# from the store: rankings of probed tasks (what `gradts corr` and GradTS-trial use)


def instance_vectors(R: np.ndarray) -> np.ndarray:
    """Per-instance matrices (N, L, H) -> vectors (N, L*H) normalised like a task matrix.

    Each instance's matrix gets the same per-layer L1 normalisation as the task matrix
    (``minmax`` is affine per matrix, so it changes none of the three statistics and is
    skipped).
    """
    R = np.asarray(R, dtype=np.float64)
    return layer_l1(R).reshape(R.shape[0], -1)  # (N, D)


def rank_from_store(
    store: object,
    model: str,
    primary: str,
    candidates: Sequence[str],
    *,
    measure: str = "gate",
    estimator: str = "during",
    method: Method | str = "kendall",
) -> list[RankedCandidate]:
    """Rank ``candidates`` for ``primary`` by the correlation of their stored task matrices.

    Reads the probe results of every task (a missing one is a
    :class:`~gradts_engine.errors.MissingResultError` naming the ``gradts probe`` command;
    results of different models, measures or shapes are an error), flattens the
    ``estimator`` matrix of each and correlates the primary's with each candidate's.
    """
    from .results import load_results

    _check_method(method)
    names = [primary, *[c for c in candidates if c != primary]]
    results = load_results(store, model, names, measure)  # type: ignore[arg-type]
    vectors = {r.task: np.asarray(r.matrix(estimator), dtype=np.float64).ravel() for r in results}
    x = vectors[primary]
    stats = {t: correlate(x, vectors[t], method) for t in names[1:]}
    return rank_candidates(primary, stats)


# ---------------------------------------------------------------------------------------------
# bootstrap of several primaries at once (gradts corr --bootstrap without --primary)


def bootstrap_rankings_all(
    load_instances: Mapping[str, Callable[[], np.ndarray]],
    primaries: Sequence[str],
    n_boot: int,
    seed: int,
    method: Method | str = "kendall",
    level: float = 0.90,
) -> dict[str, dict[str, BootstrapStat]]:
    """:func:`bootstrap_rankings` for every task in ``primaries`` against all the others.

    ``load_instances`` maps each task to a callable returning its raw instance matrices
    (N_t, L, H). For each primary P the result equals ``bootstrap_rankings(R_P, {t: R_t for
    every other t}, n_boot, seed, method, level)`` exactly (the same random streams: the
    primary's keyed by no name, each candidate's by its name), but every task is loaded and
    resampled once instead of once per primary: memory holds one task's instances plus
    ``(T + len(primaries)) * n_boot * L*H`` floats.
    """
    _check_method(method)
    if n_boot < 1:
        raise ConfigError(f"the number of bootstrap replicates must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"the interval level must lie strictly between 0 and 1, got {level}")
    names = list(load_instances)
    unknown = [p for p in primaries if p not in load_instances]
    if unknown:
        raise ConfigError(f"primary task '{unknown[0]}' is not among the tasks to bootstrap")

    full: dict[str, np.ndarray] = {}  # task -> (D,) task vector from all instances
    as_candidate: dict[str, np.ndarray] = {}  # task -> (B, D) replicates, stream keyed by name
    as_primary: dict[str, np.ndarray] = {}  # primary -> (B, D) replicates, stream keyed by None
    shape: tuple[int, ...] | None = None
    for t in names:
        R = np.asarray(load_instances[t]())  # (N_t, L, H)
        if R.ndim != 3 or R.shape[0] == 0:
            raise DataError(
                f"task '{t}': expected instance matrices (N, L, H) with N >= 1, got {R.shape}"
            )
        if shape is not None and R.shape[1:] != shape:
            raise IncompatibleResultsError(
                f"task '{t}' has instance matrices of shape {R.shape[1:]}, others {shape}",
                hint="compare tasks probed with the same model",
                task=t,
            )
        shape = R.shape[1:]
        full[t] = task_matrix(R).ravel()
        as_candidate[t] = _bootstrap_task_vectors(R, n_boot, _task_rng(seed, t))
        if t in primaries:
            as_primary[t] = _bootstrap_task_vectors(R, n_boot, _task_rng(seed, None))
        del R

    out: dict[str, dict[str, BootstrapStat]] = {}
    for p in dict.fromkeys(primaries):
        cands = [t for t in names if t != p]
        if not cands:
            out[p] = {}
            continue
        out[p] = _bootstrap_stats(cands, full[p], np.stack([full[t] for t in cands]),
                                  as_primary[p], np.stack([as_candidate[t] for t in cands]),
                                  method, level)
    return out
