"""GradTS-trial: choose the auxiliary tasks of a primary task by trial (DESIGN.md §1 step 3, §2).

For a primary task ``P`` the candidates are ranked by the correlation (Kendall tau-b by
default) of their task-level head-importance matrices with ``P``'s
(:func:`correlate.rank_from_store`). Then multi-task models (:func:`mtl.train_mtl`) are
trained on ``P`` alone (the baseline), ``P + top-1``, ``P + top-2``, ...: each trial's score
is its best epoch's main metric on ``P``'s dev split, and the trials stop after ``patience``
(default 1) trials in a row that do not beat the best score so far (best epoch against best
epoch, DESIGN.md §2 "Trial stop rule"). The result is the best prefix, which may be empty
(the primary alone). ``max_aux`` caps the prefix length.

With ``seeds = N`` every trial is trained with seeds ``seed, seed+1, ...`` and the stop rule
compares the means. The selected set's advantage over the baseline is reported with the
spread across seeds and a 90% bootstrap interval of the paired difference over dev examples;
when the interval contains 0 (or the difference is smaller than the spread) the verdict says
plainly that the advantage is within the noise — one seed on a few hundred dev examples
usually cannot separate auxiliary sets (DESIGN.md §7, last paragraph).

Selection and score on the same dev split are optimistic. If ``P`` has a labelled test split,
the selected set's (and the baseline's) test scores at the best epoch are reported; otherwise
the report says so, and ``holdout_fraction`` splits dev (seeded) into a selection part and a
report part.

Every trained (candidate set, seed) is an entry in a run ledger in the store (kind
``trial-run``), keyed by the model, the primary, the ordered candidate set, the importance
entries used, the training settings and the seed: a rerun with the same settings reuses every
finished trial (an interrupted run resumes), ``force`` retrains. A summary entry (kind
``trial``) holds the ranking, every trial, the baseline and the selected set;
:func:`load_trial_summary` reads the newest (``gradts fg`` and ``gradts report`` use it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import mtl as _mtl
from . import progress as _progress
from .errors import ConfigError, UsageError
from .metrics import mean_metrics, seed_mean, seed_std
from .mtl import MTLResult, MTLSettings, train_mtl
from .serialize import to_jsonable
from .store import Store, safe_component

if TYPE_CHECKING:
    from .config import RunSettings, TrialSettings
    from .progress import ProgressFn
    from .tasks.spec import TaskSpec

RUN_KIND = "trial-run"
SUMMARY_KIND = "trial"
COMPARE_CHOICES = ("random", "all")
BOOTSTRAP_SAMPLES = 1000
NOISE_LEVEL = 0.90

TrainFn = Callable[..., MTLResult]
_TRAIN_MTL = train_mtl


# ---------------------------------------------------------------------------------------------
# results


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
    """The outcome of :func:`run_trial` (see the module docstring)."""

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

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(self)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _record_from(d: Mapping[str, Any]) -> TrialRecord:
    return TrialRecord(
        aux=tuple(d["aux"]), role=d["role"], seeds=tuple(d["seeds"]),
        scores=tuple(_num(v) for v in d["scores"]), mean=_num(d["mean"]), std=_num(d["std"]),
        best_epochs=tuple(d["best_epochs"]), seconds=float(d["seconds"]),
        cached=tuple(d["cached"]), metrics={k: _num(v) for k, v in d["metrics"].items()},
        report={k: {m: _num(x) for m, x in v.items()} for k, v in d["report"].items()},
        ledger=tuple(d["ledger"]), improved=d.get("improved"))


def summary_from_json(d: Mapping[str, Any]) -> TrialSummary:
    v = d["verdict"]
    return TrialSummary(
        primary=d["primary"], model=d["model"], model_name=d["model_name"],
        main_metric=d["main_metric"],
        ranking=tuple(Ranked(r["task"], _num(r["stat"]), _num(r["pvalue"]), int(r["rank"]))
                      for r in d["ranking"]),
        trials=tuple(_record_from(t) for t in d["trials"]),
        baseline=_record_from(d["baseline"]), selected=tuple(d["selected"]),
        selected_trial=_record_from(d["selected_trial"]), stop_reason=d["stop_reason"],
        verdict=NoiseVerdict(_num(v["diff"]), v["ci_low"], v["ci_high"], v["level"], v["spread"],
                             bool(v["within_noise"]), v["message"], v.get("n_examples", 0),
                             v.get("n_boot", 0)),
        comparisons=tuple(_record_from(t) for t in d["comparisons"]),
        holdout=tuple(HoldoutReport(h["kind"], h["split"], h["n_examples"], h["selected"],
                                    h["baseline"], h["diff"], h["message"]) for h in d["holdout"]),
        ledger_keys=tuple(d["ledger_keys"]), settings=d["settings"], estimator=d["estimator"],
        method=d["method"], measure=d["measure"], seeds=tuple(d["seeds"]),
        trained=int(d["trained"]), seconds=float(d["seconds"]), key=d.get("key", ""),
        created=d.get("created", ""), notes=tuple(d.get("notes", ())))


# ---------------------------------------------------------------------------------------------
# the run ledger


def _mtl_to_json(r: MTLResult) -> dict[str, Any]:
    d = to_jsonable({f.name: getattr(r, f.name) for f in dataclasses.fields(r)
                   if f.name not in ("dev_predictions", "dev_labels", "dev_index")})
    return d


def _mtl_from_entry(store: Store, entry: Any) -> MTLResult:
    from .mtl import EpochRecord

    d = store.load_json(entry, "result")
    arrays = store.load_arrays(entry, "dev")
    return MTLResult(
        primary=d["primary"], aux=tuple(d["aux"]), seed=int(d["seed"]),
        epochs=tuple(EpochRecord(e["epoch"], {k: _num(v) for k, v in e["train_loss"].items()},
                                 e["examples"], {k: _num(v) for k, v in e["dev_metrics"].items()},
                                 e["seconds"]) for e in d["epochs"]),
        best_epoch=int(d["best_epoch"]), best_metrics={k: _num(v) for k, v in
                                                       d["best_metrics"].items()},
        main_metric=d["main_metric"], seconds=float(d["seconds"]),
        dev_predictions=arrays["predictions"], dev_labels=arrays["labels"],
        dev_index=arrays["index"], eval_split=d.get("eval_split", "dev"),
        report_metrics={k: {m: _num(x) for m, x in v.items()}
                        for k, v in d.get("report_metrics", {}).items()},
        train_sizes=d.get("train_sizes", {}), examples_seen=d.get("examples_seen", {}))


@dataclass(frozen=True)
class _Context:
    """Everything that goes into the ledger keys besides the candidate set and the seed."""

    model_id: str
    model_name: str
    primary: TaskSpec
    specs: Mapping[str, TaskSpec]
    data_fp: Mapping[str, str]
    importance: Mapping[str, str]     # task -> probe entry key path
    settings: MTLSettings
    precision: str
    eval_spec: Mapping[str, Any]


def run_key(store: Store, ctx: _Context, aux: Sequence[str], seed: int) -> Any:
    """The ledger key of one trial run (one ordered candidate set, one seed)."""
    tasks = [ctx.primary.name, *aux]
    return store.key(RUN_KIND, [safe_component(ctx.model_name), ctx.primary.name,
                                "+".join(aux) or "alone", f"seed{seed}"], {
        "model": ctx.model_id,
        "primary": {"name": ctx.primary.name, "task": ctx.primary.fingerprint(),
                    "data": ctx.data_fp[ctx.primary.name]},
        "aux": [{"name": a, "task": ctx.specs[a].fingerprint(), "data": ctx.data_fp[a]}
                for a in aux],
        "importance": [ctx.importance.get(t) for t in tasks],
        "settings": ctx.settings.key(),
        "precision": ctx.precision,
        "seed": int(seed),
        "eval": dict(ctx.eval_spec),
    })


def _write_run(store: Store, key: Any, ctx: _Context, r: MTLResult) -> None:
    info = {"primary": r.primary, "aux": list(r.aux), "seed": r.seed,
            "model_name": ctx.model_name, "main_metric": r.main_metric,
            "score": to_jsonable(r.score), "best_epoch": r.best_epoch,
            "seconds": round(r.seconds, 3)}
    with store.writer(key, info=info) as w:
        w.save_json("result", _mtl_to_json(r))
        w.save_arrays("dev", {"predictions": np.asarray(r.dev_predictions),
                              "labels": np.asarray(r.dev_labels),
                              "index": np.asarray(r.dev_index, dtype=np.int64)})


# ---------------------------------------------------------------------------------------------
# statistics


def _resampled_metric(metric: str, pred: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``metric`` on each bootstrap resample, from resample counts ``W`` (B, N) (B,).

    ``W[b, i]`` is how often example i was drawn in resample b. Classification metrics come
    from confusion counts (``W @ one-hot``), Pearson from weighted moments; both follow
    scikit-learn's / SciPy's formulas (the tests compare them resample by resample). Spearman
    falls back to SciPy on each resample.
    """
    from .metrics import METRIC_FUNCTIONS

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


def paired_bootstrap(metric: str, labels: np.ndarray, selected: Sequence[np.ndarray],
                     baseline: Sequence[np.ndarray], *, n_boot: int = BOOTSTRAP_SAMPLES,
                     level: float = NOISE_LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``mean_s metric(selected_s) - mean_s metric(baseline_s)``.

    Dev examples are resampled with replacement (``rng.integers(0, N, (n_boot, N))`` with
    ``rng = default_rng(seed)``), the same resample for both sides (paired); the metric of
    each seed's predictions is averaged over seeds.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    n = y.shape[0]
    diffs = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, (c, n))                                       # (c, N)
        flat = (idx + n * np.arange(c)[:, None]).ravel()
        W = np.bincount(flat, minlength=c * n).reshape(c, n).astype(np.float64)  # (c, N)
        sel = np.mean([_resampled_metric(metric, np.asarray(p), y, W) for p in selected], 0)
        base = np.mean([_resampled_metric(metric, np.asarray(p), y, W) for p in baseline], 0)
        diffs[start:start + c] = sel - base
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def _verdict(primary: TaskSpec, selected: TrialRecord, baseline: TrialRecord,
             sel_runs: Sequence[MTLResult], base_runs: Sequence[MTLResult],
             seed: int) -> NoiseVerdict:
    main = primary.main_metric
    if not selected.aux:
        return NoiseVerdict(0.0, None, None, NOISE_LEVEL, None, True,
                            "no auxiliary set beat the primary alone: the selection is the "
                            "empty set (train the primary task by itself)")
    diff = selected.mean - baseline.mean
    spread = max(selected.std, baseline.std) if len(selected.seeds) > 1 else None
    lo = hi = None
    n = 0
    aligned = (sel_runs and base_runs
               and all(np.array_equal(r.dev_index, base_runs[0].dev_index)
                       for r in [*sel_runs, *base_runs]))
    if aligned:
        y = np.asarray(base_runs[0].dev_labels)
        n = int(y.shape[0])
        lo, hi = paired_bootstrap(main, y,
                                  [np.asarray(r.dev_predictions) for r in sel_runs],
                                  [np.asarray(r.dev_predictions) for r in base_runs], seed=seed)
    pct = int(round(NOISE_LEVEL * 100))
    within = False
    reasons = []
    if lo is not None and hi is not None and math.isfinite(lo) and lo <= 0.0 <= hi:
        within = True
        reasons.append(f"the {pct}% bootstrap interval of the paired difference over {n} dev "
                       f"examples, [{lo:+.4f}, {hi:+.4f}], includes 0")
    if spread is not None and abs(diff) < spread:
        within = True
        reasons.append(f"the difference is smaller than the spread across seeds "
                       f"(std {spread:.4f})")
    sel = " + ".join(selected.aux)
    if within:
        msg = (f"{sel} beat the primary alone by {diff:+.4f} {main} on dev, but this is within "
               f"the noise: " + "; ".join(reasons)
               + (". Train with more seeds (--seeds 3) or a larger dev split before trusting "
                  "the choice." if len(selected.seeds) == 1 else
                  ". The choice is not reliably better than training the primary alone."))
    else:
        facts = []
        if lo is not None and math.isfinite(lo):
            facts.append(f"the {pct}% bootstrap interval [{lo:+.4f}, {hi:+.4f}] excludes 0")
        facts.append(f"spread across seeds {spread:.4f}" if spread is not None else
                     "one seed only: rerun with --seeds 3 to measure the spread")
        msg = f"{sel} beat the primary alone by {diff:+.4f} {main} on dev ({'; '.join(facts)})"
    return NoiseVerdict(diff, lo, hi, NOISE_LEVEL, spread, within, msg, n,
                        BOOTSTRAP_SAMPLES if lo is not None else 0)


# ---------------------------------------------------------------------------------------------
# run_trial


def _eval_plan(primary: TaskSpec, store: Store, holdout_fraction: float | None, seed: int
               ) -> tuple[np.ndarray | None, dict[str, tuple[str, np.ndarray | None]],
                          dict[str, Any], dict[str, int]]:
    """Selection indices in dev (or None), report sets, the eval part of keys, set sizes."""
    from . import data
    from .errors import DataError

    report: dict[str, tuple[str, np.ndarray | None]] = {}
    sizes: dict[str, int] = {}
    if "test" in primary.splits:
        try:
            test = data.load_split(primary, "test", store=store)
            if test.has_labels:
                report["test"] = ("test", None)
                sizes["test"] = len(test)
        except DataError:
            pass
    eval_spec: dict[str, Any] = {"split": "dev", "report": sorted(report)}
    if holdout_fraction is None:
        return None, report, eval_spec, sizes
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"--holdout-fraction must be between 0 and 1, not {holdout_fraction}",
                          hint="e.g. --holdout-fraction 0.5")
    n = len(data.load_split(primary, "dev", store=store))
    n_report = int(round(holdout_fraction * n))
    if n_report < 1 or n - n_report < 1:
        raise ConfigError(f"--holdout-fraction {holdout_fraction} leaves an empty part of "
                          f"'{primary.name}' dev ({n} examples)", hint="choose a fraction "
                          "nearer 0.5")
    perm = np.random.default_rng(seed).permutation(n)
    report_idx = np.sort(perm[:n_report])
    select_idx = np.sort(perm[n_report:])
    report["holdout"] = ("dev", report_idx)
    sizes["holdout"] = int(n_report)
    eval_spec.update({"holdout_fraction": float(holdout_fraction), "holdout_seed": int(seed),
                      "report": sorted(report)})
    return select_idx, report, eval_spec, sizes


def _device_name(run: RunSettings) -> str:
    """Where the runs of this call trained (recorded for the cost ledger, not in keys)."""
    from .models import resolve_device

    return str(resolve_device(run.device))


def _precision_name(run: RunSettings) -> str:
    import torch

    from .models import resolve_device, resolve_precision

    dtype = resolve_precision(run.precision, resolve_device(run.device))
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore


def _importance_keys(store: Store, model: str, measure: str,
                     tasks: Sequence[str]) -> dict[str, str]:
    from .results import find_results

    out = {}
    for t in tasks:
        found = find_results(store, model, measure, t)
        if found:
            out[t] = found[0].key_path
    return out


def run_trial(model: str, primary: TaskSpec, candidates: Sequence[TaskSpec], *, store: Store,
              run: RunSettings | None = None, trial: TrialSettings | None = None,
              estimator: str = "during", method: str = "kendall", measure: str = "gate",
              compare: Sequence[str] = (), holdout_fraction: float | None = None,
              force: bool = False, progress: ProgressFn | None = None,
              train_fn: TrainFn | None = None) -> TrialSummary:
    """GradTS-trial for ``primary`` over ``candidates`` (see the module docstring)."""
    import datetime as _dt

    from .config import RunSettings, TrialSettings
    from .correlate import rank_from_store
    from .data import data_fingerprint
    from .models import resolve_model

    t_start = time.perf_counter()
    run = run or RunSettings()
    trial = trial or TrialSettings()
    # the trainer is looked up at call time, so tests may patch mtl.train_mtl or this module's
    train = train_fn or (train_mtl if train_mtl is not _TRAIN_MTL else _mtl.train_mtl)
    if trial.patience < 1:
        raise ConfigError(f"--patience must be at least 1, not {trial.patience}")
    if trial.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {trial.seeds}")
    if trial.max_aux is not None and trial.max_aux < 0:
        raise ConfigError(f"--max-aux must be 0 or more, not {trial.max_aux}")
    bad = [c for c in compare if c not in COMPARE_CHOICES]
    if bad:
        raise UsageError(f"unknown --compare choice {bad[0]!r}",
                         hint=f"choose from {', '.join(COMPARE_CHOICES)}")
    settings = MTLSettings.of(trial)
    settings.check()
    seen: set[str] = {primary.name}
    cands: list[TaskSpec] = []
    for c in candidates:
        if c.name not in seen:
            seen.add(c.name)
            cands.append(c)
    specs = {s.name: s for s in [primary, *cands]}

    # 1. the ranking (a missing probe names the command to run)
    ranked = rank_from_store(store, model, primary.name, [c.name for c in cands],
                             measure=measure, estimator=estimator, method=method)
    ranking = tuple(Ranked(r.task, float(r.stat), float(r.pvalue), int(r.rank)) for r in ranked)
    order = [r.task for r in ranking]

    ref = resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    select_idx, report, eval_spec, report_sizes = _eval_plan(primary, store, holdout_fraction,
                                                             run.seed)
    ctx = _Context(
        model_id=ref.cache_id, model_name=ref.name, primary=primary, specs=specs,
        data_fp={n: data_fingerprint(s, store=store) for n, s in specs.items()},
        importance=_importance_keys(store, model, measure, list(specs)),
        settings=settings, precision=_precision_name(run), eval_spec=eval_spec)
    seeds = tuple(run.seed + i for i in range(trial.seeds))
    runs: dict[tuple[str, ...], list[MTLResult]] = {}
    ledger: list[str] = []
    counters = {"trained": 0, "trial": 0}
    done_now: dict[tuple[tuple[str, ...], int], MTLResult] = {}
    k_max = len(order) if trial.max_aux is None else min(trial.max_aux, len(order))
    planned = 1 + k_max + len(compare)

    def do_trial(aux: tuple[str, ...], role: str) -> TrialRecord:
        counters["trial"] += 1
        label = f"{primary.name} + " + " + ".join(aux) if aux else f"{primary.name} alone"
        results: list[MTLResult] = []
        cached: list[bool] = []
        keys: list[str] = []
        for seed in seeds:
            key = run_key(store, ctx, aux, seed)
            run_label = label + (f" (seed {seed})" if len(seeds) > 1 else "")
            _progress.emit(progress, "trial-start", task=primary.name, done=counters["trial"],
                           total=planned, message=run_label, metrics={"seed": float(seed)})
            if (aux, seed) in done_now:      # trained earlier in this call (even with force)
                r, was_cached = done_now[(aux, seed)], True
            else:
                r, was_cached = _train_or_load(key, aux, seed, run_label)
            done_now[(aux, seed)] = r
            results.append(r)
            cached.append(was_cached)
            keys.append(str(key))
            _progress.emit(progress, "trial-run", task=primary.name, done=counters["trial"],
                           total=planned, message=run_label,
                           metrics={primary.main_metric: r.score, "epoch": float(r.best_epoch),
                                    "cached": float(was_cached)})
        return _record(aux, role, results, cached, keys, label)

    def _train_or_load(key: Any, aux: tuple[str, ...], seed: int, run_label: str
                       ) -> tuple[MTLResult, bool]:
        with store.lock(key):
            if store.exists(key) and not force:
                r = _mtl_from_entry(store, store.entry(key))
                was_cached = True
            else:
                r = train(ref, primary, [specs[a] for a in aux], store=store, run=run,
                          settings=settings, seed=seed, eval_split="dev",
                          eval_index=select_idx, report=report, progress=progress,
                          label=run_label)
                _write_run(store, key, ctx, r)
                counters["trained"] += 1
                was_cached = False
        return r, was_cached

    def _record(aux: tuple[str, ...], role: str, results: list[MTLResult], cached: list[bool],
                keys: list[str], label: str) -> TrialRecord:
        runs[aux] = results
        ledger.extend(k for k in keys if k not in ledger)
        scores = tuple(r.score for r in results)
        rec = TrialRecord(
            aux=aux, role=role, seeds=seeds, scores=scores, mean=seed_mean(scores),
            std=seed_std(scores), best_epochs=tuple(r.best_epoch for r in results),
            seconds=float(sum(r.seconds for r in results)), cached=tuple(cached),
            metrics=mean_metrics([r.best_metrics for r in results]),
            report={name: mean_metrics([r.report_metrics.get(name, {}) for r in results])
                    for name in report},
            ledger=tuple(keys))
        _progress.emit(progress, "trial-done", task=primary.name, done=counters["trial"],
                       total=planned, message=label,
                       metrics={"mean": rec.mean, "std": rec.std,
                                "cached": float(rec.all_cached)})
        return rec

    # 2. the baseline, then P + top-1, P + top-2, ... (DESIGN.md §2 "Trial stop rule")
    baseline = do_trial((), "baseline")
    trials = [baseline]
    best = baseline
    misses = 0
    stop_reason = "no candidates" if not order else ""
    for k in range(1, k_max + 1):
        aux = tuple(order[:k])
        rec = do_trial(aux, "prefix")
        improved = math.isfinite(rec.mean) and (not math.isfinite(best.mean)
                                                or rec.mean > best.mean)
        rec = dataclasses.replace(rec, improved=improved)
        trials.append(rec)
        if improved:
            best, misses = rec, 0
        else:
            misses += 1
            if misses >= trial.patience:
                stop_reason = (f"stopped after {misses} trial(s) without improving on "
                               f"{best.label} (patience {trial.patience})")
                break
    if not stop_reason:
        stop_reason = (f"reached --max-aux {trial.max_aux}" if k_max < len(order)
                       else f"tried every candidate ({len(order)})")

    # 3. comparisons
    notes: list[str] = []
    comparisons: list[TrialRecord] = []
    for what in compare:
        if what == "random":
            size = len(best.aux)
            if size == 0:
                notes.append("random comparison skipped: the selected set is empty")
                continue
            rng = np.random.default_rng(run.seed)
            pick = set(rng.choice(len(order), size=size, replace=False).tolist())
            aux = tuple(t for i, t in enumerate(order) if i in pick)
            comparisons.append(do_trial(aux, "random"))
        elif what == "all":
            if not order:
                notes.append("'all' comparison skipped: there are no candidates")
                continue
            comparisons.append(do_trial(tuple(order), "all"))

    # 4. verdict and held-out report
    verdict = _verdict(primary, best, baseline, runs[best.aux], runs[()], run.seed)
    holdout: list[HoldoutReport] = []
    main = primary.main_metric
    for name, (split, _) in report.items():
        sel = best.report.get(name)
        base = baseline.report.get(name)
        diff = (sel[main] - base[main]) if sel and base else None
        part = ("its labelled test split" if name == "test" else
                f"the held-out {report_sizes[name]} examples of dev (--holdout-fraction "
                f"{holdout_fraction}), not used for selection")
        msg = (f"on {part}: selected {best.label} {sel[main]:.4f}, primary alone "
               f"{base[main]:.4f} ({diff:+.4f} {main})" if sel and base and diff is not None
               else f"on {part}: no score")
        holdout.append(HoldoutReport(name, split, report_sizes.get(name, 0), sel, base, diff,
                                     msg))
    if not holdout:
        holdout.append(HoldoutReport(
            "same-dev", "dev", 0, None, None, None,
            f"'{primary.name}' has no labelled test split: the set was selected and scored on "
            "the same dev split, so its advantage is optimistic; use --holdout-fraction 0.5 to "
            "keep part of dev for an unbiased score"))

    trial_settings = {**settings.key(), "patience": trial.patience, "max_aux": trial.max_aux,
                      "seeds": trial.seeds, "seed": run.seed, "precision": ctx.precision,
                      "holdout_fraction": holdout_fraction, "compare": list(compare)}
    summary = TrialSummary(
        primary=primary.name, model=ref.cache_id, model_name=ref.name, main_metric=main,
        ranking=ranking, trials=tuple(trials), baseline=baseline, selected=best.aux,
        selected_trial=best, stop_reason=stop_reason, verdict=verdict,
        comparisons=tuple(comparisons), holdout=tuple(holdout), ledger_keys=tuple(ledger),
        settings=trial_settings, estimator=estimator, method=method, measure=measure,
        seeds=seeds, trained=counters["trained"], seconds=time.perf_counter() - t_start,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        notes=tuple(notes))
    key = store.key(SUMMARY_KIND, [safe_component(ref.name), primary.name], {
        "model": ref.cache_id, "primary": primary.name, "candidates": [c.name for c in cands],
        "importance": [ctx.importance.get(t) for t in specs], "settings": trial_settings,
        "estimator": estimator, "method": method, "measure": measure})
    summary = dataclasses.replace(summary, key=str(key),
                                  settings={**trial_settings, "device": _device_name(run)})
    with store.lock(key), store.writer(key, info={
            "primary": primary.name, "model_name": ref.name, "selected": list(best.aux),
            "main_metric": main, "baseline": to_jsonable(baseline.mean),
            "selected_score": to_jsonable(best.mean)}) as w:
        w.save_json("summary", summary.to_json())
    return summary


def load_trial_summary(store: Store, model: str, primary: str) -> TrialSummary | None:
    """The newest stored trial summary of ``primary`` with ``model`` (id or path), or None."""
    from .results import newest_entry

    newest = newest_entry(store, SUMMARY_KIND, model, primary=primary)
    return None if newest is None else summary_from_json(store.load_json(newest, "summary"))
