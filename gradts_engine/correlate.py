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
Kendall's tau-b of one vector against many is computed in :mod:`gradts_engine.kendall`; the
bootstrap of rankings over resampled instances lives in :mod:`gradts_engine.rank_bootstrap`.

Symbols: ``D = L*H`` entries per flattened matrix; ``x`` the primary's vector ``(D,)``; ``Y``
the other vectors ``(N, D)``; ``P = D(D-1)/2`` pairs of entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .errors import ConfigError, DataError, IncompatibleResultsError, did_you_mean
from .kendall import has_nan, kendall_primary, kendall_rows
from .signal import FG_THRESHOLD

Method = Literal["kendall", "spearman", "pearson"]
METHODS: tuple[str, ...] = get_args(Method)

# Kendall compares entries in tiles of this many rows: (D, tile) arrays stay in cache.
_KENDALL_TILE = 2048


# ---------------------------------------------------------------------------------------------
# validation


def check_method(method: str) -> None:
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
    check_method(method)
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
    if N == 0 or D < 2 or bool(has_nan(x)) or bool((x == x[0]).all()):
        return stats, pvalues

    if method == "kendall":
        kp = kendall_primary(x)
        step = min(chunk_size, _KENDALL_TILE)
        for a in range(0, N, step):
            stats[a : a + step], pvalues[a : a + step] = kendall_rows(kp, Y[a : a + step])
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


def rank_order(names: Sequence[str], stats: np.ndarray) -> np.ndarray:
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
    order = rank_order(names, values) if names else []
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
    stats: np.ndarray, thresholds: Sequence[float] = (0.5, FG_THRESHOLD, 0.7), bins: int = 10
) -> InstanceSummary:
    """Summarise instance-level statistics (N,): centre, fractions above thresholds, histogram.

    The default thresholds include the original GradTS-fg cut, :data:`signal.FG_THRESHOLD`.
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


def instance_vectors(R: np.ndarray) -> np.ndarray:
    """Per-instance matrices (N, L, H) -> vectors (N, L*H) normalised like a task matrix.

    Each instance's matrix gets the same per-layer L1 normalisation as the task matrix
    (``minmax`` is affine per matrix, so it changes none of the three statistics and is
    skipped).
    """
    R = np.asarray(R, dtype=np.float64)
    return layer_l1(R).reshape(R.shape[0], -1)  # (N, D)
