"""Stability of candidate rankings under resampling of instances (DESIGN.md §2, ``after``).

The ``after`` task matrix is ``minmax(layer_l1(mean_i R_i))``, a mean over instances, so it
can be bootstrapped: each replicate resamples a task's instances ``R_i`` (N, L, H) with
replacement and rebuilds its task matrix with the same formula (:func:`correlate.task_matrix`);
the primary is correlated with every candidate in every replicate. Per candidate: the mean
statistic, the percentile interval, and how often it keeps its full-data rank. One NumPy
stream per task, keyed by its name, so a task's resamples do not depend on the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .correlate import (
    Method,
    RankedCandidate,
    check_method,
    correlate_many,
    layer_l1,
    minmax,
    rank_order,
    task_matrix,
)
from .errors import ConfigError, DataError, IncompatibleResultsError


@dataclass(frozen=True)
class BootstrapStat:
    """A candidate's correlation with the primary over bootstrap replicates."""

    mean: float
    ci_low: float  # percentile interval at the requested level
    ci_high: float
    rank_stability: float  # fraction of replicates where its rank equals the full-data rank


_ROWS_PER_MATMUL = 16384  # instance rows converted to float64 at a time
_COUNTS_PER_BLOCK = 1 << 22  # replicate-by-instance count entries held at a time


def bootstrap_task_vectors(R: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
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


def task_rng(seed: int, name: str | None) -> np.random.Generator:
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
    check_method(method)
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
    xb = bootstrap_task_vectors(P, n_boot, task_rng(seed, None))  # (B, D)
    Vb = np.stack([bootstrap_task_vectors(cands[t], n_boot, task_rng(seed, t)) for t in names])
    return bootstrap_stats(names, x, V, xb, Vb, method, level)


def bootstrap_stats(names: Sequence[str], x: np.ndarray, V: np.ndarray, xb: np.ndarray,
                     Vb: np.ndarray, method: Method | str, level: float
                     ) -> dict[str, BootstrapStat]:
    """Per candidate: mean and percentile interval of the replicate statistics, and how often
    it keeps its full-data rank. ``x`` (D,) and ``V`` (C, D) are the full-data vectors of the
    primary and the candidates, ``xb`` (B, D) and ``Vb`` (C, B, D) their replicates."""
    C, n_boot = len(names), xb.shape[0]
    full_stats, _ = correlate_many(x, V, method)
    full_rank = np.empty(C, np.int64)
    full_rank[rank_order(names, full_stats)] = np.arange(1, C + 1)
    boot = np.empty((n_boot, C))  # (B, C)
    ranks = np.empty((n_boot, C), np.int64)
    for b in range(n_boot):
        boot[b], _ = correlate_many(xb[b], Vb[:, b], method)
        ranks[b, rank_order(names, boot[b])] = np.arange(1, C + 1)

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
    check_method(method)
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
        as_candidate[t] = bootstrap_task_vectors(R, n_boot, task_rng(seed, t))
        if t in primaries:
            as_primary[t] = bootstrap_task_vectors(R, n_boot, task_rng(seed, None))
        del R

    out: dict[str, dict[str, BootstrapStat]] = {}
    for p in dict.fromkeys(primaries):
        cands = [t for t in names if t != p]
        if not cands:
            out[p] = {}
            continue
        out[p] = bootstrap_stats(cands, full[p], np.stack([full[t] for t in cands]),
                                  as_primary[p], np.stack([as_candidate[t] for t in cands]),
                                  method, level)
    return out
