"""GradTS-fg: keep the auxiliary instances that look like the primary task (DESIGN.md §1 step 4).

GradTS-fg (Ma et al., EMNLP 2021, §3.3) refines the auxiliary set ``A`` chosen by GradTS-trial
(or given by the user) instance by instance. For a primary task ``P`` with task matrix ``I_P``
(L, H) (the chosen estimator of ``P``'s probe, DESIGN.md §2) and an auxiliary task ``a`` with
raw instance matrices ``R_i`` (N_a, L, H) (stored by ``a``'s own probe, the ``after`` pass)::

    tau_i = tau_b( vec(I_P), vec(layer_l1(R_i)) )              # (N_a,)  Kendall by default

(:func:`correlate.instance_vectors` and :func:`correlate.correlate_many`, chunk by chunk, as
``gradts corr --instances``). A *cut* keeps, per auxiliary task,

- ``threshold t``: the instances with ``tau_i >= t`` (0.62 in the original; ``>=`` so that an
  instance exactly at the threshold is kept — ``correlate.instance_summary``'s ``frac_above``
  counts strictly above, which differs only on exact ties);
- ``keep_fraction f``: the ``round(f * N_a)`` instances of highest tau (ties broken by the
  lower index; at most the instances that have a tau).

An instance whose tau is undefined (a constant matrix) is never kept. Only the probed
instances can be kept: a probe run with ``--max-train-examples n`` covers the first n.

The multi-task model is then trained on all of ``P``'s training data plus the kept instances
(:func:`mtl.train_mtl` with ``subsets``) and scored like a trial (best epoch's main metric on
``P``'s dev split, mean and spread over seeds). A cut that keeps nothing trains the primary
alone, which is the single-task baseline (the same ledger entry). Beside each cut the result
holds the baseline (from the trial ledger, trained now only if no trial trained it with these
settings) and the trial's selected set (the best trial mean).

Cached artefacts (DESIGN.md §4): every selection is a store entry (kind ``fg-selection``)
holding, per auxiliary task, the kept train-split indices as an int64 safetensors array (never
copies of the data), keyed by the primary's probe entry, the auxiliary probe entries, the
estimator, the method and the cut. Training runs go into the trial's run ledger (kind
``trial-run``, :func:`trial.run_key` plus the selection): a rerun reuses every finished run,
``force`` recomputes the selections and retrains the fg runs (the baseline is reused; rerun
``gradts trial --force`` to retrain it). The run key holds a digest of the kept index lists
themselves, so two cuts that keep the same instances share one run, and a cut that keeps every
instance of every auxiliary task is the trial's own run of that set. A summary entry (kind
``fg``) holds the whole result; :func:`load_fg_result` reads the newest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import progress as _progress
from .errors import (
    ConfigError,
    MissingResultError,
    UsageError,
    did_you_mean,
)
from .metrics import mean_metrics, seed_mean, seed_std
from .serialize import to_jsonable
from .store import Store, canonical_json, safe_component

if TYPE_CHECKING:
    from .config import FgSettings, RunSettings, TrialSettings
    from .mtl import MTLResult
    from .progress import ProgressFn
    from .results import ImportanceResult
    from .store import Entry, Key
    from .tasks.spec import TaskSpec
    from .trial import TrainFn, TrialSummary

SELECTION_KIND = "fg-selection"
SUMMARY_KIND = "fg"
FG_VERSION = 1
DEFAULT_THRESHOLD = 0.62
CUT_KINDS = ("threshold", "keep_fraction")


# ---------------------------------------------------------------------------------------------
# cuts and selections


@dataclass(frozen=True)
class Cut:
    """How instances are kept: ``tau >= value`` (threshold) or the top ``value`` fraction."""

    kind: str      # threshold | keep_fraction
    value: float

    @property
    def label(self) -> str:
        if self.kind == "threshold":
            return f"tau ≥ {self.value:g}"
        return f"top {100 * self.value:g}%"

    def spec(self) -> dict[str, float]:
        return {self.kind: float(self.value)}


def make_cuts(thresholds: Sequence[float] | None, keep_fraction: float | Sequence[float] | None,
              fg_settings: FgSettings | None = None) -> tuple[Cut, ...]:
    """The cuts of one run: the given thresholds, or keep fractions, or the config default."""
    fracs: list[float] = []
    if keep_fraction is not None:
        fracs = ([float(keep_fraction)] if isinstance(keep_fraction, (int, float))
                 else [float(f) for f in keep_fraction])
    if thresholds is not None and fracs:
        raise UsageError("give thresholds (--threshold/--sweep) or --keep-fraction, not both",
                         hint="e.g. --sweep 0.4,0.5,0.62 or --keep-fraction 0.25,0.5")
    cuts: list[Cut] = []
    if thresholds is not None:
        cuts = [Cut("threshold", float(t)) for t in thresholds]
    elif fracs:
        cuts = [Cut("keep_fraction", f) for f in fracs]
    elif fg_settings is not None and fg_settings.keep_fraction is not None:
        cuts = [Cut("keep_fraction", float(fg_settings.keep_fraction))]
    else:
        t = fg_settings.threshold if fg_settings is not None else DEFAULT_THRESHOLD
        cuts = [Cut("threshold", float(t))]
    if not cuts:
        raise UsageError("no threshold given", hint="e.g. --threshold 0.62 or --sweep 0.4,0.62")
    for c in cuts:
        if not math.isfinite(c.value):
            raise ConfigError(f"the {c.kind.replace('_', ' ')} must be a number, not {c.value}")
        if c.kind == "threshold" and not -1.0 <= c.value <= 1.0:
            raise ConfigError(f"threshold {c.value:g} is outside [-1, 1], the range of a "
                              "correlation", hint="e.g. --threshold 0.62")
        if c.kind == "keep_fraction" and not 0.0 < c.value <= 1.0:
            raise ConfigError(f"keep fraction {c.value:g} is outside (0, 1]",
                              hint="e.g. --keep-fraction 0.25 keeps each task's top quarter")
    return tuple(dict.fromkeys(cuts))  # dropping repeats, keeping the order


def select_instances(index: np.ndarray, tau: np.ndarray, cut: Cut) -> np.ndarray:
    """The train-split indices kept by ``cut`` from instances ``index`` (N,) with ``tau`` (N,).

    Threshold: ``tau >= t``. Keep fraction: the ``round(f * N)`` highest (ties by lower
    index), at most the number with a tau. NaN never kept. Returns sorted int64 indices.
    """
    index = np.asarray(index, dtype=np.int64)
    tau = np.asarray(tau, dtype=np.float64)
    finite = ~np.isnan(tau)
    if cut.kind == "threshold":
        keep = finite & (np.where(finite, tau, -np.inf) >= cut.value)
        return np.sort(index[keep])
    k = min(int(math.floor(cut.value * index.shape[0] + 0.5)), int(finite.sum()))
    order = np.lexsort((index, -np.where(finite, tau, -np.inf)))  # tau desc, index asc
    return np.sort(index[order[:k]])


def instance_taus(primary_vector: np.ndarray, result: ImportanceResult,
                  method: str = "kendall") -> tuple[np.ndarray, np.ndarray]:
    """``(index (N,), tau (N,))``: every stored instance of ``result`` against ``I_P`` (D,)."""
    from .correlate import correlate_many, instance_vectors

    idx_parts, tau_parts = [], []
    for idx, R in result.iter_instances():  # chunk by chunk: memory stays bounded
        s, _ = correlate_many(primary_vector, instance_vectors(R), method)  # type: ignore[arg-type]
        idx_parts.append(np.asarray(idx, dtype=np.int64))
        tau_parts.append(s)
    if not idx_parts:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(idx_parts), np.concatenate(tau_parts)


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

    @classmethod
    def of(cls, task: str, tau: np.ndarray) -> TauSummary:
        t = np.asarray(tau, dtype=np.float64)
        f = t[~np.isnan(t)]
        if not f.size:
            return cls(task, int(t.size), int(t.size), math.nan, math.nan, math.nan, math.nan)
        return cls(task, int(t.size), int(t.size - f.size), float(f.mean()),
                   float(np.median(f)), float(np.quantile(f, 0.9)), float(f.max()))


def probe_identity(entry: Entry) -> dict[str, str]:
    """A probe entry's identity for keys: its path and a digest of its files' checksums.

    The digest changes when a probe is recomputed under the same key (``--force``).
    """
    files = canonical_json(entry.meta.get("files", {}))
    return {"entry": entry.key_path, "files": hashlib.sha256(files.encode()).hexdigest()[:16]}


def selection_key(store: Store, *, model_id: str, model_name: str, primary: ImportanceResult,
                  aux: Sequence[ImportanceResult], estimator: str, method: str,
                  cut: Cut) -> Key:
    """The store key of one selection (see the module docstring)."""
    return store.key(SELECTION_KIND, [safe_component(model_name), primary.task,
                                      "+".join(r.task for r in aux) or "none",
                                      f"{cut.kind}-{cut.value:g}"], {
        "model": model_id, "measure": primary.measure, "estimator": estimator,
        "method": method, "cut": cut.spec(), "version": FG_VERSION,
        "primary": {"task": primary.task, "probe": probe_identity(primary.entry)},
        "aux": [{"task": r.task, "probe": probe_identity(r.entry)} for r in aux],
    })


def load_selection(store: Store, key: Key | Entry) -> dict[str, np.ndarray]:
    """The kept indices of a stored selection: ``{aux task: int64 indices}`` (verified)."""
    from .store import Entry

    if isinstance(key, Entry):
        entry = key
        store.verify_path(entry.path, entry.meta)
    else:
        entry = store.entry(key, verify=True)
    arrays = store.load_arrays(entry, "selection")
    order = [k["task"] for k in entry.info.get("kept", [])]
    return {t: np.asarray(arrays[t], dtype=np.int64) for t in order if t in arrays}


def find_selections(store: Store, model: str | None = None,
                    primary: str | None = None) -> list[Entry]:
    """Stored selections (optionally of one model and primary), newest first."""
    from .results import model_lookup_id

    want = model_lookup_id(model) if model else None
    out = []
    for e in store.entries(SELECTION_KIND):
        if primary is not None and e.info.get("primary") != primary:
            continue
        if want is not None:
            stored = str(e.spec.get("model", ""))
            if not (stored == want or stored.startswith(want + "@")
                    or e.info.get("model_name") == model):
                continue
        out.append(e)
    return sorted(out, key=lambda e: str(e.meta.get("created", "")), reverse=True)


# ---------------------------------------------------------------------------------------------
# results


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
    """The outcome of :func:`run_fg` (see the module docstring)."""

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

    @property
    def best(self) -> FgRow | None:
        """The row with the highest mean score (the first on ties)."""
        ok = [r for r in self.rows if math.isfinite(r.mean)]
        return max(ok, key=lambda r: r.mean) if ok else None

    def to_json(self) -> dict[str, Any]:
        d = to_jsonable(self)
        for row, rd in zip(self.rows, d["rows"], strict=True):
            rd.update(kept_total=row.kept_total, total=row.total, fraction=row.fraction,
                      label=row.cut.label,
                      delta_baseline=to_jsonable(row.mean - self.baseline.mean),
                      delta_trial=to_jsonable(row.mean - self.trial.mean) if self.trial else None)
            for k, kd in zip(row.kept, rd["kept"], strict=True):
                kd["fraction"] = k.fraction
        best = self.best
        d["best"] = None if best is None else best.cut.label
        return d


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _ref_from(d: Mapping[str, Any]) -> Reference:
    return Reference(
        label=d["label"], aux=tuple(d["aux"]), seeds=tuple(d["seeds"]),
        scores=tuple(_num(s) for s in d["scores"]), mean=_num(d["mean"]), std=_num(d["std"]),
        source=d["source"], cached=tuple(d.get("cached", ())), ledger=tuple(d.get("ledger", ())),
        report={k: {m: _num(x) for m, x in v.items()} for k, v in d.get("report", {}).items()})


def result_from_json(d: Mapping[str, Any]) -> FgResult:
    """Rebuild an :class:`FgResult` from :meth:`FgResult.to_json`'s output."""
    rows = tuple(FgRow(
        cut=Cut(r["cut"]["kind"], float(r["cut"]["value"])), selection_key=r["selection_key"],
        selection_cached=bool(r["selection_cached"]),
        kept=tuple(AuxKept(k["task"], int(k["kept"]), int(k["total"]), int(k.get("n_nan", 0)),
                           _num(k.get("min_tau"))) for k in r["kept"]),
        trained_aux=tuple(r["trained_aux"]), primary_alone=bool(r["primary_alone"]),
        seeds=tuple(r["seeds"]), scores=tuple(_num(s) for s in r["scores"]),
        mean=_num(r["mean"]), std=_num(r["std"]), best_epochs=tuple(r["best_epochs"]),
        cached=tuple(r["cached"]), ledger=tuple(r["ledger"]), seconds=float(r["seconds"]),
        metrics={k: _num(v) for k, v in r["metrics"].items()},
        report={k: {m: _num(x) for m, x in v.items()} for k, v in r.get("report", {}).items()},
        ci_low=_opt(r.get("ci_low")), ci_high=_opt(r.get("ci_high"))) for r in d["rows"])
    return FgResult(
        primary=d["primary"], model=d["model"], model_name=d["model_name"],
        main_metric=d["main_metric"], aux=tuple(d["aux"]), aux_source=d["aux_source"],
        measure=d["measure"], estimator=d["estimator"], method=d["method"],
        seeds=tuple(d["seeds"]), settings=d["settings"], rows=rows,
        baseline=_ref_from(d["baseline"]),
        trial=_ref_from(d["trial"]) if d.get("trial") else None, trained=int(d["trained"]),
        seconds=float(d["seconds"]), notes=tuple(d.get("notes", ())),
        timings={k: float(v) for k, v in d.get("timings", {}).items()}, key=d.get("key", ""),
        created=d.get("created", ""), taus=tuple(_tau_from(t) for t in d.get("taus", ())))


def _tau_from(d: Mapping[str, Any]) -> TauSummary:
    return TauSummary(d["task"], int(d["n"]), int(d["n_nan"]), _num(d["mean"]),
                      _num(d["median"]), _num(d["q90"]), _num(d["max"]))


def load_fg_result(store: Store, model: str, primary: str) -> FgResult | None:
    """The newest stored GradTS-fg result of ``primary`` with ``model`` (id or path), or None."""
    from .results import newest_entry

    newest = newest_entry(store, SUMMARY_KIND, model, primary=primary)
    return None if newest is None else result_from_json(store.load_json(newest, "result"))


# ---------------------------------------------------------------------------------------------
# helpers


def _check_choice(value: str, choices: Sequence[str], what: str, flag: str) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} '{value}'",
                          hint=did_you_mean(value, choices) or
                          f"{flag} is one of {', '.join(choices)}")


def _subsets_digest(subsets: Mapping[str, np.ndarray]) -> str:
    """A digest of the kept index lists themselves (what changes the trained model)."""
    h = hashlib.sha256()
    for t in sorted(subsets):
        a = np.ascontiguousarray(np.asarray(subsets[t], dtype="<i8"))
        h.update(t.encode() + b"\0" + str(a.shape[0]).encode() + b"\0" + a.tobytes())
    return h.hexdigest()[:16]


def _settings_mismatch(summary: TrialSummary, ours: Mapping[str, Any]) -> list[str]:
    theirs = summary.settings
    return [k for k, v in ours.items() if k in theirs and theirs[k] != v]


# ---------------------------------------------------------------------------------------------
# run_fg


def run_fg(model: str, primary: TaskSpec, aux: Sequence[TaskSpec] | None = None, *,
           store: Store, run: RunSettings | None = None,
           trial_settings: TrialSettings | None = None, fg_settings: FgSettings | None = None,
           thresholds: Sequence[float] | None = None,
           keep_fraction: float | Sequence[float] | None = None,
           estimator: str = "during", method: str = "kendall", measure: str = "gate",
           seeds: int | None = None, force: bool = False, progress: ProgressFn | None = None,
           train_fn: TrainFn | None = None, registry: Any = None) -> FgResult:
    """GradTS-fg for ``primary`` (see the module docstring).

    ``aux=None`` takes the trial's selected set (:func:`trial.load_trial_summary`); no trial
    result is a :class:`MissingResultError` naming the ``gradts trial`` command. ``thresholds``
    (a sweep) or ``keep_fraction`` (one or several) choose the cuts, else ``fg_settings``.
    ``seeds`` overrides ``trial_settings.seeds``. ``registry`` resolves the trial's task names
    (default: the built-in registry). ``train_fn`` replaces :func:`mtl.train_mtl` (tests).
    """
    import datetime as _dt

    from .config import FgSettings, RunSettings, TrialSettings
    from .correlate import METHODS
    from .data import data_fingerprint
    from .models import resolve_model
    from .mtl import MTLSettings, train_mtl
    from .results import ESTIMATORS, MEASURES, check_comparable
    from .trial import (
        _Context,
        _device_name,
        _eval_plan,
        _importance_keys,
        _mtl_from_entry,
        _precision_name,
        _write_run,
        load_trial_summary,
        paired_bootstrap,
        run_key,
    )

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    run = run or RunSettings()
    trial_settings = trial_settings or TrialSettings()
    fg_settings = fg_settings or FgSettings()
    train = train_fn or train_mtl
    _check_choice(method, METHODS, "correlation method", "--method")
    _check_choice(estimator, ESTIMATORS, "estimator", "--estimator")
    _check_choice(measure, MEASURES, "importance measure", "--measure")
    n_seeds = trial_settings.seeds if seeds is None else int(seeds)
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {n_seeds}")
    cuts = make_cuts(thresholds, keep_fraction, fg_settings)
    settings = MTLSettings.of(trial_settings)
    settings.check()
    notes: list[str] = []

    # 1. the auxiliary set: given, or the trial's selection
    summary = load_trial_summary(store, model, primary.name)
    if aux is None:
        if summary is None:
            raise MissingResultError(
                f"no GradTS-trial result for primary '{primary.name}' with model {model}, "
                "and no --aux given",
                hint=f"run: gradts trial --model {model} --primary {primary.name} "
                     + (f"--suite {primary.suite}" if primary.suite else "--candidates a,b,c")
                     + " (or name the auxiliary tasks: --aux a,b)", primary=primary.name)
        if registry is None:
            from .tasks import build_registry

            registry = build_registry()
        aux = [registry.get(n) for n in summary.selected]
        aux_source = "trial"
        if not aux:
            notes.append(f"the trial selected no auxiliary task for '{primary.name}' (the "
                         "primary alone was best): there is nothing to select from; every cut "
                         "trains the primary alone")
    else:
        aux_source = "--aux"
    aux = [a for a in dict((a.name, a) for a in aux).values() if a.name != primary.name]

    # 2. importance results: the primary's task matrix, every auxiliary task's instances
    t0 = time.perf_counter()
    p_res, p_current = _load_probe(store, model, primary, measure, strict=False)
    if not p_current:
        notes.append(f"'{primary.name}' was probed on other data than it has now (its data "
                     f"fingerprint changed): its task matrix may be stale; rerun gradts probe "
                     f"--model {model} --task {primary.name} --force")
    a_res = [_load_probe(store, model, a, measure, strict=True)[0] for a in aux]
    check_comparable([p_res, *a_res])
    for r in a_res:
        if not r.has_instances:
            r.iter_instances()  # raises the error naming `gradts probe ... --force`
    x = np.asarray(p_res.matrix(estimator), dtype=np.float64).ravel()  # (D,) vec(I_P)
    timings["load_s"] = time.perf_counter() - t0

    ref = resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    specs = {s.name: s for s in [primary, *aux]}
    holdout_fraction, holdout_seed = None, run.seed
    if summary is not None and summary.settings.get("holdout_fraction") is not None:
        holdout_fraction = float(summary.settings["holdout_fraction"])
        holdout_seed = int(summary.settings.get("seed", run.seed))
        notes.append(f"scores are on the selection part of dev, as in the trial "
                     f"(--holdout-fraction {holdout_fraction:g})")
    select_idx, report, eval_spec, _sizes = _eval_plan(primary, store, holdout_fraction,
                                                       holdout_seed)
    ctx = _Context(
        model_id=ref.cache_id, model_name=ref.name, primary=primary, specs=specs,
        data_fp={n: data_fingerprint(s, store=store) for n, s in specs.items()},
        importance=_importance_keys(store, model, measure, list(specs)),
        settings=settings, precision=_precision_name(run), eval_spec=eval_spec)
    seed_list = tuple(run.seed + i for i in range(n_seeds))
    our_settings = {**settings.key(), "seed": run.seed, "seeds": n_seeds,
                    "precision": ctx.precision}
    if summary is not None:
        differ = _settings_mismatch(summary, our_settings)
        if differ:
            notes.append("the trial result was trained with different settings ("
                         + ", ".join(f"{k} {summary.settings.get(k)} there, {our_settings[k]} "
                                     "here" for k in differ)
                         + "): its score is not directly comparable")
        if aux_source == "--aux" and tuple(a.name for a in aux) != tuple(summary.selected):
            notes.append("the trial selected " + (" + ".join(summary.selected) or "no task")
                         + f", not the --aux set {' + '.join(a.name for a in aux)}")

    counters = {"trained": 0}
    run_results: dict[str, list[MTLResult]] = {}

    def train_runs(label: str, aux_names: tuple[str, ...],
                   subsets: Mapping[str, np.ndarray] | None, *, retrain: bool,
                   only_cached: bool = False) -> tuple[list[MTLResult], list[bool], list[str]]:
        results: list[MTLResult] = []
        cached: list[bool] = []
        keys: list[str] = []
        for seed in seed_list:
            key = run_key(store, ctx, aux_names, seed)
            if subsets:
                key = store.key(key.kind, [*key.names[:3], "fg-" + _subsets_digest(subsets),
                                           key.names[-1]],
                                {**key.spec, "subsets": {
                                    "digest": _subsets_digest(subsets),
                                    "sizes": {t: int(len(v)) for t, v in sorted(subsets.items())},
                                    "version": FG_VERSION}})
            run_label = label + (f" (seed {seed})" if len(seed_list) > 1 else "")
            if only_cached:
                if not store.exists(key):
                    return [], [], []
                results.append(_mtl_from_entry(store, store.entry(key)))
                cached.append(True)
                keys.append(str(key))
                continue
            with store.lock(key):
                if store.exists(key) and not retrain:
                    r = _mtl_from_entry(store, store.entry(key))
                    was_cached = True
                else:
                    _progress.emit(progress, "fg-start", task=primary.name, message=run_label,
                                   metrics={"seed": float(seed)})
                    r = train(ref, primary, [specs[a] for a in aux_names], store=store, run=run,
                              settings=settings, seed=seed, eval_split="dev",
                              eval_index=select_idx, report=report, progress=progress,
                              label=run_label, **({"subsets": dict(subsets)} if subsets else {}))
                    _write_run(store, key, ctx, r)
                    counters["trained"] += 1
                    was_cached = False
            results.append(r)
            cached.append(was_cached)
            keys.append(str(key))
            _progress.emit(progress, "fg-run", task=primary.name, message=run_label,
                           metrics={primary.main_metric: r.score, "epoch": float(r.best_epoch),
                                    "cached": float(was_cached)})
        return results, cached, keys

    # 3. the baseline through the trial ledger (reused when a trial trained it)
    t0 = time.perf_counter()
    b_runs, b_cached, b_keys = train_runs(f"{primary.name} alone", (), None, retrain=False)
    run_results["baseline"] = b_runs
    b_scores = tuple(r.score for r in b_runs)
    baseline = Reference(
        label="primary alone", aux=(), seeds=seed_list, scores=b_scores, mean=seed_mean(b_scores),
        std=seed_std(b_scores), source="ledger" if all(b_cached) else "trained",
        cached=tuple(b_cached), ledger=tuple(b_keys),
        report={n: mean_metrics([r.report_metrics.get(n, {}) for r in b_runs])
                for n in report})
    timings["baseline_s"] = time.perf_counter() - t0

    # 4. the trial's selected set (all instances): from the ledger, else the trial summary
    trial_ref: Reference | None = None
    aux_names = tuple(a.name for a in aux)
    if aux_names:
        f_runs, _, f_keys = train_runs("", aux_names, None, retrain=False, only_cached=True)
        if f_runs:
            f_scores = tuple(r.score for r in f_runs)
            trial_ref = Reference(
                label=" + ".join(aux_names) + " (all instances)", aux=aux_names,
                seeds=seed_list, scores=f_scores, mean=seed_mean(f_scores), std=seed_std(f_scores),
                source="ledger", cached=tuple(True for _ in f_runs), ledger=tuple(f_keys),
                report={n: mean_metrics([r.report_metrics.get(n, {}) for r in f_runs])
                        for n in report})
            run_results["trial"] = f_runs
    if trial_ref is None and summary is not None and summary.selected:
        st = summary.selected_trial
        trial_ref = Reference(
            label=" + ".join(st.aux) + " (trial)", aux=tuple(st.aux), seeds=tuple(st.seeds),
            scores=tuple(st.scores), mean=st.mean, std=st.std, source="trial summary",
            cached=tuple(st.cached), ledger=tuple(st.ledger), report=dict(st.report))

    # 5. every cut: select (cached in the store), then train P + the kept instances
    taus: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    train_sizes: dict[str, int] = {}

    def taus_of(r: ImportanceResult) -> tuple[np.ndarray, np.ndarray]:
        if r.task not in taus:
            t1 = time.perf_counter()
            taus[r.task] = instance_taus(x, r, method)
            timings["correlate_s"] = timings.get("correlate_s", 0.0) + time.perf_counter() - t1
        return taus[r.task]

    def train_size(name: str) -> int:
        if name not in train_sizes:
            from .data import load_split

            train_sizes[name] = len(load_split(specs[name], "train", store=store))
        return train_sizes[name]

    rows: list[FgRow] = []
    tau_dist: list[TauSummary] = []
    for ci, cut in enumerate(cuts):
        _progress.emit(progress, "fg-cut", task=primary.name, done=ci, total=len(cuts),
                       message=cut.label)
        skey = selection_key(store, model_id=ref.cache_id, model_name=ref.name,
                             primary=p_res, aux=a_res, estimator=estimator, method=method,
                             cut=cut)
        kept_idx, kept_info, dist, sel_cached = _selection(store, skey, cut, a_res, taus_of,
                                                           force, primary.name, ref.name)
        if dist and not tau_dist:
            tau_dist.extend(dist)
        subsets = {t: kept_idx[t] for t in aux_names if kept_idx[t].size}
        trained_aux = tuple(t for t in aux_names if t in subsets)
        # a task kept whole needs no subset: the run is then the trial's own run of that set
        for t in list(subsets):
            if subsets[t].size == train_size(t) and np.array_equal(
                    subsets[t], np.arange(train_size(t))):
                del subsets[t]
        alone = not trained_aux
        label = (f"{primary.name} alone (nothing kept at {cut.label})" if alone else
                 f"{primary.name} + " + " + ".join(
                     f"{t} {len(kept_idx[t])}/{next(k.total for k in kept_info if k.task == t)}"
                     for t in trained_aux) + f" ({cut.label})")
        if alone:
            runs_, cached_, keys_ = b_runs, list(b_cached), list(b_keys)
        else:
            t1 = time.perf_counter()
            runs_, cached_, keys_ = train_runs(label, trained_aux, subsets, retrain=force)
            timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t1
        scores = tuple(r.score for r in runs_)
        lo = hi = None
        if not alone and runs_ and b_runs and all(
                np.array_equal(r.dev_index, b_runs[0].dev_index) for r in [*runs_, *b_runs]):
            lo, hi = paired_bootstrap(primary.main_metric, np.asarray(b_runs[0].dev_labels),
                                      [np.asarray(r.dev_predictions) for r in runs_],
                                      [np.asarray(r.dev_predictions) for r in b_runs],
                                      seed=run.seed)
        rows.append(FgRow(
            cut=cut, selection_key=str(skey), selection_cached=sel_cached,
            kept=tuple(kept_info), trained_aux=trained_aux, primary_alone=alone,
            seeds=seed_list, scores=scores, mean=seed_mean(scores), std=seed_std(scores),
            best_epochs=tuple(r.best_epoch for r in runs_), cached=tuple(cached_),
            ledger=tuple(keys_), seconds=float(sum(r.seconds for r in runs_)),
            metrics=mean_metrics([r.best_metrics for r in runs_]),
            report={n: mean_metrics([r.report_metrics.get(n, {}) for r in runs_])
                    for n in report},
            ci_low=_opt(lo) if lo is not None and math.isfinite(lo) else None,
            ci_high=_opt(hi) if hi is not None and math.isfinite(hi) else None))
        _progress.emit(progress, "fg-cut", task=primary.name, done=ci + 1, total=len(cuts),
                       message=cut.label, metrics={primary.main_metric: rows[-1].mean,
                                                   "kept": rows[-1].fraction})
    if not aux_names and aux_source == "--aux":
        notes.append("no auxiliary task left after removing the primary from --aux")
    empty = [r.cut.label for r in rows if r.primary_alone]
    if aux_names and empty:
        notes.append(_keep_nothing_note(empty, len(rows), tau_dist, estimator))

    result = FgResult(
        primary=primary.name, model=ref.cache_id, model_name=ref.name,
        main_metric=primary.main_metric, aux=aux_names, aux_source=aux_source,
        measure=p_res.measure, estimator=estimator, method=method, seeds=seed_list,
        settings={**our_settings, "holdout_fraction": holdout_fraction},
        rows=tuple(rows), baseline=baseline, trial=trial_ref, trained=counters["trained"],
        seconds=time.perf_counter() - t_start, notes=tuple(dict.fromkeys(notes)),
        timings={k: round(v, 3) for k, v in timings.items()},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        taus=tuple(tau_dist))
    key = store.key(SUMMARY_KIND, [safe_component(ref.name), primary.name], {
        "model": ref.cache_id, "primary": primary.name, "aux": list(aux_names),
        "cuts": [c.spec() for c in cuts], "selections": [r.selection_key for r in rows],
        "settings": dict(result.settings), "estimator": estimator, "method": method,
        "measure": p_res.measure, "version": FG_VERSION})
    result = dataclasses.replace(result, key=str(key),
                                 settings={**result.settings, "device": _device_name(run)})
    best = result.best
    with store.lock(key), store.writer(key, info={
            "primary": primary.name, "model_name": ref.name, "aux": list(aux_names),
            "main_metric": primary.main_metric, "baseline": to_jsonable(baseline.mean),
            "best": None if best is None else best.cut.label,
            "best_score": None if best is None else to_jsonable(best.mean)}) as w:
        w.save_json("result", result.to_json())
    return result


def _keep_nothing_note(labels: Sequence[str], n_rows: int, dist: Sequence[TauSummary],
                       estimator: str) -> str:
    """Say which cuts kept nothing, why (the highest instance tau) and what to try instead."""
    if len(labels) == n_rows and n_rows > 1:
        msg = "no cut kept any auxiliary instance"
    else:
        msg = f"{', '.join(labels)} kept no auxiliary instance"
    msg += ": the primary was trained alone (the baseline)"
    tops = [t for t in dist if math.isfinite(t.max)]
    if tops:
        hi = max(tops, key=lambda t: t.max)
        med = max(tops, key=lambda t: t.median)
        msg += (f". The highest instance tau against the primary's {estimator} matrix is "
                f"{hi.max:.2f} ({hi.task}; the highest median {med.median:.2f}, {med.task}): "
                f"try lower thresholds, e.g. --sweep "
                + ",".join(f"{v:.2f}" for v in sorted({round(med.median, 2),
                                                       round(med.q90, 2)}))
                + ", or --keep-fraction 0.25")
    return msg


def _load_probe(store: Store, model: str, spec: TaskSpec, measure: str, *,
                strict: bool) -> tuple[ImportanceResult, bool]:
    """The task's newest probe (preferring one of the task's current data) and whether its
    data is current. ``strict``: other data is an error (an auxiliary task's instance indices
    must fit its train split; the primary's task matrix is only stale)."""
    from .data import data_fingerprint
    from .results import load_result

    fp = data_fingerprint(spec, store=store)
    r = load_result(store, model, spec.name, measure, data_fingerprint=fp)
    current = r.entry.spec.get("data") == fp
    if strict and not current:
        raise MissingResultError(
            f"task '{spec.name}' was probed with model {model} on other data than it has now "
            "(its data fingerprint changed), so its instance indices do not fit",
            hint=f"run: gradts probe --model {model} --task {spec.name} --force", task=spec.name)
    return r, current


def _selection(store: Store, key: Key, cut: Cut, a_res: Sequence[ImportanceResult],
               taus_of: Any, force: bool, primary: str, model_name: str
               ) -> tuple[dict[str, np.ndarray], list[AuxKept], list[TauSummary], bool]:
    """One cut's kept indices per auxiliary task (and the tau distributions they came from):
    read from the store, or computed and stored."""
    with store.lock(key):
        if store.exists(key) and not force:
            entry = store.entry(key, verify=True)
            kept = load_selection(store, entry)
            info = [AuxKept(k["task"], int(k["kept"]), int(k["total"]), int(k.get("n_nan", 0)),
                            _num(k.get("min_tau"))) for k in entry.info.get("kept", [])]
            dist = [_tau_from(t) for t in entry.info.get("taus", [])]
            if [k.task for k in info] == [r.task for r in a_res] and set(kept) == {
                    r.task for r in a_res}:
                return kept, info, dist, True
        kept = {}
        info = []
        dist = []
        for r in a_res:
            index, tau = taus_of(r)
            k = select_instances(index, tau, cut)
            kept[r.task] = k
            ktau = tau[np.isin(index, k)]
            info.append(AuxKept(r.task, int(k.size), int(index.size), int(np.isnan(tau).sum()),
                                float(ktau.min()) if ktau.size else math.nan))
            dist.append(TauSummary.of(r.task, tau))
        with store.writer(key, info={
                "primary": primary, "model_name": model_name, "cut": cut.spec(),
                "kept": [to_jsonable(dataclasses.asdict(k)) for k in info],
                "taus": [to_jsonable(dataclasses.asdict(t)) for t in dist]}) as w:
            w.save_arrays("selection", {t: np.asarray(v, dtype=np.int64)
                                        for t, v in kept.items()} or
                          {"_empty": np.zeros(0, np.int64)})
        return kept, info, dist, False

