"""Statistics of trained sets: seed means, the paired bootstrap, the noise verdict (pure numpy).

A set's score is the mean over seeds of its best epoch's main metric (sample standard
deviation as the spread). Whether set A beats set B is judged on the *paired* difference: the
evaluation examples are resampled with replacement, the same resample for both sides, and the
metric of each seed's predictions is averaged over seeds; the percentile interval of the
difference at level 0.90 is reported. With ``resample_seeds`` the seeds are resampled too
(paired by seed index), so the interval covers both sources of noise (``gradts compare``).
A difference is *within the noise* when that interval contains 0 or when it is smaller than
the spread across seeds; the verdict's words never call such a difference a win
(DESIGN.md §2, §8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import mean_metrics, seed_mean, seed_std

__all__ = ["BOOTSTRAP_SAMPLES", "NOISE_LEVEL", "aligned", "mean_metrics", "noise_verdict",
           "paired_bootstrap", "paired_diffs", "paired_interval", "percentile_interval",
           "resampled_metric", "seed_mean", "seed_std"]

BOOTSTRAP_SAMPLES = 1000
NOISE_LEVEL = 0.90


def resampled_metric(metric: str, pred: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``metric`` on each bootstrap resample, from resample counts ``W`` (B, N) -> (B,).

    ``W[b, i]`` is how often example i was drawn in resample b. Classification metrics come
    from confusion counts (``W @ one-hot``), Pearson from weighted moments; both follow
    scikit-learn's / SciPy's formulas (the tests compare them resample by resample). Other
    metrics (Spearman) fall back to :data:`metrics.METRIC_FUNCTIONS` on each resample.
    """
    from ..metrics import METRIC_FUNCTIONS

    n = float(y.shape[0])
    if metric == "accuracy":
        return W @ (pred == y).astype(np.float64) / n
    if metric in ("f1", "matthews"):
        k = int(max(pred.max(initial=0), y.max(initial=0))) + 1
        onehot = np.zeros((y.shape[0], k * k))                       # (N, K*K)
        onehot[np.arange(y.shape[0]), y.astype(np.int64) * k + pred.astype(np.int64)] = 1.0
        C = (W @ onehot).reshape(-1, k, k)                            # (B, K true, K pred)
        if metric == "f1":
            tp = C[:, 1, 1]
            fp, fn = C[:, :, 1].sum(1) - tp, C[:, 1, :].sum(1) - tp
            den = 2 * tp + fp + fn
            return np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
        t, p_ = C.sum(2), C.sum(1)                                     # (B, K) each
        c = np.trace(C, axis1=1, axis2=2)
        cov_ytyp = c * n - (t * p_).sum(1)
        cov_ypyp = n * n - (p_ * p_).sum(1)
        cov_ytyt = n * n - (t * t).sum(1)
        den = np.sqrt(cov_ytyt * cov_ypyp)
        return np.divide(cov_ytyp, den, out=np.zeros_like(c), where=den > 0)
    if metric == "pearson":
        x, z = pred.astype(np.float64), y.astype(np.float64)
        mx, mz = W @ x / n, W @ z / n                                  # (B,)
        sxz = W @ (x * z) / n - mx * mz
        sxx = W @ (x * x) / n - mx * mx
        szz = W @ (z * z) / n - mz * mz
        den = np.sqrt(np.clip(sxx, 0, None) * np.clip(szz, 0, None))
        return np.divide(sxz, den, out=np.full_like(sxz, np.nan), where=den > 1e-300)
    fn_ = METRIC_FUNCTIONS[metric]
    out = np.empty(W.shape[0])
    for b in range(W.shape[0]):
        idx = np.repeat(np.arange(W.shape[1]), W[b].astype(np.int64))
        out[b] = fn_(pred[idx], y[idx])
    return out


def paired_diffs(metric: str, labels: np.ndarray, selected: Sequence[np.ndarray],
                 baseline: Sequence[np.ndarray], *, n_boot: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0, resample_seeds: bool = False) -> np.ndarray:
    """The bootstrap replicates (n_boot,) of the paired difference (:func:`paired_bootstrap`)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    n = y.shape[0]
    S = len(selected)
    if resample_seeds and len(baseline) != S:
        raise ValueError("resample_seeds needs one prediction array per seed on both sides")
    diffs = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, (c, n))                                       # (c, N)
        flat = (idx + n * np.arange(c)[:, None]).ravel()
        W = np.bincount(flat, minlength=c * n).reshape(c, n).astype(np.float64)  # (c, N)
        sel = np.stack([resampled_metric(metric, np.asarray(p), y, W) for p in selected], 1)
        base = np.stack([resampled_metric(metric, np.asarray(p), y, W) for p in baseline], 1)
        if resample_seeds:                                                     # (c, S) each
            s_idx = rng.integers(0, S, (c, S))
            Ws = np.stack([np.bincount(r, minlength=S) for r in s_idx]).astype(np.float64)
            diffs[start:start + c] = ((sel * Ws).sum(1) - (base * Ws).sum(1)) / S
        else:
            diffs[start:start + c] = sel.mean(1) - base.mean(1)
    return diffs


def percentile_interval(diffs: np.ndarray, level: float = NOISE_LEVEL) -> tuple[float, float]:
    """The percentile interval of the finite replicates (NaN, NaN when there are none)."""
    d = np.asarray(diffs)
    d = d[np.isfinite(d)]
    if not d.size:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2
    return float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))


def paired_bootstrap(metric: str, labels: np.ndarray, selected: Sequence[np.ndarray],
                     baseline: Sequence[np.ndarray], *, n_boot: int = BOOTSTRAP_SAMPLES,
                     level: float = NOISE_LEVEL, seed: int = 0,
                     resample_seeds: bool = False) -> tuple[float, float]:
    """Percentile interval of ``mean_s metric(selected_s) - mean_s metric(baseline_s)``.

    Examples are resampled with replacement (``rng.integers(0, N, (n_boot, N))`` with
    ``rng = default_rng(seed)``, drawn in chunks in that order), the same resample for both
    sides (paired). ``resample_seeds``: ``selected`` and ``baseline`` hold one prediction
    array per seed, in the same seed order; after each chunk of example draws, seed indices are
    drawn with replacement (``rng.integers(0, S, (c, S))``) and each side's per-seed metrics are
    averaged with those counts (paired by seed).
    """
    return percentile_interval(paired_diffs(metric, labels, selected, baseline, n_boot=n_boot,
                                            seed=seed, resample_seeds=resample_seeds), level)


def aligned(runs: Sequence[Any]) -> bool:
    """Whether trained runs were scored on the same examples (their ``dev_index`` agree)."""
    return bool(runs) and all(np.array_equal(r.dev_index, runs[0].dev_index) for r in runs)


def paired_interval(metric: str, selected: Sequence[Any], baseline: Sequence[Any],
                    seed: int) -> tuple[float, float] | None:
    """:func:`paired_bootstrap` of two sets of trained runs on their evaluation examples
    (``dev_predictions``, ``dev_labels``), or None when they were not scored on the same ones."""
    if not selected or not aligned([*selected, *baseline]) or not baseline:
        return None
    return paired_bootstrap(metric, np.asarray(baseline[0].dev_labels),
                            [np.asarray(r.dev_predictions) for r in selected],
                            [np.asarray(r.dev_predictions) for r in baseline], seed=seed)


def noise_verdict(label: str, main: str, diff: float, interval: tuple[float, float] | None,
                  n_examples: int, spread: float | None, n_seeds: int
                  ) -> tuple[bool, str]:
    """``(within_noise, message)`` for "``label`` beat the primary alone by ``diff``".

    Within the noise when the interval (if any) contains 0 or when ``|diff|`` is smaller than
    the spread across seeds. The message gives the reasons and never calls such a gain a win.
    """
    pct = int(round(NOISE_LEVEL * 100))
    lo, hi = interval if interval is not None else (None, None)
    reasons = []
    if lo is not None and hi is not None and math.isfinite(lo) and lo <= 0.0 <= hi:
        reasons.append(f"the {pct}% bootstrap interval of the paired difference over "
                       f"{n_examples} dev examples, [{lo:+.4f}, {hi:+.4f}], includes 0")
    if spread is not None and abs(diff) < spread:
        reasons.append(f"the difference is smaller than the spread across seeds "
                       f"(std {spread:.4f})")
    if reasons:
        return True, (f"{label} beat the primary alone by {diff:+.4f} {main} on dev, but this "
                      "is within the noise: " + "; ".join(reasons)
                      + (". Train with more seeds (--seeds 3) or a larger dev split before "
                         "trusting the choice." if n_seeds == 1 else
                         ". The choice is not reliably better than training the primary alone."))
    facts = []
    if lo is not None and hi is not None and math.isfinite(lo):
        facts.append(f"the {pct}% bootstrap interval [{lo:+.4f}, {hi:+.4f}] excludes 0")
    facts.append(f"spread across seeds {spread:.4f}" if spread is not None else
                 "one seed only: rerun with --seeds 3 to measure the spread")
    return False, (f"{label} beat the primary alone by {diff:+.4f} {main} on dev "
                   f"({'; '.join(facts)})")
