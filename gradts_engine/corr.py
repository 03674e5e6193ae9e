"""``gradts corr``: correlate stored head-importance matrices, rank candidates (DESIGN.md §2).

GradTS (Ma et al., EMNLP 2021, §3.2) ranks the candidate auxiliary tasks of a primary task by
Kendall's tau-b between the flattened ``(L*H)`` head-importance matrices of the tasks. This
module never trains: it reads the probe entries that ``gradts probe`` wrote
(:mod:`gradts_engine.results`) and returns a :class:`CorrResult`:

- the task x task matrix of statistics and p-values (``correlation_matrix``), from each task's
  ``estimator`` matrix (``during`` or ``after``);
- for every task as primary, its candidates ranked by the statistic (``rank_candidates``);
- with ``instances`` (needs a primary): GradTS-fg's instance level (§3.3), the primary's task
  vector against every instance vector of each candidate (and, as a reference, of the primary
  itself), summarised as centre, fractions above thresholds and a histogram. The instance
  vectors are always the raw per-instance matrices of the ``after`` pass, normalised per layer
  (:func:`~gradts_engine.correlate.instance_vectors`);
- with ``bootstrap`` > 0: replicates that resample each task's instances with replacement and
  rebuild its task matrix. Only the ``after`` estimator is a mean over instances, so only it
  can be resampled; the ``during`` estimator (a sum over training steps) has no per-instance
  decomposition. The intervals therefore always describe the ``after`` estimator; when the
  ranking uses ``during`` they are reported beside the ``after`` estimator's own full-data
  statistic and rank (:class:`BootstrapRow`), never attached to the ``during`` numbers.

Matrices of different models, measures or shapes are never compared (an error).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .corr_records import (
    BOOT_ESTIMATOR,
    BootstrapInfo,
    BootstrapRow,
    CorrResult,
    InstanceRow,
    ProbeInfo,
)
from .correlate import (
    RankedCandidate,
    correlate_many,
    correlation_matrix,
    instance_summary,
    instance_vectors,
    rank_candidates,
)
from .errors import (
    ConfigError,
    IncompatibleResultsError,
    MissingResultError,
    UsageError,
    did_you_mean,
)
from .progress import ProgressFn, Stage, emit
from .rank_bootstrap import attach_bootstrap, bootstrap_rankings_all
from .results import (
    ImportanceResult,
    check_comparable,
    choose_probes,
    find_results,
    read_result,
)
from .signal import FG_THRESHOLD, Estimator, Measure, Method, parse_choice

if TYPE_CHECKING:
    from .store import Store

THRESHOLDS: tuple[float, ...] = (0.5, FG_THRESHOLD, 0.7)  # FG_THRESHOLD: the original fg cut
HIST_BINS = 20  # over [-1, 1]
BOOT_LEVEL = 0.90


# ---------------------------------------------------------------------------------------------
# which tasks


def probed_tasks(store: Store, model: str, measure: str = "gate") -> list[str]:
    """Names of the tasks probed with ``model`` (id or path) and ``measure``, sorted."""
    return sorted({str(e.info.get("task_name")) for e in find_results(store, model, measure)})


def probed_models(store: Store, measure: str | None = None) -> list[str]:
    """Model names found in the store's probe entries (for hints)."""
    return sorted({str(e.info.get("model_name")) for e in find_results(store, None, measure)})


def _load(store: Store, model: str, tasks: list[str], measure: str
          ) -> tuple[list[ImportanceResult], str | None]:
    """The probes by the one rule (:func:`results.choose_probes`) and its warning, with
    "did you mean" against the probed names for a mistyped task."""
    try:
        choice = choose_probes(store, model, tasks, measure)
        results = [read_result(store, choice.entries[t]) for t in tasks]
        check_comparable(results)
        return results, choice.warning
    except MissingResultError as e:
        probed = probed_tasks(store, model, measure)
        missing = list(e.details.get("tasks", []))
        guesses = [g for t in missing if (g := did_you_mean(t, probed))]
        message = e.message + (f" ({'; '.join(guesses)})" if guesses else "")
        if not probed:
            others = probed_models(store, measure)
            if others:
                message += f"; probed models in the store: {', '.join(others)}"
        raise MissingResultError(message, hint=e.hint, **e.details) from None


def _settings_warning(results: Sequence[ImportanceResult]) -> str | None:
    """Tasks probed with different settings: allowed, but worth saying (DESIGN.md §2)."""
    groups: dict[str, list[str]] = {}
    for r in results:
        groups.setdefault(json.dumps(dict(r.settings), sort_keys=True, default=str),
                          []).append(r.task)
    if len(groups) <= 1:
        return None
    settings = [json.loads(k) for k in groups]
    keys = sorted({k for s in settings for k in s})
    differ = [k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]
    parts = []
    for k in differ[:4]:
        by: dict[str, list[str]] = {}
        for r in results:
            by.setdefault(str(r.settings.get(k)), []).append(r.task)
        parts.append(f"{k}: " + "; ".join(f"{v} ({', '.join(ts)})" for v, ts in by.items()))
    return ("tasks were probed with different settings, so differences between their "
            "matrices may come from the settings: " + " | ".join(parts))


# ---------------------------------------------------------------------------------------------
# the engine entry


def correlate_tasks(
    store: Store,
    model: str,
    tasks: Sequence[str] | None = None,
    *,
    primary: str | None = None,
    method: str = "kendall",
    measure: str = "gate",
    estimator: str = "during",
    instances: bool = False,
    bootstrap: int = 0,
    seed: int = 2018,
    level: float = BOOT_LEVEL,
    progress: ProgressFn | None = None,
) -> CorrResult:
    """Correlate the stored importance matrices of ``tasks`` and rank candidates (GradTS §3.2).

    ``tasks=None`` means every task probed with ``model`` and ``measure``. ``primary`` (added to
    the tasks when not among them) restricts the instance level and the bootstrap to one
    primary; without it the bootstrap covers every task as primary. See the module docstring
    for what ``instances`` and ``bootstrap`` compute. Never trains.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    method = str(parse_choice(Method, method, "correlation method", "--method"))
    estimator = str(parse_choice(Estimator, estimator, "estimator", "--estimator"))
    measure = str(parse_choice(Measure, measure, "importance measure", "--measure"))
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {bootstrap}")
    if instances and not primary:
        raise UsageError("--instances needs a primary task",
                         hint="add --primary TASK (instance correlations are with its matrix)")

    if tasks is None:
        names = probed_tasks(store, model, measure)
        if not names:
            others = probed_models(store, measure)
            raise MissingResultError(
                f"no task has been probed with model {model} (measure {measure}) in the store "
                f"at {store.root}"
                + (f"; probed models there: {', '.join(others)}" if others else ""),
                hint=f"run: gradts probe --model {model} --suite SUITE (or --task TASK)"
                     + ("" if measure == "gate" else f" --measure {measure}"))
    else:
        names = list(dict.fromkeys(tasks))
    if primary and primary not in names:
        names.insert(0, primary)
    if len(names) < 2:
        raise UsageError(
            f"need at least two tasks to correlate, got {len(names)}: {', '.join(names)}",
            hint="name more with --tasks a,b,c or --suite, or probe more: "
                 f"gradts probe --model {model} --task TASK")

    results, choice_warning = _load(store, model, names, measure)
    by_task = {r.task: r for r in results}
    timings["load_s"] = time.perf_counter() - t0

    # task vectors (T, D) of the chosen estimator
    mats = {r.task: np.asarray(r.matrix(estimator), dtype=np.float64) for r in results}
    shapes = {t: m.shape for t, m in mats.items()}
    first = results[0]
    for t, s in shapes.items():
        if s != shapes[first.task] or len(s) != 2:
            raise IncompatibleResultsError(
                f"'{t}' has a {estimator} matrix of shape {s}, '{first.task}' "
                f"{shapes[first.task]}",
                hint="compare tasks probed with the same model")
    V = np.stack([mats[t].ravel() for t in names])  # (T, D)
    stats, pvalues = correlation_matrix(V, method)  # (T, T) each
    rankings = {
        p: tuple(rank_candidates(p, {u: (stats[i, j], pvalues[i, j])
                                     for j, u in enumerate(names)}))
        for i, p in enumerate(names)
    }
    timings["correlate_s"] = time.perf_counter() - t0 - timings["load_s"]

    # one warning: how the chosen probes differ, else that other settings groups were left out
    warnings = [w for w in [_settings_warning(results) or choice_warning] if w]

    inst_rows = None
    if instances and primary:
        t1 = time.perf_counter()
        inst_rows = _instance_level(by_task, primary, mats[primary].ravel(),
                                    [primary, *(c.task for c in rankings[primary])], method,
                                    progress)
        timings["instances_s"] = time.perf_counter() - t1

    boot_info = None
    if bootstrap > 0:
        t1 = time.perf_counter()
        boot_info, rankings = _bootstrap(by_task, names, primary, rankings, method,
                                         estimator, bootstrap, seed, level, progress)
        timings["bootstrap_s"] = time.perf_counter() - t1

    return CorrResult(
        model=first.model, model_name=first.model_name, measure=first.measure, method=method,
        estimator=estimator, tasks=tuple(names), shape=shapes[first.task],  # type: ignore[arg-type]
        stats=stats, pvalues=pvalues, matrices={t: mats[t] for t in names}, rankings=rankings,
        primary=primary,
        probes=tuple(ProbeInfo(r.task, r.entry.key_path, r.entry.meta.get("created"),
                               r.num_instances, r.has_instances, dict(r.settings))
                     for r in results),
        instances=inst_rows, bootstrap=boot_info, warnings=tuple(warnings),
        elapsed_s=time.perf_counter() - t0, timings=timings)


def _no_instances_hint(r: ImportanceResult) -> str:
    return f"rerun: gradts probe --model {r.model_name} --task {r.task} --force"


def _instance_level(by_task: Mapping[str, ImportanceResult], primary: str, x: np.ndarray,
                    order: Sequence[str], method: str,
                    progress: ProgressFn | None) -> tuple[InstanceRow, ...]:
    """Primary's task vector ``x`` (D,) against every instance vector of each task in order."""
    rows = []
    for k, t in enumerate(order):
        r = by_task[t]
        if not r.has_instances:
            rows.append(InstanceRow(t, t == primary, None,
                                    f"probed with --no-instances ({_no_instances_hint(r)})"))
            continue
        parts = []
        for _idx, R in r.iter_instances():  # chunk by chunk: memory stays bounded
            s, _ = correlate_many(x, instance_vectors(R), method)  # (n,)
            parts.append(s)
            emit(progress, Stage.INSTANCES, task=t, done=k, total=len(order),
                 message=f"{sum(len(p) for p in parts)} instances")
        stats = np.concatenate(parts) if parts else np.zeros(0)
        rows.append(InstanceRow(t, t == primary, instance_summary(stats, THRESHOLDS, HIST_BINS)))
    emit(progress, Stage.INSTANCES, done=len(order), total=len(order))
    return tuple(rows)


def _bootstrap(by_task: Mapping[str, ImportanceResult], names: list[str],
               primary: str | None, rankings: dict[str, tuple[RankedCandidate, ...]],
               method: str, estimator: str, n_boot: int, seed: int, level: float,
               progress: ProgressFn | None
               ) -> tuple[BootstrapInfo, dict[str, tuple[RankedCandidate, ...]]]:
    lacking = [t for t in names if not by_task[t].has_instances]
    if lacking:
        r = by_task[lacking[0]]
        raise MissingResultError(
            f"--bootstrap resamples instance matrices, but {', '.join(lacking)} "
            f"{'was' if len(lacking) == 1 else 'were'} probed with --no-instances",
            hint=f"rerun: gradts probe --model {r.model_name} "
                 + " ".join(f"--task {t}" for t in lacking) + " --force, or leave out --bootstrap",
            tasks=lacking)
    primaries = [primary] if primary else list(names)
    done = [0]

    def loader(t: str) -> Any:
        def load() -> np.ndarray:
            emit(progress, Stage.BOOTSTRAP, task=t, done=done[0], total=len(names),
                 message=f"{n_boot} replicates")
            done[0] += 1
            return by_task[t].instances()[1]
        return load

    boot = bootstrap_rankings_all({t: loader(t) for t in names}, primaries, n_boot, seed,
                                  method, level)  # type: ignore[arg-type]
    emit(progress, Stage.BOOTSTRAP, done=len(names), total=len(names))

    # the after estimator's own full-data ranking, beside which the intervals are reported
    if estimator == BOOT_ESTIMATOR:
        after_rank = rankings
    else:
        A = np.stack([np.asarray(by_task[t].matrix(BOOT_ESTIMATOR), np.float64).ravel()
                      for t in names])  # (T, D)
        after_rank = {}
        for p in primaries:
            s, pv = correlate_many(A[names.index(p)], A, method)
            after_rank[p] = tuple(rank_candidates(p, {u: (s[j], pv[j])
                                                      for j, u in enumerate(names)}))
    rows = {}
    for p in primaries:
        rows[p] = tuple(
            BootstrapRow(c.task, c.stat, c.rank, boot[p][c.task].mean, boot[p][c.task].ci_low,
                         boot[p][c.task].ci_high, boot[p][c.task].rank_stability)
            for c in after_rank[p])
    if estimator == BOOT_ESTIMATOR:
        rankings = {p: (tuple(attach_bootstrap(rk, boot[p])) if p in boot else rk)
                    for p, rk in rankings.items()}
        note = None
    else:
        note = (f"the bootstrap resamples instances, so it describes the '{BOOT_ESTIMATOR}' "
                f"estimator (a mean over instances); the '{estimator}' estimator is summed over "
                f"training steps and has no per-instance decomposition. Intervals and rank "
                f"stability are shown beside the '{BOOT_ESTIMATOR}' estimator's own statistic "
                f"and rank, not attached to the '{estimator}' ranking.")
    return BootstrapInfo(n_boot, seed, level, BOOT_ESTIMATOR, rows, note), rankings
