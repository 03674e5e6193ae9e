"""``gradts demo``: the whole GradTS pipeline on the built-in demo suite, offline (DESIGN.md §7).

The demo suite (:mod:`gradts_engine.tasks.demo`) has four families of two sibling tasks that
need the same skill but share no content words, so the right answer is known in advance: for
every task, its sibling should be the top-ranked candidate. :func:`run_demo` runs, with
progress events throughout:

1. **data** — resolve the model; generate every task's splits (``train_size`` training
   examples per task, seeded, deterministic);
2. **probe** — fine-tune on each of the 8 tasks and measure head importance
   (:func:`probe.probe_tasks`; DESIGN.md §7's settings: 1 epoch, batch 16, AdamW lr 1e-4, max
   length 48; rankings use the ``during`` estimator);
3. **corr** — Kendall tau-b between the tasks' matrices (:func:`corr.correlate_tasks`);
4. **trial** — GradTS-trial for one primary (:func:`trial.run_trial`), kept cheap: 1 epoch, at
   most ``trial_max_aux`` auxiliary tasks, patience 1, one seed;
5. **fg** — GradTS-fg on the trial's selection (:func:`fg.run_fg`), keeping the top quarter of
   the auxiliary instances by tau (the original 0.62 threshold keeps none on this suite: with
   MiniLM the highest instance-level tau against another task is about 0.35);
6. **report** — :func:`report.build_report`, plus the sibling-recovery table: for every task,
   its planted sibling, the top-ranked candidate, the sibling's tau and the best non-sibling's.

Every stage is cached in the demo's own store (a rerun reuses everything). The embedded model is
the pretrained MiniLM-L6-H384 of the ``demo`` extra (:func:`models.demo_model_path`); without
the extra it is ``sentence-transformers/all-MiniLM-L6-v2`` from the Hub, when online. A tiny
random model cannot show the method (§7): its heads never specialise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError, OfflineError, UsageError, did_you_mean
from .progress import ProgressFn, Stage, emit
from .signal import FG_THRESHOLD

if TYPE_CHECKING:
    from .corr import CorrResult
    from .probe import ProbeRun
    from .report import Report
    from .selection.records import FgResult, TrialSummary
    from .store import Store

__all__ = ["BUDGET_S", "DEFAULT_PRIMARY", "DEMO_DIR", "DemoResult", "DemoSettings", "SiblingRow",
           "StageTime", "demo_home", "demo_model", "run_demo", "sibling_rows"]

DEMO_DIR = ".demo"            # the demo's store: <store root>/.demo unless --home is given
DEFAULT_PRIMARY = "match_person"
BUDGET_S = 180.0              # the goal on a 2-core CPU (benchmarks/demo.py measures it)
INSTALL_HINT = "pip install 'gradts[demo]'"
STAGES = ("data", "probe", "corr", "trial", "fg", "report")


@dataclass(frozen=True)
class DemoSettings:
    """The demo's settings (DESIGN.md §7 for the probe; a cheap trial and fg)."""

    train_size: int = 600
    dev_size: int = 200
    test_size: int | None = None  # None: as dev_size
    seed: int = 0
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 16
    max_length: int = 48
    estimator: str = "during"
    method: str = "kendall"
    trial_epochs: int = 1
    trial_max_aux: int = 1
    trial_patience: int = 1
    trial_lr: float = 1e-4
    trial_batch_size: int = 16
    fg_threshold: float = FG_THRESHOLD
    fg_keep_fraction: float | None = 0.25  # used instead of fg_threshold when set
    skip_trial: bool = False
    skip_fg: bool = False
    device: str = "auto"
    precision: str = "auto"

    def check(self) -> None:
        from .errors import ConfigError

        for name, value, low in (("train-size", self.train_size, 16),
                                 ("dev-size", self.dev_size, 10),
                                 ("test-size", self.test_size or self.dev_size, 10),
                                 ("epochs", self.epochs, 1),
                                 ("trial-epochs", self.trial_epochs, 1),
                                 ("batch-size", self.batch_size, 1),
                                 ("max-length", self.max_length, 8),
                                 ("trial-max-aux", self.trial_max_aux, 1)):
            if value < low:
                raise ConfigError(f"--{name} must be at least {low}, not {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, not {self.lr}")
        if self.estimator not in ("during", "after"):
            raise ConfigError(f"unknown estimator {self.estimator!r}",
                              hint="choose --estimator from during, after")


@dataclass(frozen=True)
class StageTime:
    stage: str
    seconds: float
    detail: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class SiblingRow:
    """Was a task's planted sibling ranked first among its candidates?"""

    task: str
    family: str
    sibling: str
    top: str
    sibling_rank: int
    tau_sibling: float
    best_other: str
    tau_best_other: float
    dev_score: float | None       # the probe's dev accuracy (was the task learned?)

    @property
    def ok(self) -> bool:
        return self.top == self.sibling

    @property
    def margin(self) -> float:
        return self.tau_sibling - self.tau_best_other


@dataclass(frozen=True, eq=False)
class DemoResult:
    """What :func:`run_demo` did and found (see the module docstring)."""

    store_root: str
    model: str
    model_source: str             # "demo extra" | "hub" | "--model"
    primary: str
    settings: DemoSettings
    stages: tuple[StageTime, ...]
    total_s: float
    probe: ProbeRun
    corr: CorrResult
    trial: TrialSummary | None
    fg: FgResult | None
    report: Report
    siblings: tuple[SiblingRow, ...]
    caveats: tuple[str, ...]
    budget_s: float = BUDGET_S
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def recovered(self) -> int:
        return sum(r.ok for r in self.siblings)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        from .serialize import to_jsonable

        return to_jsonable({
            "store_root": self.store_root, "model": self.model,
            "model_source": self.model_source, "primary": self.primary,
            "settings": dataclasses.asdict(self.settings),
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "total_s": self.total_s, "budget_s": self.budget_s,
            "recovered": self.recovered, "tasks": len(self.siblings),
            "siblings": [{**dataclasses.asdict(r), "ok": r.ok, "margin": r.margin}
                         for r in self.siblings],
            "caveats": list(self.caveats), "notes": list(self.notes),
            "report": self.report.to_dict(),
        })


# ---------------------------------------------------------------------------------------------
# where, with which model


def demo_home(root: str | Path) -> Path:
    """The demo's own store inside the store root (hidden: not mixed with the user's entries)."""
    return Path(root) / DEMO_DIR


def demo_model(model: str | None = None) -> tuple[str, str]:
    """``(model, source)``: ``model`` if given, else the demo extra's MiniLM, else the Hub's.

    Without the extra and without network access: an :class:`OfflineError` saying what to
    install.
    """
    from . import models

    if model:
        return model, "--model"
    path = models.demo_model_path()
    if path is not None:
        return str(path), "demo extra"
    try:
        ref = models.resolve_model(models.DEMO_MODEL_HUB_ID)
    except (OfflineError, ModelError) as e:
        raise OfflineError(
            "the demo needs the pretrained MiniLM: the 'demo' extra is not installed and "
            f"{models.DEMO_MODEL_HUB_ID} cannot be downloaded ({e.message})",
            hint=f"{INSTALL_HINT}, or pass --model DIR with a local BERT-family model") from e
    return ref.name, "hub"


# ---------------------------------------------------------------------------------------------
# recovery of the planted siblings


def sibling_rows(corr: CorrResult, dev_scores: Mapping[str, float | None] | None = None
                 ) -> tuple[SiblingRow, ...]:
    """For every demo task in ``corr`` whose sibling is there too: was it ranked first?"""
    from .tasks.demo import SIBLINGS, TASK_INFO

    rows = []
    for t in corr.tasks:
        sib = SIBLINGS.get(t)
        if sib is None or sib not in corr.tasks:
            continue
        ranking = corr.rankings[t]
        s = next(c for c in ranking if c.task == sib)
        others = [c for c in ranking if c.task != sib]
        best = others[0] if others else None
        rows.append(SiblingRow(
            task=t, family=TASK_INFO[t].family, sibling=sib, top=ranking[0].task,
            sibling_rank=s.rank, tau_sibling=float(s.stat),
            best_other=best.task if best else "–",
            tau_best_other=float(best.stat) if best else math.nan,
            dev_score=(dev_scores or {}).get(t)))
    return tuple(rows)


def _caveats(rows: Sequence[SiblingRow], settings: DemoSettings, dev_n: int,
             trial: TrialSummary | None) -> tuple[str, ...]:
    out = []
    unlearned = [r for r in rows if r.dev_score is not None and r.dev_score < 0.6]
    if unlearned:
        out.append(
            "Not learned in " + ("one epoch" if settings.epochs == 1 else
                                 f"{settings.epochs} epochs")
            + " (probe dev accuracy < 0.6): "
            + ", ".join(f"{r.task} {r.dev_score:.2f}" for r in unlearned)
            + ". Their matrices reflect shared sentence frames more than a learned skill, so "
            "their rankings are the least reliable.")
    se = math.sqrt(0.25 / max(dev_n, 1))
    if trial is not None:
        out.append(
            f"The trial trains each candidate set once (one seed, {settings.trial_epochs} "
            f"epoch{'' if settings.trial_epochs == 1 else 's'}) and scores it on {dev_n} dev "
            "examples, where one binomial standard "
            f"error is up to {se:.3f} accuracy: differences of that size are noise (the "
            "verdict above says whether the choice beats it). Use `gradts trial --seeds 3` for "
            "a real decision.")
    out.append("Rankings from one probe seed vary: rerun with --seed 1, 2 to see which "
               "recoveries are stable.")
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the pipeline


def run_demo(store: Store, *, model: str | None = None, primary: str = DEFAULT_PRIMARY,
             settings: DemoSettings | None = None, force: bool = False,
             progress: ProgressFn | None = None) -> DemoResult:
    """Run data -> probe -> corr -> trial -> fg -> report on the demo suite (module docstring).

    ``progress`` receives a ``Stage.DEMO`` event at the start of every stage (``message`` =
    stage, ``done`` = its index, ``total`` = 6, ``metrics["units"]`` = the tasks or runs it
    will count), ``Stage.DEMO_NOTE`` events with a message, and every event of the stages'
    engine functions.
    """
    from .config import RunSettings
    from .corr import correlate_tasks
    from .report import build_report
    from .tasks.demo import DEMO_TASKS

    s = settings or DemoSettings()
    s.check()
    t_start = time.perf_counter()
    stages: list[StageTime] = []

    def stage(i: int, name: str, units: int = 1) -> float:
        emit(progress, Stage.DEMO, task=None, done=i, total=len(STAGES), message=name,
             metrics={"units": float(units)})
        return time.perf_counter()

    t0 = stage(0, "data", len(DEMO_TASKS))                                    # 1. data
    registry, specs, model_name, source = _data_stage(store, s, primary, model, progress)
    names = [sp.name for sp in specs]
    stages.append(StageTime("data", time.perf_counter() - t0,
                            f"{len(specs)} tasks x {s.train_size}/{s.dev_size}/"
                            f"{s.test_size or s.dev_size} train/dev/test examples"))
    t0 = stage(1, "probe", len(specs))                                        # 2. probe
    run = RunSettings(model=model_name, device=s.device, precision=s.precision, seed=s.seed)
    probe_run, detail = _probe_stage(store, s, model_name, specs, run, force, progress)
    stages.append(StageTime("probe", time.perf_counter() - t0, detail))
    t0 = stage(2, "corr")                                                     # 3. corr
    corr = correlate_tasks(store, model_name, names, primary=None, method=s.method,
                           estimator=s.estimator, progress=progress)
    stages.append(StageTime("corr", time.perf_counter() - t0,
                            f"{s.method} tau, {s.estimator} estimator"))
    t0 = stage(3, "trial", 1 + s.trial_max_aux)                               # 4. trial
    trial = _trial_stage(store, s, model_name, registry, specs, primary, run, force, progress)
    stages.append(_trial_time(s, primary, trial, t0))
    t0 = stage(4, "fg")                                                       # 5. fg
    fg = _fg_stage(store, s, model_name, registry, primary, run, trial, force, progress)
    stages.append(_fg_time(s, trial, fg, t0))
    t0 = stage(5, "report")                                                   # 6. report
    rep = build_report(store, model_name, primary, estimator=s.estimator, method=s.method,
                       registry=registry)
    rows = sibling_rows(corr, {p.task: p.dev_score for p in rep.probes})
    stages.append(StageTime("report", time.perf_counter() - t0))
    emit(progress, Stage.DEMO, task=None, done=len(STAGES), total=len(STAGES), message="done")
    return DemoResult(
        store_root=str(store.root), model=model_name, model_source=source, primary=primary,
        settings=s, stages=tuple(stages), total_s=time.perf_counter() - t_start,
        probe=probe_run, corr=corr, trial=trial, fg=fg, report=rep, siblings=rows,
        caveats=_caveats(rows, s, s.dev_size, trial), notes=())


def _data_stage(store: Store, s: DemoSettings, primary: str, model: str | None,
                progress: ProgressFn | None) -> tuple[Any, list[Any], str, str]:
    """The suite's registry and specs (every split loaded once), and the model to use."""
    from . import data
    from .tasks import build_registry
    from .tasks.demo import DEMO_SUITE

    registry = build_registry(include_user=False, demo_seed=0, demo_sizes={
        "train": s.train_size, "dev": s.dev_size, "test": s.test_size or s.dev_size})
    specs = registry.resolve([], DEMO_SUITE)
    names = [sp.name for sp in specs]
    if primary not in names:
        raise UsageError(f"'{primary}' is not a demo task",
                         hint=did_you_mean(primary, names) or f"choose --primary from "
                         f"{', '.join(names)}")
    model_name, source = demo_model(model)
    emit(progress, Stage.DEMO_NOTE, message=f"model: {model_name} ({source})")
    for i, sp in enumerate(specs):
        for split in ("train", "dev", "test"):
            data.load_split(sp, split, store=store)
        emit(progress, Stage.DATA, task=sp.name, done=i + 1, total=len(specs))
    return registry, specs, model_name, source


def _probe_stage(store: Store, s: DemoSettings, model_name: str, specs: list[Any], run: Any,
                 force: bool, progress: ProgressFn | None) -> tuple[Any, str]:
    from .config import ProbeSettings
    from .probe import probe_tasks

    probe = ProbeSettings(measure="gate", epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                          max_length=s.max_length, instances=True)
    probe_run = probe_tasks(model_name, specs, store=store, run=run, probe=probe, force=force,
                            progress=progress)
    n_cached = sum(o.cached for o in probe_run.outcomes)
    return probe_run, (f"{len(specs)} tasks, {s.epochs} epoch{'' if s.epochs == 1 else 's'} "
                       f"at lr {s.lr:g}" + (f"; {n_cached} from the cache" if n_cached else ""))


def _trial_settings(s: DemoSettings) -> Any:
    from .config import TrialSettings

    return TrialSettings(epochs=s.trial_epochs, patience=s.trial_patience,
                         max_aux=s.trial_max_aux, batch_size=s.trial_batch_size,
                         lr=s.trial_lr, max_length=s.max_length, seeds=1)


def _trial_stage(store: Store, s: DemoSettings, model_name: str, registry: Any,
                 specs: list[Any], primary: str, run: Any, force: bool,
                 progress: ProgressFn | None) -> Any:
    """GradTS-trial for the primary (None with ``skip_trial``)."""
    if s.skip_trial:
        return None
    from .selection.trial import run_trial
    from .signal import ImportanceSignal

    cands = [sp for sp in specs if sp.name != primary]
    return run_trial(model_name, registry.get(primary), cands, store=store, run=run,
                     trial=_trial_settings(s),
                     signal=ImportanceSignal.parse(estimator=s.estimator, method=s.method),
                     force=force, progress=progress)


def _trial_time(s: DemoSettings, primary: str, trial: Any, t0: float) -> StageTime:
    if trial is None:
        return StageTime("trial", 0.0, "skipped (--skip-trial)", skipped=True)
    return StageTime("trial", time.perf_counter() - t0,
                     f"{len(trial.trials)} candidate sets for {primary}, {s.trial_epochs} "
                     f"epoch{'' if s.trial_epochs == 1 else 's'}, max {s.trial_max_aux} aux")


def _fg_stage(store: Store, s: DemoSettings, model_name: str, registry: Any, primary: str,
              run: Any, trial: Any, force: bool, progress: ProgressFn | None) -> Any:
    """GradTS-fg on the trial's chosen tasks (None when skipped or without a trial)."""
    if s.skip_fg or trial is None:
        return None
    from .selection.cuts import make_cuts
    from .selection.fg import run_fg
    from .signal import ImportanceSignal

    cuts = make_cuts(None if s.fg_keep_fraction is not None else [s.fg_threshold],
                     s.fg_keep_fraction)
    return run_fg(model_name, registry.get(primary), None, store=store, run=run,
                  trial_settings=_trial_settings(s), cuts=cuts,
                  signal=ImportanceSignal.parse(estimator=s.estimator, method=s.method),
                  force=force, progress=progress, registry=registry)


def _fg_time(s: DemoSettings, trial: Any, fg: Any, t0: float) -> StageTime:
    if fg is None:
        why = "--skip-fg" if s.skip_fg else "needs the trial"
        return StageTime("fg", 0.0, f"skipped ({why})", skipped=True)
    kept = fg.rows[0].kept_total if fg.rows else 0
    how = (f"top {s.fg_keep_fraction:.0%} by tau" if s.fg_keep_fraction is not None
           else f"tau ≥ {s.fg_threshold:g}")
    return StageTime("fg", time.perf_counter() - t0,
                     f"{how}: kept {kept} instances" if fg.aux
                     else "nothing to select (the trial kept no task)")
