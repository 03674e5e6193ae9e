"""The result of ``gradts corr`` (:func:`corr.correlate_tasks`): the correlation matrix, the
rankings, the probes used, and the optional instance level and bootstrap, with its JSON and CSV
views."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .correlate import InstanceSummary, RankedCandidate

BOOT_ESTIMATOR = "after"

# ---------------------------------------------------------------------------------------------
# result types


@dataclass(frozen=True)
class ProbeInfo:
    """Which store entry a task's matrices came from."""

    task: str
    key: str
    created: str | None
    num_instances: int
    has_instances: bool
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class InstanceRow:
    """Instance-level correlations of one task's instances with the primary's task vector.

    ``is_primary``: the primary's own instances (a reference for the thresholds). ``summary``
    is None when the task was probed without instances; ``note`` then says so.
    """

    task: str
    is_primary: bool
    summary: InstanceSummary | None
    note: str | None = None


@dataclass(frozen=True)
class BootstrapRow:
    """A candidate under bootstrap resampling of instances (estimator ``after``).

    ``stat`` and ``rank`` are the ``after`` estimator's full-data values (equal to the ranking's
    own when the ranking uses ``after``); ``mean``, ``ci_low``/``ci_high`` and
    ``rank_stability`` (fraction of replicates keeping the full-data rank) come from the
    replicates.
    """

    task: str
    stat: float
    rank: int
    mean: float
    ci_low: float
    ci_high: float
    rank_stability: float


@dataclass(frozen=True)
class BootstrapInfo:
    n_boot: int
    seed: int
    level: float
    estimator: str  # always "after" (see the module docstring)
    rows: Mapping[str, tuple[BootstrapRow, ...]]  # primary -> rows in the after-ranking order
    note: str | None = None


@dataclass(frozen=True, eq=False)
class CorrResult:
    """What ``gradts corr`` computed (arrays are numpy; ``to_dict`` gives plain data)."""

    model: str  # cache id of the model the tasks were probed with
    model_name: str
    measure: str
    method: str
    estimator: str
    tasks: tuple[str, ...]
    shape: tuple[int, int]  # (L, H)
    stats: np.ndarray  # (T, T)
    pvalues: np.ndarray  # (T, T)
    matrices: Mapping[str, np.ndarray]  # task -> (L, H), the estimator's matrix
    rankings: Mapping[str, tuple[RankedCandidate, ...]]  # every task as primary
    primary: str | None
    probes: tuple[ProbeInfo, ...]
    instances: tuple[InstanceRow, ...] | None = None
    bootstrap: BootstrapInfo | None = None
    warnings: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def primaries(self) -> tuple[str, ...]:
        """The primaries whose rankings are of interest: the chosen one, else every task."""
        return (self.primary,) if self.primary else self.tasks

    def stat(self, a: str, b: str) -> float:
        i, j = self.tasks.index(a), self.tasks.index(b)
        return float(self.stats[i, j])

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-able data (NaN stays float NaN; the printer maps it)."""

        def rc(c: RankedCandidate) -> dict[str, Any]:
            return {"task": c.task, "stat": c.stat, "pvalue": c.pvalue, "rank": c.rank,
                    "ci_low": c.ci_low, "ci_high": c.ci_high,
                    "rank_stability": c.rank_stability}

        def summ(row: InstanceRow) -> dict[str, Any]:
            d: dict[str, Any] = {"task": row.task, "is_primary": row.is_primary,
                                 "note": row.note}
            s = row.summary
            if s is not None:
                d.update(n=s.n, n_nan=s.n_nan, mean=s.mean, median=s.median,
                         frac_above={f"{k:g}": v for k, v in s.frac_above.items()},
                         hist_counts=list(s.hist_counts), hist_edges=list(s.hist_edges))
            return d

        boot = None
        if self.bootstrap is not None:
            b = self.bootstrap
            boot = {"n_boot": b.n_boot, "seed": b.seed, "level": b.level,
                    "estimator": b.estimator, "note": b.note,
                    "rows": {p: [vars_(r) for r in rows] for p, rows in b.rows.items()}}
        return {
            "model": self.model, "model_name": self.model_name, "measure": self.measure,
            "method": self.method, "estimator": self.estimator, "tasks": list(self.tasks),
            "shape": list(self.shape), "primary": self.primary,
            "matrix": self.stats.tolist(), "pvalues": self.pvalues.tolist(),
            "rankings": {p: [rc(c) for c in self.rankings[p]] for p in self.primaries},
            "bootstrap": boot,
            "instances": None if self.instances is None else [summ(r) for r in self.instances],
            "importance": {t: np.asarray(m).tolist() for t, m in self.matrices.items()},
            "probes": [vars_(p) for p in self.probes],
            "warnings": list(self.warnings), "elapsed_s": self.elapsed_s,
            "timings": dict(self.timings),
        }

    def to_csv(self) -> str:
        """One row per (primary, candidate) pair: the whole matrix and every ranking.

        Columns: primary, candidate, method, estimator, stat, pvalue, rank, then the bootstrap
        columns (empty without ``--bootstrap``): boot_estimator, boot_stat, boot_rank, ci_low,
        ci_high, rank_stability. Rows follow each primary's ranking; NaN is an empty cell.
        """
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["primary", "candidate", "method", "estimator", "stat", "pvalue", "rank",
                    "boot_estimator", "boot_stat", "boot_rank", "ci_low", "ci_high",
                    "rank_stability"])
        boot_rows = self.bootstrap.rows if self.bootstrap is not None else {}
        for p in self.tasks:
            boot = {r.task: r for r in boot_rows.get(p, ())}
            for c in self.rankings[p]:
                b = boot.get(c.task)
                w.writerow([p, c.task, self.method, self.estimator, _num(c.stat),
                            _num(c.pvalue), c.rank]
                           + ([BOOT_ESTIMATOR, _num(b.stat), b.rank, _num(b.ci_low),
                               _num(b.ci_high), _num(b.rank_stability)] if b else [""] * 6))
        return buf.getvalue()


def vars_(obj: Any) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in vars(obj).items()}


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))
