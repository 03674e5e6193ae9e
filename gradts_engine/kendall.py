"""Kendall's tau-b of one vector against many, with SciPy's p-values (DESIGN.md §2).

``x`` (D,) is compared with every row of ``Y`` (n, D) without materialising the (n, P) sign
matrix (``P = D(D-1)/2`` pairs): the rows are reordered by ``x``, and for each position the
entries after it are compared in one vectorised step. The statistic is tau-b with exact
integer numerators; the two-sided p-value follows ``scipy.stats.kendalltau``'s
``method='auto'`` (exact without ties for D <= 33 or when min(discordant, concordant) <= 1,
else the normal approximation with tie corrections). Used by :mod:`correlate`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


def has_nan(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        return np.isnan(a).any(axis=axis)
    return np.zeros(a.shape[0], bool) if axis is not None else np.bool_(False)




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
class KendallPrimary:
    D: int
    order: np.ndarray  # (D,) stable argsort of x
    start: np.ndarray  # (D,) in sorted order: first position whose x is strictly larger
    xtie: int
    x0: int
    x1: int


def kendall_primary(x: np.ndarray) -> KendallPrimary:
    order = np.argsort(x, kind="stable")
    xs = x[order]
    start = np.searchsorted(xs, xs, side="right")
    xtie, x0, x1 = (int(v[0]) for v in _tie_stats(xs[None, :]))
    return KendallPrimary(x.shape[0], order, start, xtie, x0, x1)


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


def kendall_rows(kp: KendallPrimary, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    ok = (ytie < tot) & ~has_nan(Y, axis=1)  # (n,) constant or NaN rows stay NaN
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
