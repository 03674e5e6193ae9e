"""``gradts report``: one summary of what the store holds for a model (DESIGN.md §1 step 5).

GradTS is a pipeline of cached stages (probe -> corr -> trial -> fg); each writes its results
to the store (:mod:`gradts_engine.store`). This module reads them back, computes nothing that
trains, and returns a :class:`Report` with, for one model (and optionally one primary task):

- **probes**: every task probed with the model: instances, measure, time, final training
  loss and the probe's dev metric (``info`` of each probe entry, :mod:`gradts_engine.results`);
- **corr**: the task x task Kendall tau-b matrix and the candidate rankings, recomputed from the
  stored matrices by :func:`gradts_engine.corr.correlate_tasks` (cheap: no training);
- **trials**: the newest GradTS-trial summary of each primary (:func:`trial.load_trial_summary`):
  every candidate set tried, the baseline, the selected set and the noise verdict;
- **fg**: the newest GradTS-fg result of each primary (:func:`fg.load_fg_result`);
- **costs**: a ledger of compute per stage (seconds and device), read from the entries' meta
  information; the correlation is timed as it is recomputed here;
- **findings**: a few plain sentences saying what was chosen and why, and the next command.

:func:`list_models` lists the models the store holds results for, so that ``gradts report``
without ``--model`` can pick the only one.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import MissingResultError, UsageError, did_you_mean
from .results import KIND as PROBE_KIND
from .results import choose_probes, find_results, model_matches, read_result
from .serialize import to_jsonable

if TYPE_CHECKING:
    from .corr import CorrResult
    from .selection.compare_records import CompareResult
    from .selection.records import FgResult, TrialSummary
    from .store import Entry, Store

__all__ = ["CostRow", "ModelInfo", "ProbeRow", "Report", "build_report", "list_models"]

TRIAL_KIND = "trial"
FG_KIND = "fg"


def empty_hint(model: str = "M") -> str:
    """The next command when the store holds nothing for a model."""
    return (f"run: gradts probe --model {model} --suite demo (or `gradts demo` for the whole "
            "pipeline)")


# ---------------------------------------------------------------------------------------------
# result types


@dataclass(frozen=True)
class ModelInfo:
    """A model the store holds results for."""

    name: str                       # as the user named it (hub id or path)
    cache_id: str                   # hub id@commit or resolved path
    tasks: tuple[str, ...]          # tasks probed
    trials: tuple[str, ...] = ()    # primaries with a GradTS-trial summary
    fg: tuple[str, ...] = ()        # primaries with a GradTS-fg result


@dataclass(frozen=True)
class ProbeRow:
    """One probed task, as its probe entry recorded it."""

    task: str
    instances: int
    measure: str
    seconds: float | None           # load + fine-tune + dev + importance pass
    fine_tune_s: float | None
    importance_s: float | None
    examples_per_s: float | None
    train_loss: float | None        # mean training loss of the last epoch
    dev_metric: str | None
    dev_score: float | None
    dev_n: int | None
    device: str | None
    precision: str | None
    settings: Mapping[str, Any]     # epochs, lr, batch_size, max_length, seed, ...
    created: str | None
    key: str
    ranks: int = 1                  # processes that computed it (W with data parallelism)


@dataclass(frozen=True)
class CostRow:
    """Compute spent by one stage (from the stored entries' meta information)."""

    stage: str                      # probe | corr | trial | fg
    runs: int                       # tasks probed, models trained, ...
    seconds: float                  # device-seconds: summed over the ranks that computed
    device: str                     # e.g. "cpu", "cuda:0", or "not recorded"
    detail: str
    wall_s: float | None = None     # wall time of the command(s); None: not recorded


@dataclass(frozen=True, eq=False)
class Report:
    """Everything :func:`build_report` found (see the module docstring)."""

    store_root: str
    model: str                      # cache id
    model_name: str
    primary: str | None
    measure: str
    estimator: str
    method: str
    probes: tuple[ProbeRow, ...]
    corr: CorrResult | None
    corr_note: str | None
    trials: tuple[TrialSummary, ...]
    fg: tuple[FgResult, ...]
    costs: tuple[CostRow, ...]
    findings: tuple[str, ...]
    next_steps: tuple[str, ...]
    notes: tuple[str, ...] = ()
    created: str = ""
    elapsed_s: float = 0.0
    timings: Mapping[str, float] = field(default_factory=dict)
    compare: tuple[CompareResult, ...] = ()   # gradts compare, newest per primary set

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(p.task for p in self.probes)

    def trial_for(self, primary: str) -> TrialSummary | None:
        return next((t for t in self.trials if t.primary == primary), None)

    def fg_for(self, primary: str) -> FgResult | None:
        return next((f for f in self.fg if f.primary == primary), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (NaN and infinities become None)."""
        import dataclasses

        return to_jsonable({
            "store_root": self.store_root, "model": self.model, "model_name": self.model_name,
            "primary": self.primary, "measure": self.measure, "estimator": self.estimator,
            "method": self.method,
            "probes": [dataclasses.asdict(p) for p in self.probes],
            "corr": None if self.corr is None else self.corr.to_dict(),
            "corr_note": self.corr_note,
            "trials": [t.to_json() for t in self.trials],
            "fg": [f.to_json() for f in self.fg],
            "compare": [c.to_json() for c in self.compare],
            "costs": [dataclasses.asdict(c) for c in self.costs],
            "findings": list(self.findings), "next_steps": list(self.next_steps),
            "notes": list(self.notes), "created": self.created, "elapsed_s": self.elapsed_s,
            "timings": dict(self.timings),
        })


# ---------------------------------------------------------------------------------------------
# which models, which entries


def _primaries(store: Store, kind: str, model: str) -> list[str]:
    return sorted({str(e.info.get("primary")) for e in store.entries(kind)
                   if model_matches(e, model) and e.info.get("primary")})


def list_models(store: Store) -> tuple[ModelInfo, ...]:
    """Every model with probe results in the store (with its tasks, trials and fg results)."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in store.entries(PROBE_KIND):
        cache_id = str(e.spec.get("model", ""))
        d = by_id.setdefault(cache_id, {"name": str(e.info.get("model_name") or cache_id),
                                        "tasks": set()})
        d["tasks"].add(str(e.info.get("task_name")))
    out = []
    for cache_id, d in sorted(by_id.items(), key=lambda kv: kv[1]["name"]):
        out.append(ModelInfo(
            name=d["name"], cache_id=cache_id, tasks=tuple(sorted(d["tasks"])),
            trials=tuple(_primaries(store, TRIAL_KIND, cache_id)),
            fg=tuple(_primaries(store, FG_KIND, cache_id))))
    return tuple(out)


def pick_model(store: Store, model: str | None) -> str:
    """``model`` if given, else the only model in the store (an error naming the choices)."""
    if model:
        return model
    models = list_models(store)
    if not models:
        raise MissingResultError(f"the store at {store.root} holds no results yet",
                                 hint=empty_hint())
    if len(models) > 1:
        raise UsageError(
            f"the store at {store.root} holds results for {len(models)} models: "
            + ", ".join(m.name for m in models),
            hint=f"choose one with --model, e.g. --model {models[0].name}")
    return models[0].name


# ---------------------------------------------------------------------------------------------
# rows


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _probe_row(store: Store, entry: Entry) -> ProbeRow:
    info = entry.info
    t = info.get("timings") or {}
    parts = [_f(t.get(k)) for k in ("load_s", "fine_tune_s", "dev_s", "importance_s")]
    seconds = sum(p for p in parts if p is not None) if any(p is not None for p in parts) \
        else None
    train = info.get("train") or {}
    dev = info.get("dev") or {}
    settings = dict(entry.spec.get("settings", {}))
    return ProbeRow(
        task=str(info.get("task_name")), instances=int(info.get("num_instances", 0)),
        measure=str(entry.spec.get("measure")), seconds=seconds,
        fine_tune_s=_f(t.get("fine_tune_s")), importance_s=_f(t.get("importance_s")),
        examples_per_s=_f(t.get("examples_per_s")), train_loss=_f(train.get("final_loss")),
        dev_metric=dev.get("metric"), dev_score=_f(dev.get("main")),
        dev_n=int(dev["n"]) if isinstance(dev.get("n"), int) else None,
        device=info.get("device"), precision=info.get("precision") or settings.get("precision"),
        settings=settings, created=entry.meta.get("created"), key=entry.key_path,
        ranks=_ranks(info))


def _ranks(info: Mapping[str, Any]) -> int:
    """How many processes computed an entry: its world size with data parallelism, else 1."""
    d = info.get("distributed") or {}
    return int(d.get("world_size", 1)) if d.get("parallel") == "data" else 1


def _ddp_extra(distributed: Mapping[str, Any]) -> float:
    """The device-seconds of the other ranks in the data-parallel runs of a summary (each
    run's own ``seconds`` count one rank)."""
    extra = 0.0
    for run in (distributed.get("runs") or {}).values():
        ranks = run.get("ranks") or []
        if run.get("parallel") == "data" and ranks:
            extra += sum(float(r.get("seconds") or 0.0) for r in ranks[1:])
    return extra


def _devices(values: Sequence[str | None]) -> str:
    got = sorted({v for v in values if v})
    return ", ".join(got) if got else "not recorded"


def _costs(probes: Sequence[ProbeRow], corr: CorrResult | None, corr_s: float,
           trials: Sequence[TrialSummary], fgs: Sequence[FgResult]) -> tuple[CostRow, ...]:
    rows = []
    if probes:
        secs = sum((p.seconds or 0.0) * p.ranks for p in probes)
        n_ex = sum(p.instances for p in probes)
        rows.append(CostRow("probe", len(probes), secs, _devices([p.device for p in probes]),
                            f"fine-tune + importance pass over {n_ex} training examples"))
    if corr is not None:
        rows.append(CostRow("corr", len(corr.tasks), corr_s, "cpu",
                            f"{len(corr.tasks)} x {len(corr.tasks)} {corr.method} matrix, "
                            "recomputed for this report"))
    for t in trials:
        recs = [*t.trials, *t.comparisons]
        runs = sum(len(r.seeds) for r in recs)
        secs = sum(r.seconds for r in recs) + _ddp_extra(t.distributed)
        rows.append(CostRow(f"trial {t.primary}", runs, secs,
                            _devices([t.settings.get("device")]),
                            f"{len(recs)} candidate sets x {len(t.seeds)} "
                            f"seed{'' if len(t.seeds) == 1 else 's'}, "
                            f"{t.settings.get('epochs')} "
                            f"epoch{'' if t.settings.get('epochs') == 1 else 's'} each"
                            + _world_note(t.distributed), wall_s=t.seconds))
    for f in fgs:
        trained = [r for r in f.rows if not r.primary_alone]
        secs = sum(r.seconds for r in trained) + float(f.timings.get("correlate_s", 0.0)) \
            + _ddp_extra(f.distributed)
        rows.append(CostRow(f"fg {f.primary}", sum(len(r.seeds) for r in trained), secs,
                            _devices([f.settings.get("device")]),
                            f"{len(f.rows)} cut{'' if len(f.rows) == 1 else 's'}; "
                            "instance taus + training" + _world_note(f.distributed),
                            wall_s=f.seconds))
    return tuple(rows)


def _world_note(distributed: Mapping[str, Any]) -> str:
    w = distributed.get("world_size")
    return f"; {w} processes (time summed over them)" if w else ""


# ---------------------------------------------------------------------------------------------
# findings: what was chosen and why, in sentences


def _tau(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def _findings(model_name: str, rows: Sequence[ProbeRow], corr: CorrResult | None,
              primary: str | None, trials: Sequence[TrialSummary], fgs: Sequence[FgResult],
              estimator: str, method: str, measure: str, suite: str | None
              ) -> tuple[list[str], list[str]]:
    find: list[str] = []
    nxt: list[str] = []
    find.append(f"{len(rows)} task{'' if len(rows) == 1 else 's'} probed with {model_name} "
                f"({measure} measure); "
                f"candidates are ranked by {method} tau between {estimator} head-importance "
                "matrices.")
    unlearned = [r.task for r in rows if r.dev_metric == "accuracy" and r.dev_score is not None
                 and r.dev_score < 0.6]
    if unlearned:
        find.append(f"Barely learned by the probe (dev accuracy < 0.6): {', '.join(unlearned)}; "
                    "their matrices reflect the input format more than a learned skill.")
    primaries = [primary] if primary else sorted({t.primary for t in trials})
    m_flag = _quote(model_name)
    for p in primaries:
        if corr is not None and p in corr.rankings:
            top = corr.rankings[p][:3]
            find.append(f"Candidates for {p}: " + ", ".join(
                f"{c.rank}. {c.task} ({_tau(c.stat)})" for c in top)
                + (", …" if len(corr.rankings[p]) > 3 else "."))
        t = next((s for s in trials if s.primary == p), None)
        if t is None:
            where = f"--suite {suite}" if suite else "--candidates a,b,c"
            nxt.append(f"gradts trial --model {m_flag} --primary {p} {where}")
        else:
            if t.selected:
                find.append(f"GradTS-trial chose {' + '.join(t.selected)} for {p}: "
                            f"{t.main_metric} {t.selected_trial.mean:.4f} against "
                            f"{t.baseline.mean:.4f} for {p} alone "
                            f"({t.selected_trial.mean - t.baseline.mean:+.4f}). "
                            + ("Within the noise: " if t.verdict.within_noise else "")
                            + t.verdict.message + ".")
            else:
                find.append(f"GradTS-trial kept no auxiliary task for {p}: {t.verdict.message}"
                            f"; {t.stop_reason}.")
            f = next((r for r in fgs if r.primary == p), None)
            if f is None and t.selected:
                nxt.append(f"gradts fg --model {m_flag} --primary {p}")
        f = next((r for r in fgs if r.primary == p), None)
        if f is not None:
            best = f.best
            if best is None or not f.aux:
                find.append(f"GradTS-fg for {p}: nothing to select from (no auxiliary task).")
            else:
                kept = ", ".join(f"{k.kept}/{k.total} of {k.task}" for k in best.kept)
                find.append(f"GradTS-fg for {p} ({best.cut.label}) kept {kept}: "
                            f"{f.main_metric} {best.mean:.4f} "
                            f"({best.mean - f.baseline.mean:+.4f} against {p} alone"
                            + (f", {best.mean - f.trial.mean:+.4f} against the trial's set"
                               if f.trial is not None and math.isfinite(f.trial.mean) else "")
                            + ").")
    if not primaries and corr is not None and corr.tasks:
        p = corr.tasks[0]
        where = f"--suite {suite}" if suite else "--candidates a,b,c"
        nxt.append(f"gradts report --model {m_flag} --primary {p}")
        nxt.append(f"gradts trial --model {m_flag} --primary {p} {where}")
    return find, nxt


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


# ---------------------------------------------------------------------------------------------
# the engine entry


def build_report(store: Store, model: str | None = None, primary: str | None = None, *,
                 measure: str = "gate", estimator: str = "during", method: str = "kendall",
                 registry: Any = None) -> Report:
    """Read everything the store holds for ``model`` (and ``primary``) into a :class:`Report`.

    ``model=None`` picks the only model in the store (:func:`pick_model`). Nothing is trained;
    the correlations are recomputed from the stored matrices. An empty store, or a model or
    primary with no probe results, is a :class:`MissingResultError` naming the command to run.
    ``registry`` (optional) is used only to name a task's suite in the suggested commands.
    """
    from .corr import correlate_tasks, probed_models
    from .selection.compare import KIND as COMPARE_KIND
    from .selection.compare import load_compare
    from .selection.fg import load_fg_result
    from .selection.trial import load_trial_summary

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    model = pick_model(store, model)
    entries = find_results(store, model, measure)
    if not entries:
        others = probed_models(store)
        if not others:
            raise MissingResultError(f"the store at {store.root} holds no results yet",
                                     hint=empty_hint(_quote(model)))
        guess = did_you_mean(model, others)
        raise MissingResultError(
            f"no task has been probed with model {model} (measure {measure}) in the store at "
            f"{store.root}; probed models there: {', '.join(others)}"
            + (f" ({guess})" if guess else ""),
            hint=f"run: gradts probe --model {_quote(model)} --suite demo, or pick one of the "
                 "probed models with --model")
    # the probes every stage uses (one rule: results.choose_probes)
    choice = choose_probes(store, model, sorted({str(e.info.get("task_name")) for e in entries}),
                           measure)
    chosen = list(choice.entries.values())
    rows = [_probe_row(store, e) for e in chosen]
    tasks = [r.task for r in rows]
    if primary is not None and primary not in tasks:
        hint = did_you_mean(primary, tasks)
        raise MissingResultError(
            f"task '{primary}' has not been probed with model {model}"
            + (f" ({hint})" if hint else f"; probed: {', '.join(tasks)}"),
            hint=f"run: gradts probe --model {_quote(model)} --task {primary}", task=primary)
    first = read_result(store, chosen[0], verify=False)
    model_id, model_name = first.model, first.model_name
    timings["probes_s"] = time.perf_counter() - t0

    corr = None
    corr_note = None
    t1 = time.perf_counter()
    if len(tasks) >= 2:
        corr = correlate_tasks(store, model, tasks, primary=primary, method=method,
                               measure=measure, estimator=estimator)
    else:
        corr_note = (f"only one task ({tasks[0]}) has been probed with this model: there is "
                     "nothing to correlate yet")
    corr_s = time.perf_counter() - t1
    timings["corr_s"] = corr_s

    t1 = time.perf_counter()
    primaries = [primary] if primary else _primaries(store, TRIAL_KIND, model)
    trials = [s for p in primaries if (s := load_trial_summary(store, model, p)) is not None]
    fg_primaries = [primary] if primary else _primaries(store, FG_KIND, model)
    fgs = [r for p in fg_primaries if (r := load_fg_result(store, model, p)) is not None]
    compares = [c for p in _primaries(store, COMPARE_KIND, model)
                if (primary is None or primary in p.split(","))
                and (c := load_compare(store, model, p)) is not None]
    timings["ledger_s"] = time.perf_counter() - t1

    suite = None
    if registry is not None:
        suites = {getattr(registry.get(t), "suite", None) for t in tasks if t in registry}
        suite = suites.pop() if len(suites) == 1 else None
    findings, next_steps = _findings(model_name, rows, corr, primary, trials, fgs, estimator,
                                     method, measure, suite)
    if not rows or corr is None:
        next_steps.insert(0, f"gradts probe --model {_quote(model_name)} --task TASK")
    notes = list(dict.fromkeys([*([choice.warning] if choice.warning else []),
                                *(corr.warnings if corr is not None else [])]))
    return Report(
        store_root=str(store.root), model=model_id, model_name=model_name, primary=primary,
        measure=measure, estimator=estimator, method=method, probes=tuple(rows), corr=corr,
        corr_note=corr_note, trials=tuple(trials), fg=tuple(fgs),
        costs=_costs(rows, corr, corr_s, trials, fgs), findings=tuple(findings),
        next_steps=tuple(next_steps), notes=tuple(notes),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        elapsed_s=time.perf_counter() - t0, timings=timings, compare=tuple(compares))
