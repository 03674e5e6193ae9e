"""Result records of GradTS-trial, GradTS-fg and ``gradts compare``, with one codec.

Every record is a frozen dataclass. :func:`encode` turns one into plain JSON (the store's and
``--json``'s layout: :func:`serialize.to_jsonable`); :func:`decode` rebuilds it from that JSON
by reading the dataclass's own field types, so no record carries a hand-written ``from_json``.
Decoding is lenient in the directions a stored file needs: a missing field takes its default
(older versions wrote fewer fields), an unknown key is ignored (derived values written for
readers, e.g. ``FgResult``'s ``delta_baseline``), and ``null`` in a float field is NaN
(non-finite floats are written as ``null``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from ..serialize import to_jsonable
from ..signal import FG_THRESHOLD

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# the codec


def encode(obj: Any) -> Any:
    """Plain JSON (dicts, lists, numbers, strings, booleans, None) equal to ``obj``."""
    return to_jsonable(obj)


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """The ``cls`` record stored as ``data`` (see the module docstring)."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _value(hints[f.name], data[f.name])
              for f in dataclasses.fields(cls) if f.init and f.name in data}  # type: ignore[arg-type]
    return cls(**kwargs)


def _value(tp: Any, v: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        return _value(next(a for a in args if a is not type(None)), v)
    if tp is float:
        return math.nan if v is None else float(v)
    if tp in (int, bool, str):
        return tp(v)
    if dataclasses.is_dataclass(tp):
        return decode(tp, v)  # type: ignore[arg-type]
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_value(item, x) for x in v)
    if origin in (dict, Mapping):
        item = args[1] if len(args) == 2 else Any
        return {str(k): _value(item, x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------------------------
# GradTS-trial


@dataclass(frozen=True)
class Ranked:
    """One ranked candidate (as :class:`correlate.RankedCandidate`, kept in the summary)."""

    task: str
    stat: float
    pvalue: float
    rank: int


@dataclass(frozen=True)
class TrialRecord:
    """One trial: a candidate set trained with one or more seeds."""

    aux: tuple[str, ...]
    role: str                                  # baseline | prefix | random | all
    seeds: tuple[int, ...]
    scores: tuple[float, ...]                  # per seed: best epoch's main metric
    mean: float
    std: float                                 # sample standard deviation (0 with one seed)
    best_epochs: tuple[int, ...]
    seconds: float                             # training time, summed over seeds
    cached: tuple[bool, ...]                   # per seed: reused from the ledger
    metrics: Mapping[str, float]               # every metric, mean over seeds
    report: Mapping[str, Mapping[str, float]]  # "test"/"holdout" -> metric -> mean over seeds
    ledger: tuple[str, ...]                    # the ledger entries (key paths), per seed
    improved: bool | None = None               # prefix trials: beat the best so far

    @property
    def label(self) -> str:
        return " + ".join(self.aux) if self.aux else "(primary alone)"

    @property
    def all_cached(self) -> bool:
        return all(self.cached)


@dataclass(frozen=True)
class NoiseVerdict:
    """Is the selected set's advantage over the baseline larger than the noise?"""

    diff: float                 # selected mean - baseline mean (main metric)
    ci_low: float | None        # bootstrap interval of the paired difference over dev examples
    ci_high: float | None
    level: float
    spread: float | None        # the larger standard deviation across seeds (None: one seed)
    within_noise: bool
    message: str
    n_examples: int = 0
    n_boot: int = 0


@dataclass(frozen=True)
class HoldoutReport:
    """The selected set's score on data not used to select it (or a plain statement of none)."""

    kind: str                   # test | holdout | same-dev
    split: str
    n_examples: int
    selected: Mapping[str, float] | None
    baseline: Mapping[str, float] | None
    diff: float | None          # main metric, selected - baseline
    message: str


@dataclass(frozen=True)
class TrialSummary:
    """The outcome of :func:`selection.trial.run_trial`."""

    primary: str
    model: str                            # cache id
    model_name: str
    main_metric: str
    ranking: tuple[Ranked, ...]
    trials: tuple[TrialRecord, ...]       # the baseline, then P + top-1, P + top-2, ...
    baseline: TrialRecord
    selected: tuple[str, ...]
    selected_trial: TrialRecord
    stop_reason: str
    verdict: NoiseVerdict
    comparisons: tuple[TrialRecord, ...]  # random / all
    holdout: tuple[HoldoutReport, ...]
    ledger_keys: tuple[str, ...]
    settings: Mapping[str, Any]
    estimator: str
    method: str
    measure: str
    seeds: tuple[int, ...]
    trained: int                          # runs trained now (not reused from the ledger)
    seconds: float                        # wall time of this call
    key: str = ""                         # the summary entry
    created: str = ""
    notes: tuple[str, ...] = ()
    probes: Mapping[str, str] = field(default_factory=dict)  # task -> probe entry used
    # under torchrun: world size, backend, and per run trained who trained it, how fast
    distributed: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return encode(self)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# GradTS-fg


@dataclass(frozen=True)
class Cut:
    """How instances are kept: ``tau >= value`` (threshold) or the top ``value`` fraction."""

    kind: str = "threshold"     # threshold | keep_fraction
    value: float = FG_THRESHOLD

    @property
    def label(self) -> str:
        if self.kind == "threshold":
            return f"tau ≥ {self.value:g}"
        return f"top {100 * self.value:g}%"

    def spec(self) -> dict[str, float]:
        return {self.kind: float(self.value)}


@dataclass(frozen=True)
class AuxKept:
    """One auxiliary task under one cut: how many instances were kept out of how many."""

    task: str
    kept: int
    total: int
    n_nan: int = 0
    min_tau: float = math.nan       # the lowest tau among the kept (NaN if none)

    @property
    def fraction(self) -> float:
        return self.kept / self.total if self.total else 0.0


@dataclass(frozen=True)
class TauSummary:
    """The distribution of one auxiliary task's instance taus (to choose a threshold by)."""

    task: str
    n: int
    n_nan: int
    mean: float
    median: float
    q90: float
    max: float


@dataclass(frozen=True)
class FgRow:
    """One cut: the instances kept and the multi-task score of P plus them."""

    cut: Cut
    selection_key: str
    selection_cached: bool
    kept: tuple[AuxKept, ...]
    trained_aux: tuple[str, ...]      # auxiliary tasks with at least one kept instance
    primary_alone: bool               # nothing kept: the primary was trained by itself
    seeds: tuple[int, ...]
    scores: tuple[float, ...]         # per seed: best epoch's main metric
    mean: float
    std: float                        # sample standard deviation (0 with one seed)
    best_epochs: tuple[int, ...]
    cached: tuple[bool, ...]          # per seed: reused from the ledger
    ledger: tuple[str, ...]           # ledger entries (key paths), per seed
    seconds: float                    # training time summed over seeds
    metrics: Mapping[str, float]      # every metric, mean over seeds
    report: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ci_low: float | None = None       # paired bootstrap interval of (row - baseline) on dev
    ci_high: float | None = None

    @property
    def kept_total(self) -> int:
        return sum(k.kept for k in self.kept)

    @property
    def total(self) -> int:
        return sum(k.total for k in self.kept)

    @property
    def fraction(self) -> float:
        return self.kept_total / self.total if self.total else 0.0

    @property
    def all_cached(self) -> bool:
        return all(self.cached)


@dataclass(frozen=True)
class Reference:
    """A score to compare with: the baseline (primary alone) or the trial's selected set."""

    label: str
    aux: tuple[str, ...]
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    mean: float
    std: float
    source: str                       # ledger | trained | trial summary
    cached: tuple[bool, ...] = ()
    ledger: tuple[str, ...] = ()
    report: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class FgResult:
    """The outcome of :func:`selection.fg.run_fg`."""

    primary: str
    model: str                        # cache id
    model_name: str
    main_metric: str
    aux: tuple[str, ...]
    aux_source: str                   # trial | --aux
    measure: str
    estimator: str
    method: str
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    rows: tuple[FgRow, ...]
    baseline: Reference
    trial: Reference | None
    trained: int                      # runs trained now (not reused)
    seconds: float
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    key: str = ""
    created: str = ""
    taus: tuple[TauSummary, ...] = ()   # per auxiliary task: its instance taus
    probes: Mapping[str, str] = field(default_factory=dict)  # task -> probe entry used
    # under torchrun: world size, backend, and per run trained who trained it, how fast
    distributed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> FgRow | None:
        """The row with the highest mean score (the first on ties)."""
        ok = [r for r in self.rows if math.isfinite(r.mean)]
        return max(ok, key=lambda r: r.mean) if ok else None

    def to_json(self) -> dict[str, Any]:
        """:func:`encode`, plus derived values for readers of the JSON (ignored by decode)."""
        d: dict[str, Any] = encode(self)
        for row, rd in zip(self.rows, d["rows"], strict=True):
            rd.update(kept_total=row.kept_total, total=row.total, fraction=row.fraction,
                      label=row.cut.label,
                      delta_baseline=encode(row.mean - self.baseline.mean),
                      delta_trial=encode(row.mean - self.trial.mean) if self.trial else None)
            for k, kd in zip(row.kept, rd["kept"], strict=True):
                kd["fraction"] = k.fraction
        best = self.best
        d["best"] = None if best is None else best.cut.label
        return d
