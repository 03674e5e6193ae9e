"""GradTS-fg: keep the auxiliary instances that look like the primary task (DESIGN.md §1 step 4).

GradTS-fg (Ma et al., EMNLP 2021, §3.3) refines the auxiliary set ``A`` chosen by GradTS-trial
(or given by the user) instance by instance:

1. ``A``: the trial's selected set (:func:`trial.load_trial_summary`), or ``--aux``;
2. the probes: ``P``'s task matrix ``I_P`` and every auxiliary task's raw instance matrices,
   chosen by the one rule of :func:`results.choose_probes`;
3. the baseline (``P`` alone) and the trial's set with all instances, from the run ledger;
4. for every cut (:mod:`.cuts`): the instance taus against ``vec(I_P)``, the kept indices
   (a stored selection), then the multi-task model on all of ``P``'s training data plus the
   kept instances, scored like a trial (best epoch's main metric on ``P``'s dev split, mean and
   spread over seeds, a paired bootstrap interval against the baseline).

A cut that keeps nothing trains the primary alone, which is the baseline (the same ledger
entry); a cut that keeps every instance of every auxiliary task is the trial's own run of that
set (the ledger key holds a digest of the kept index lists, so two cuts that keep the same
instances share one run). ``force`` recomputes the selections and retrains the fg runs (the
baseline is reused; rerun ``gradts trial --force`` to retrain it). A summary entry (kind
``fg``) holds the whole result; :func:`load_fg_result` reads the newest.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import distributed
from ..errors import ConfigError, MissingResultError
from ..mtl import MTLSettings
from ..progress import NoteKind, Stage, emit
from ..signal import ImportanceSignal
from ..store import Store, safe_component
from ..training import device_name
from .cuts import FG_VERSION, Selection, instance_taus, select, selection_key
from .ledger import EvalPlan, Ledger, Run, TrainFn, open_ledger
from .ledger_parallel import Unit, summary_writer, world_of
from .records import Cut, FgResult, FgRow, Reference, TauSummary, TrialSummary, decode, encode
from .stats import mean_metrics, paired_interval, seed_mean, seed_std

if TYPE_CHECKING:
    from ..config import RunSettings, TrialSettings
    from ..progress import ProgressFn
    from ..results import ImportanceResult
    from ..tasks.spec import TaskSpec

SUMMARY_KIND = "fg"


def _reference(label: str, aux: tuple[str, ...], seeds: tuple[int, ...], runs: Sequence[Run],
               source: str, report: Sequence[str]) -> Reference:
    scores = tuple(r.result.score for r in runs)
    return Reference(label=label, aux=aux, seeds=seeds, scores=scores, mean=seed_mean(scores),
                     std=seed_std(scores), source=source, cached=tuple(r.cached for r in runs),
                     ledger=tuple(r.key for r in runs),
                     report={n: mean_metrics([r.result.report_metrics.get(n, {}) for r in runs])
                             for n in report})


def run_fg(model: str, primary: TaskSpec, aux: Sequence[TaskSpec] | None = None, *,
           store: Store, run: RunSettings | None = None,
           trial_settings: TrialSettings | None = None, cuts: Sequence[Cut] | None = None,
           signal: ImportanceSignal | None = None, force: bool = False,
           progress: ProgressFn | None = None, train_fn: TrainFn | None = None,
           registry: Any = None) -> FgResult:
    """GradTS-fg for ``primary`` (see the module docstring).

    ``aux=None`` takes the trial's selected set; no trial result is a
    :class:`MissingResultError` naming the ``gradts trial`` command. ``cuts`` default to one
    threshold of :data:`signal.FG_THRESHOLD` (:func:`cuts.make_cuts` builds them from flags).
    ``registry`` resolves the trial's task names (default: the built-in registry).
    ``train_fn`` replaces :func:`mtl.train_mtl` (tests).
    """
    from .. import mtl
    from ..config import RunSettings, TrialSettings
    from ..models import resolve_model

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    run, signal = run or RunSettings(), signal or ImportanceSignal()
    trial_settings = trial_settings or TrialSettings()
    cuts = tuple(cuts) if cuts else (Cut(),)
    if trial_settings.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {trial_settings.seeds}")
    settings = MTLSettings.of(trial_settings)
    settings.check()

    # 1. the auxiliary set: given, or the trial's selection
    summary, aux_specs, aux_source, notes = _aux_set(store, model, primary, aux, registry)

    # 2. the probes: P's task matrix, every auxiliary task's instances
    t0 = time.perf_counter()
    p_res, a_res, probes = _load_probes(store, model, primary, aux_specs, signal, notes,
                                        progress)
    timings["load_s"] = time.perf_counter() - t0

    # 3. the baseline and the trial's set (all instances) through the ledger
    ref = resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    plan = _plan(primary, store, summary, run.seed, notes)
    specs = {s.name: s for s in [primary, *aux_specs]}
    ledger = open_ledger(store, ref, primary, specs, settings=settings, run=run, plan=plan,
                         probes=probes, train=train_fn or mtl.train_mtl, progress=progress)
    seeds = tuple(run.seed + i for i in range(trial_settings.seeds))
    ours = {**settings.key(), "seed": run.seed, "seeds": trial_settings.seeds,
            "precision": ledger.ctx.precision}
    notes.extend(_trial_notes(summary, ours, aux_source, [a.name for a in aux_specs]))
    aux_names = tuple(a.name for a in aux_specs)
    t0 = time.perf_counter()
    b_runs = _get_all(ledger, _units(f"{primary.name} alone", (), seeds), False, progress)
    baseline = _reference("primary alone", (), seeds, b_runs,
                          "ledger" if all(r.cached for r in b_runs) else "trained",
                          list(plan.report))
    timings["baseline_s"] = time.perf_counter() - t0
    trial_ref = _trial_reference(ledger, aux_names, seeds, summary)

    # 4. every cut: select (cached in the store), then train P + the kept instances
    rows, tau_dist = _run_cuts(ledger, cuts, p_res, a_res, signal, seeds, b_runs, force,
                               progress, timings)
    if not aux_names and aux_source == "--aux":
        notes.append("no auxiliary task left after removing the primary from --aux")
    empty = [r.cut.label for r in rows if r.primary_alone]
    if aux_names and empty:
        notes.append(_keep_nothing_note(empty, len(rows), tau_dist, str(signal.estimator)))

    result = FgResult(
        primary=primary.name, model=ref.cache_id, model_name=ref.name,
        main_metric=primary.main_metric, aux=aux_names, aux_source=aux_source,
        measure=p_res.measure, estimator=str(signal.estimator), method=str(signal.method),
        seeds=seeds, settings={**ours, "holdout_fraction": plan.holdout_fraction},
        rows=tuple(rows), baseline=baseline, trial=trial_ref, trained=ledger.trained,
        seconds=time.perf_counter() - t_start, notes=tuple(dict.fromkeys(notes)),
        timings={k: round(v, 3) for k, v in timings.items()},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        taus=tuple(tau_dist), probes=probes, distributed=ledger.distributed_info())
    return _store_result(store, result, cuts, run)


# ---------------------------------------------------------------------------------------------
# the steps


def _aux_set(store: Store, model: str, primary: TaskSpec, aux: Sequence[TaskSpec] | None,
             registry: Any) -> tuple[TrialSummary | None, list[TaskSpec], str, list[str]]:
    """Step 1: the auxiliary tasks (without the primary), where they came from, notes."""
    from .trial import load_trial_summary

    notes: list[str] = []
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
            from ..tasks import build_registry

            registry = build_registry()
        aux = [registry.get(n) for n in summary.selected]
        source = "trial"
        if not aux:
            notes.append(f"the trial selected no auxiliary task for '{primary.name}' (the "
                         "primary alone was best): there is nothing to select from; every cut "
                         "trains the primary alone")
    else:
        source = "--aux"
    specs = [a for a in {a.name: a for a in aux}.values() if a.name != primary.name]
    return summary, specs, source, notes


def _load_probes(store: Store, model: str, primary: TaskSpec, aux: Sequence[TaskSpec],
                 signal: ImportanceSignal, notes: list[str], progress: ProgressFn | None
                 ) -> tuple[ImportanceResult, list[ImportanceResult], dict[str, str]]:
    """Step 2: the probes by the one rule; an auxiliary probe must be of the current data
    (its instance indices must fit its train split); a stale primary matrix is a note."""
    from ..data import data_fingerprint
    from ..results import check_comparable, choose_probes, read_result

    choice = choose_probes(store, model, [primary.name, *(a.name for a in aux)],
                           str(signal.measure))
    if choice.warning:
        notes.append(choice.warning)
        emit(progress, Stage.NOTE, task=primary.name, message=choice.warning,
             kind=NoteKind.WARNING)
    res = {t: read_result(store, e) for t, e in choice.entries.items()}
    for spec in [primary, *aux]:
        if res[spec.name].entry.spec.get("data") == data_fingerprint(spec, store=store):
            continue
        if spec.name == primary.name:
            notes.append(f"'{primary.name}' was probed on other data than it has now (its data "
                         f"fingerprint changed): its task matrix may be stale; rerun gradts "
                         f"probe --model {model} --task {primary.name} --force")
        else:
            raise MissingResultError(
                f"task '{spec.name}' was probed with model {model} on other data than it has "
                "now (its data fingerprint changed), so its instance indices do not fit",
                hint=f"run: gradts probe --model {model} --task {spec.name} --force",
                task=spec.name)
    a_res = [res[a.name] for a in aux]
    check_comparable([res[primary.name], *a_res])
    for r in a_res:
        if not r.has_instances:
            r.iter_instances()  # raises the error naming `gradts probe ... --force`
    return res[primary.name], a_res, choice.keys


def _plan(primary: TaskSpec, store: Store, summary: TrialSummary | None, seed: int,
          notes: list[str]) -> EvalPlan:
    """The trial's evaluation plan (its held-out part of dev, if it kept one)."""
    if summary is not None and summary.settings.get("holdout_fraction") is not None:
        fraction = float(summary.settings["holdout_fraction"])
        notes.append(f"scores are on the selection part of dev, as in the trial "
                     f"(--holdout-fraction {fraction:g})")
        return EvalPlan.build(primary, store, fraction, int(summary.settings.get("seed", seed)))
    return EvalPlan.build(primary, store, None, seed)


def _trial_notes(summary: TrialSummary | None, ours: Mapping[str, Any], aux_source: str,
                 aux: Sequence[str]) -> list[str]:
    if summary is None:
        return []
    notes = []
    differ = [k for k, v in ours.items() if k in summary.settings and summary.settings[k] != v]
    if differ:
        notes.append("the trial result was trained with different settings ("
                     + ", ".join(f"{k} {summary.settings.get(k)} there, {ours[k]} here"
                                 for k in differ) + "): its score is not directly comparable")
    if aux_source == "--aux" and tuple(aux) != tuple(summary.selected):
        notes.append("the trial selected " + (" + ".join(summary.selected) or "no task")
                     + f", not the --aux set {' + '.join(aux)}")
    return notes


def _get_all(ledger: Ledger, units: Sequence[Unit], force: bool,
             progress: ProgressFn | None) -> list[Run]:
    """fg runs through the ledger, with their progress events (one batch: under torchrun the
    runs spread over the ranks, :meth:`Ledger.get_many`)."""
    p = ledger.ctx.primary

    def before(i: int) -> None:
        emit(progress, Stage.FG_START, task=p.name, message=units[i].label,
             metrics={"seed": float(units[i].seed)})

    def done(i: int, r: Run) -> None:
        emit(progress, Stage.FG_RUN, task=p.name, message=units[i].label,
             metrics={p.main_metric: r.result.score, "epoch": float(r.result.best_epoch),
                      "cached": float(r.cached)})

    return ledger.get_many(units, force=force, before_training=before, on_done=done)


def _units(label: str, aux: tuple[str, ...], seeds: tuple[int, ...],
           subsets: Mapping[str, np.ndarray] | None = None) -> list[Unit]:
    return [Unit(aux, s, label + (f" (seed {s})" if len(seeds) > 1 else ""), subsets)
            for s in seeds]


def _trial_reference(ledger: Ledger, aux: tuple[str, ...], seeds: tuple[int, ...],
                     summary: TrialSummary | None) -> Reference | None:
    """The trial's selected set with all instances: from the ledger, else the trial summary."""
    if aux:
        found = [ledger.find(aux, s) for s in seeds]
        if all(r is not None for r in found):
            return _reference(" + ".join(aux) + " (all instances)", aux, seeds,
                              [r for r in found if r is not None], "ledger",
                              list(ledger.plan.report))
    if summary is not None and summary.selected:
        st = summary.selected_trial
        return Reference(label=" + ".join(st.aux) + " (trial)", aux=tuple(st.aux),
                         seeds=tuple(st.seeds), scores=tuple(st.scores), mean=st.mean,
                         std=st.std, source="trial summary", cached=tuple(st.cached),
                         ledger=tuple(st.ledger), report=dict(st.report))
    return None


def _run_cuts(ledger: Ledger, cuts: Sequence[Cut], p_res: ImportanceResult,
              a_res: Sequence[ImportanceResult], signal: ImportanceSignal,
              seeds: tuple[int, ...], b_runs: Sequence[Run], force: bool,
              progress: ProgressFn | None, timings: dict[str, float]
              ) -> tuple[list[FgRow], list[TauSummary]]:
    """Step 4: per cut, the selection (instance taus against vec(I_P), computed once per
    task) and the row of its trained runs; the first cut's tau distributions."""
    p, store = ledger.ctx.primary, ledger.store
    x = np.asarray(p_res.matrix(str(signal.estimator)), np.float64).ravel()  # (D,) vec(I_P)
    taus: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def taus_of(r: ImportanceResult) -> tuple[np.ndarray, np.ndarray]:
        if r.task not in taus:
            t1 = time.perf_counter()
            taus[r.task] = instance_taus(x, r, str(signal.method))              # (N_a,) each
            timings["correlate_s"] = timings.get("correlate_s", 0.0) + time.perf_counter() - t1
        return taus[r.task]

    aux = tuple(r.task for r in a_res)
    world = world_of(ledger)
    skeys = [selection_key(store, model_id=ledger.ctx.model_id, model_name=ledger.ctx.model_name,
                           primary=p_res, aux=a_res, signal=signal, cut=cut) for cut in cuts]

    def selections(refresh: bool) -> list[Selection]:
        out = []
        for ci, (cut, skey) in enumerate(zip(cuts, skeys, strict=True)):
            emit(progress, Stage.FG_CUT, task=p.name, done=ci, total=len(cuts),
                 message=cut.label)
            out.append(select(store, skey, cut, a_res, taus_of, force=refresh, primary=p.name,
                              model_name=ledger.ctx.model_name))
        return out

    # under torchrun rank 0 selects (with --force: recomputes) and the others read its entries
    sels = selections(force) if world.is_main else []
    if world.distributed:
        distributed.barrier(world)
        if not world.is_main:
            sels = selections(False)
    # every cut x seed is one batch of the ledger (under torchrun: spread over the ranks)
    plans = [_cut_units(ledger, cut, sel, aux, seeds) for cut, sel in zip(cuts, sels,
                                                                         strict=True)]
    t1 = time.perf_counter()
    flat = _get_all(ledger, [u for _, us in plans for u in us], force, progress)
    timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t1
    rows: list[FgRow] = []
    at = 0
    for ci, (cut, sel, (trained_aux, units)) in enumerate(zip(cuts, sels, plans, strict=True)):
        runs = flat[at:at + len(units)] if units else list(b_runs)
        at += len(units)
        rows.append(_cut_row(ledger, cut, sel, trained_aux, seeds, runs, b_runs))
        emit(progress, Stage.FG_CUT, task=p.name, done=ci + 1, total=len(cuts),
             message=cut.label, metrics={p.main_metric: rows[-1].mean, "kept": rows[-1].fraction})
    return rows, next((list(sel.taus) for sel in sels if sel.taus), [])


def _cut_units(ledger: Ledger, cut: Cut, sel: Selection, aux: tuple[str, ...],
               seeds: tuple[int, ...]) -> tuple[tuple[str, ...], list[Unit]]:
    """The runs one cut needs: P + the kept instances per seed (none: it is the baseline)."""
    p = ledger.ctx.primary
    trained_aux = tuple(t for t in aux if sel.kept[t].size)
    if not trained_aux:
        return trained_aux, []
    # a task kept whole needs no subset: the run is then the trial's own run of that set
    subsets = {t: sel.kept[t] for t in trained_aux
               if not np.array_equal(sel.kept[t], np.arange(ledger.train_size(t)))}
    total = {k.task: k.total for k in sel.info}
    label = (f"{p.name} + " + " + ".join(f"{t} {len(sel.kept[t])}/{total[t]}"
                                         for t in trained_aux) + f" ({cut.label})")
    return trained_aux, _units(label, trained_aux, seeds, subsets)


def _cut_row(ledger: Ledger, cut: Cut, sel: Selection, trained_aux: tuple[str, ...],
             seeds: tuple[int, ...], runs: Sequence[Run], b_runs: Sequence[Run]) -> FgRow:
    """Step 4 for one cut: score P + the kept instances (or the baseline when it keeps none)."""
    p = ledger.ctx.primary
    alone = not trained_aux
    interval = None if alone else paired_interval(
        p.main_metric, [r.result for r in runs], [r.result for r in b_runs], ledger.run.seed)
    lo, hi = interval if interval is not None else (None, None)
    rs = [r.result for r in runs]
    scores = tuple(r.score for r in rs)
    return FgRow(
        cut=cut, selection_key=sel.key, selection_cached=sel.cached, kept=sel.info,
        trained_aux=trained_aux, primary_alone=alone, seeds=seeds, scores=scores,
        mean=seed_mean(scores), std=seed_std(scores), best_epochs=tuple(r.best_epoch for r in rs),
        cached=tuple(r.cached for r in runs), ledger=tuple(r.key for r in runs),
        seconds=float(sum(r.seconds for r in rs)),
        metrics=mean_metrics([r.best_metrics for r in rs]),
        report={n: mean_metrics([r.report_metrics.get(n, {}) for r in rs])
                for n in ledger.plan.report},
        ci_low=lo if lo is not None and math.isfinite(lo) else None,
        ci_high=hi if hi is not None and math.isfinite(hi) else None)


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


def _store_result(store: Store, result: FgResult, cuts: Sequence[Cut],
                  run: RunSettings) -> FgResult:
    key = store.key(SUMMARY_KIND, [safe_component(result.model_name), result.primary], {
        "model": result.model, "primary": result.primary, "aux": list(result.aux),
        "cuts": [c.spec() for c in cuts], "selections": [r.selection_key for r in result.rows],
        "settings": dict(result.settings), "estimator": result.estimator,
        "method": result.method, "measure": result.measure, "version": FG_VERSION})
    result = dataclasses.replace(result, key=str(key),
                                 settings={**result.settings, "device": device_name(run)})
    best = result.best
    with summary_writer(store, key, {
            "primary": result.primary, "model_name": result.model_name, "aux": list(result.aux),
            "main_metric": result.main_metric, "baseline": encode(result.baseline.mean),
            "best": None if best is None else best.cut.label,
            "best_score": None if best is None else encode(best.mean)}) as w:
        w.save_json("result", result.to_json())
    return result


def load_fg_result(store: Store, model: str, primary: str) -> FgResult | None:
    """The newest stored GradTS-fg result of ``primary`` with ``model`` (id or path), or None."""
    from ..results import newest_entry

    newest = newest_entry(store, SUMMARY_KIND, model, primary=primary)
    return None if newest is None else decode(FgResult, store.load_json(newest, "result"))
