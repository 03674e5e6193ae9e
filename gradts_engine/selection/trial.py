"""GradTS-trial: choose the auxiliary tasks of a primary task by trial (DESIGN.md §1 step 3, §2).

For a primary task ``P`` (Ma et al., EMNLP 2021, §3.2):

1. rank the candidates by the correlation (Kendall tau-b by default) of their task-level
   head-importance matrices with ``P``'s (the probes chosen by :func:`results.choose_probes`);
2. train ``P`` alone (the baseline), then ``P + top-1``, ``P + top-2``, ...; each trial's score
   is its best epoch's main metric on ``P``'s dev split (mean over seeds); stop after
   ``patience`` (default 1) trials in a row that do not beat the best so far (best epoch
   against best epoch, DESIGN.md §2 "Trial stop rule"); ``max_aux`` caps the prefix length;
3. keep the best prefix, which may be empty (the primary alone).

The selected set's advantage over the baseline gets a noise verdict (:mod:`.stats`): the
spread across seeds and a 90% paired bootstrap interval over dev examples; a difference within
the noise is said to be so (DESIGN.md §7, last paragraph). Selection and score on the same
dev split are optimistic: ``P``'s labelled test split (and with ``holdout_fraction`` a held-out
part of dev) is scored at the best epoch and reported beside (:class:`ledger.EvalPlan`).

Every (candidate set, seed) is a run of the ledger (:mod:`.ledger`): a rerun with the same
settings reuses every finished run (an interrupted run resumes), ``force`` retrains. A summary
entry (kind ``trial``) holds the ranking, every trial, the baseline and the selected set;
:func:`load_trial_summary` reads the newest.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, UsageError
from ..mtl import MTLSettings
from ..progress import NoteKind, Stage, emit
from ..signal import ImportanceSignal
from ..store import Store, safe_component
from ..training import device_name
from .ledger import EvalPlan, Ledger, Run, TrainFn, open_ledger
from .ledger_parallel import Unit, summary_writer
from .records import (
    HoldoutReport,
    NoiseVerdict,
    Ranked,
    TrialRecord,
    TrialSummary,
    decode,
    encode,
)
from .stats import (
    BOOTSTRAP_SAMPLES,
    NOISE_LEVEL,
    mean_metrics,
    noise_verdict,
    paired_interval,
    seed_mean,
    seed_std,
)

if TYPE_CHECKING:
    from ..config import RunSettings, TrialSettings
    from ..progress import ProgressFn
    from ..results import ImportanceResult
    from ..tasks.spec import TaskSpec

SUMMARY_KIND = "trial"
COMPARE_CHOICES = ("random", "all")


# ---------------------------------------------------------------------------------------------
# the pieces: ranking, one trial, the greedy procedure


def rank_by_signal(results: Sequence[ImportanceResult], signal: ImportanceSignal
                   ) -> tuple[Ranked, ...]:
    """Step 1: ``results[1:]`` ranked by the correlation of their matrices with ``results[0]``."""
    from ..correlate import correlate, rank_candidates

    vec = {r.task: np.asarray(r.matrix(str(signal.estimator)), np.float64).ravel()
           for r in results}
    x = vec[results[0].task]                                            # (L*H,) vec(I_P)
    stats = {r.task: correlate(x, vec[r.task], str(signal.method)) for r in results[1:]}
    return tuple(Ranked(c.task, float(c.stat), float(c.pvalue), int(c.rank))
                 for c in rank_candidates(results[0].task, stats))


def record_of(aux: tuple[str, ...], role: str, seeds: tuple[int, ...], runs: Sequence[Run],
              report_names: Sequence[str]) -> TrialRecord:
    """One trial's record from its runs (one per seed)."""
    rs = [r.result for r in runs]
    scores = tuple(r.score for r in rs)
    return TrialRecord(
        aux=aux, role=role, seeds=seeds, scores=scores, mean=seed_mean(scores),
        std=seed_std(scores), best_epochs=tuple(r.best_epoch for r in rs),
        seconds=float(sum(r.seconds for r in rs)), cached=tuple(r.cached for r in runs),
        metrics=mean_metrics([r.best_metrics for r in rs]),
        report={n: mean_metrics([r.report_metrics.get(n, {}) for r in rs]) for n in report_names},
        ledger=tuple(r.key for r in runs))


@dataclasses.dataclass
class SetTrainer:
    """Trains (or loads) ``P + aux`` with every seed through the ledger; keeps the runs."""

    ledger: Ledger
    seeds: tuple[int, ...]
    planned: int
    progress: ProgressFn | None = None
    force: bool = False
    runs: dict[tuple[str, ...], list[Run]] = dataclasses.field(default_factory=dict)
    count: int = 0

    def __call__(self, aux: tuple[str, ...], role: str) -> TrialRecord:
        p = self.ledger.ctx.primary
        self.count += 1
        label = f"{p.name} + " + " + ".join(aux) if aux else f"{p.name} alone"
        units = [Unit(aux, seed, label + (f" (seed {seed})" if len(self.seeds) > 1 else ""))
                 for seed in self.seeds]

        def start(i: int) -> None:
            emit(self.progress, Stage.TRIAL_START, task=p.name, done=self.count,
                 total=self.planned, message=units[i].label,
                 metrics={"seed": float(units[i].seed)})

        def done(i: int, r: Run) -> None:
            emit(self.progress, Stage.TRIAL_RUN, task=p.name, done=self.count,
                 total=self.planned, message=units[i].label,
                 metrics={p.main_metric: r.result.score, "epoch": float(r.result.best_epoch),
                          "cached": float(r.cached)})

        # the seeds of one set are one batch: under torchrun they spread over the ranks
        runs = self.ledger.get_many(units, force=self.force, on_start=start, on_done=done)
        self.runs[aux] = runs
        rec = record_of(aux, role, self.seeds, runs, list(self.ledger.plan.report))
        emit(self.progress, Stage.TRIAL_DONE, task=p.name, done=self.count, total=self.planned,
             message=label, metrics={"mean": rec.mean, "std": rec.std,
                                     "cached": float(rec.all_cached)})
        return rec


def greedy_prefixes(order: Sequence[str], trial: Callable[[tuple[str, ...], str], TrialRecord],
                    baseline: TrialRecord, patience: int, k_max: int
                    ) -> tuple[list[TrialRecord], TrialRecord, str]:
    """Step 2-3: ``P + top-k`` for k = 1, 2, ... until ``patience`` trials without a new best.

    Returns every trial (the baseline first), the best one, and why the procedure stopped.
    """
    trials, best, misses = [baseline], baseline, 0
    for k in range(1, k_max + 1):
        rec = trial(tuple(order[:k]), "prefix")
        improved = math.isfinite(rec.mean) and (not math.isfinite(best.mean)
                                                or rec.mean > best.mean)
        trials.append(dataclasses.replace(rec, improved=improved))
        if improved:
            best, misses = trials[-1], 0
            continue
        misses += 1
        if misses >= patience:
            return trials, best, (f"stopped after {misses} trial{'' if misses == 1 else 's'} "
                                  "without improving on "
                                  f"{best.label} (patience {patience})")
    if not order:
        return trials, best, "no candidates"
    return trials, best, (f"reached --max-aux {k_max}" if k_max < len(order)
                          else f"tried every candidate ({len(order)})")


# ---------------------------------------------------------------------------------------------
# the procedure


def run_trial(model: str, primary: TaskSpec, candidates: Sequence[TaskSpec], *, store: Store,
              run: RunSettings | None = None, trial: TrialSettings | None = None,
              signal: ImportanceSignal | None = None, compare: Sequence[str] = (),
              holdout_fraction: float | None = None, max_train_examples: int | None = None,
              force: bool = False, progress: ProgressFn | None = None,
              train_fn: TrainFn | None = None) -> TrialSummary:
    """GradTS-trial for ``primary`` over ``candidates`` (see the module docstring).

    ``compare``: also train a random set of the selected size (``random``) and all candidates
    (``all``). ``max_train_examples``: every task trains on its first n examples (a ledger
    setting, so part of the run keys). ``train_fn`` replaces :func:`mtl.train_mtl` (tests).
    """
    from .. import mtl
    from ..config import RunSettings, TrialSettings
    from ..models import resolve_model
    from ..results import check_comparable, choose_probes, read_result

    t_start = time.perf_counter()
    run, trial = run or RunSettings(), trial or TrialSettings()
    signal = signal or ImportanceSignal()
    settings = _check(trial, compare)
    cands = list({c.name: c for c in candidates if c.name != primary.name}.values())
    specs = {s.name: s for s in [primary, *cands]}

    # 1. the ranking, from one consistent choice of probes (a missing probe names the command)
    choice = choose_probes(store, model, list(specs), str(signal.measure))
    results = [read_result(store, choice.entries[t]) for t in specs]
    check_comparable(results)
    ranking = rank_by_signal(results, signal)
    order = [r.task for r in ranking]
    notes = [] if choice.warning is None else [choice.warning]
    if choice.warning:
        emit(progress, Stage.NOTE, task=primary.name, message=choice.warning,
             kind=NoteKind.WARNING)

    # 2. the baseline, then P + top-1, P + top-2, ... through the ledger
    ref = resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    plan = EvalPlan.build(primary, store, holdout_fraction, run.seed)
    ledger = open_ledger(store, ref, primary, specs, settings=settings, run=run, plan=plan,
                         probes=choice.keys, train=train_fn or mtl.train_mtl, progress=progress,
                         max_train_examples=max_train_examples)
    k_max = len(order) if trial.max_aux is None else min(trial.max_aux, len(order))
    seeds = tuple(run.seed + i for i in range(trial.seeds))
    train_set = SetTrainer(ledger, seeds, 1 + k_max + len(compare), progress, force)
    baseline = train_set((), "baseline")
    trials, best, stop_reason = greedy_prefixes(order, train_set, baseline, trial.patience, k_max)

    # 3. comparisons, the noise verdict, the held-out report
    comparisons = _comparisons(compare, best, order, run.seed, train_set, notes)
    verdict = _verdict(primary.main_metric, best, baseline, train_set, run.seed)
    holdout = _holdout(primary, plan, best, baseline)

    trial_settings = {**settings.key(), "patience": trial.patience, "max_aux": trial.max_aux,
                      "seeds": trial.seeds, "seed": run.seed, "precision": ledger.ctx.precision,
                      "holdout_fraction": holdout_fraction, "compare": list(compare),
                      **({"max_train_examples": max_train_examples}
                         if max_train_examples is not None else {})}
    summary = TrialSummary(
        primary=primary.name, model=ref.cache_id, model_name=ref.name,
        main_metric=primary.main_metric, ranking=ranking, trials=tuple(trials),
        baseline=baseline, selected=best.aux, selected_trial=best, stop_reason=stop_reason,
        verdict=verdict, comparisons=tuple(comparisons), holdout=holdout,
        ledger_keys=tuple(dict.fromkeys(k for rs in train_set.runs.values() for k in
                                        (r.key for r in rs))),
        settings=trial_settings, estimator=str(signal.estimator), method=str(signal.method),
        measure=str(signal.measure), seeds=seeds, trained=ledger.trained,
        seconds=time.perf_counter() - t_start,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        notes=tuple(notes), probes=choice.keys, distributed=ledger.distributed_info())
    return _store_summary(store, summary, [c.name for c in cands], run)


def _check(trial: TrialSettings, compare: Sequence[str]) -> MTLSettings:
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
    return settings


def _comparisons(compare: Sequence[str], best: TrialRecord, order: Sequence[str], seed: int,
                 train_set: SetTrainer, notes: list[str]) -> list[TrialRecord]:
    """A random set of the selected size and/or all candidates, trained like the trials."""
    out = []
    for what in compare:
        if what == "random":
            if not best.aux:
                notes.append("random comparison skipped: the selected set is empty")
                continue
            pick = set(np.random.default_rng(seed).choice(len(order), size=len(best.aux),
                                                          replace=False).tolist())
            out.append(train_set(tuple(t for i, t in enumerate(order) if i in pick), "random"))
        elif what == "all":
            if not order:
                notes.append("'all' comparison skipped: there are no candidates")
                continue
            out.append(train_set(tuple(order), "all"))
    return out


def _verdict(main: str, selected: TrialRecord, baseline: TrialRecord, train_set: SetTrainer,
             seed: int) -> NoiseVerdict:
    if not selected.aux:
        return NoiseVerdict(0.0, None, None, NOISE_LEVEL, None, True,
                            "no auxiliary set beat the primary alone: the selection is the "
                            "empty set (train the primary task by itself)")
    sel = [r.result for r in train_set.runs[selected.aux]]
    base = [r.result for r in train_set.runs[()]]
    interval = paired_interval(main, sel, base, seed)
    n = int(np.asarray(base[0].dev_labels).shape[0]) if interval is not None else 0
    diff = selected.mean - baseline.mean
    spread = max(selected.std, baseline.std) if len(selected.seeds) > 1 else None
    within, msg = noise_verdict(" + ".join(selected.aux), main, diff, interval, n, spread,
                                len(selected.seeds))
    lo, hi = interval if interval is not None else (None, None)
    return NoiseVerdict(diff, lo, hi, NOISE_LEVEL, spread, within, msg, n,
                        BOOTSTRAP_SAMPLES if interval is not None else 0)


def _holdout(primary: TaskSpec, plan: EvalPlan, best: TrialRecord, baseline: TrialRecord
             ) -> tuple[HoldoutReport, ...]:
    """The selected set and the baseline on the report sets (test split, held-out dev)."""
    main = primary.main_metric
    out = []
    for name, (split, _) in plan.report.items():
        sel, base = best.report.get(name), baseline.report.get(name)
        diff = (sel[main] - base[main]) if sel and base else None
        part = ("its labelled test split" if name == "test" else
                f"the held-out {plan.sizes[name]} examples of dev (--holdout-fraction "
                f"{plan.holdout_fraction}), not used for selection")
        msg = (f"on {part}: selected {best.label} {sel[main]:.4f}, primary alone "
               f"{base[main]:.4f} ({diff:+.4f} {main})" if sel and base and diff is not None
               else f"on {part}: no score")
        out.append(HoldoutReport(name, split, plan.sizes.get(name, 0), sel, base, diff, msg))
    if not out:
        out.append(HoldoutReport(
            "same-dev", "dev", 0, None, None, None,
            f"'{primary.name}' has no labelled test split: the set was selected and scored on "
            "the same dev split, so its advantage is optimistic; use --holdout-fraction 0.5 to "
            "keep part of dev for an unbiased score"))
    return tuple(out)


def _store_summary(store: Store, summary: TrialSummary, candidates: list[str],
                   run: RunSettings) -> TrialSummary:
    key = store.key(SUMMARY_KIND, [safe_component(summary.model_name), summary.primary], {
        "model": summary.model, "primary": summary.primary, "candidates": candidates,
        "importance": [summary.probes.get(t) for t in [summary.primary, *candidates]],
        "settings": dict(summary.settings), "estimator": summary.estimator,
        "method": summary.method, "measure": summary.measure})
    summary = dataclasses.replace(summary, key=str(key),
                                  settings={**summary.settings, "device": device_name(run)})
    with summary_writer(store, key, {
            "primary": summary.primary, "model_name": summary.model_name,
            "selected": list(summary.selected), "main_metric": summary.main_metric,
            "baseline": encode(summary.baseline.mean),
            "selected_score": encode(summary.selected_trial.mean)}) as w:
        w.save_json("summary", summary.to_json())
    return summary


def load_trial_summary(store: Store, model: str, primary: str) -> TrialSummary | None:
    """The newest stored trial summary of ``primary`` with ``model`` (id or path), or None."""
    from ..results import newest_entry

    newest = newest_entry(store, SUMMARY_KIND, model, primary=primary)
    return None if newest is None else decode(TrialSummary, store.load_json(newest, "summary"))

