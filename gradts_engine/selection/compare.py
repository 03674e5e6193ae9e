"""``gradts compare``: GradTS against the field's baselines on the user's tasks (DESIGN.md §8).

For each primary task ``P``:

1. every selector (:mod:`.selectors`) ranks the candidates; the Kendall tau between the
   selectors' orders is kept (a matrix);
2. for each k, every selector's top-k set (``random``: one draw per seed), ``P`` alone and all
   candidates are trained with the same MTL settings and seeds as ``gradts trial``, through
   the run ledger: a set is trained once however many selectors chose it (its tasks are put in
   one canonical order: the ``gradts`` ranking's when it was computed, else by name), and a
   set that ``gradts trial`` trained with the same settings and evaluation plan is reused;
3. each run is scored on a split that no selector and no best-epoch choice saw: ``P``'s
   labelled test split, else the held-out part of dev (``holdout_fraction``, 0.5 by default);
4. per row: mean and spread over seeds of ``P``'s main metric, the gain over ``P`` alone and
   over ``random`` with a 90% paired bootstrap interval over evaluation examples *and* seeds
   (:func:`stats.paired_diffs` with ``resample_seeds``). A gain whose interval contains 0 is
   called within the noise, never a win.

With several primaries, per selector and k: the mean gain over primaries (its interval from
the same replicates averaged over primaries) and, for every other selector, the number of
primaries where it is separably better. Resumable: every run is a ledger entry.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingResultError, UsageError
from ..mtl import MTLSettings
from ..progress import NoteKind, Stage, emit
from ..signal import ImportanceSignal
from ..store import Store, safe_component
from .compare_records import (
    CompareResult,
    CompareRow,
    Gain,
    PrimaryComparison,
    SelectorRanking,
    SummaryRow,
)
from .ledger import EvalPlan, Ledger, Run, TrainFn, open_ledger
from .ledger_parallel import Unit, summary_writer
from .records import decode, encode
from .selectors import DEFAULT, SelectContext, get_selector
from .stats import NOISE_LEVEL, paired_diffs, percentile_interval, seed_mean, seed_std

if TYPE_CHECKING:
    from ..config import RunSettings, TrialSettings
    from ..models import ModelRef
    from ..progress import ProgressFn
    from ..tasks.spec import TaskSpec

KIND = "compare"
DEFAULT_HOLDOUT = 0.5
ALONE, ALL = "primary alone", "all candidates"


@dataclasses.dataclass(frozen=True)
class _Env:
    store: Store
    model: str
    ref: ModelRef
    run: RunSettings
    settings: MTLSettings
    signal: ImportanceSignal
    seeds: tuple[int, ...]
    cap: int | None
    holdout_fraction: float | None
    force: bool
    progress: ProgressFn | None
    train: TrainFn


def run_compare(model: str, primaries: Sequence[TaskSpec], candidates: Sequence[TaskSpec], *,
                store: Store, run: RunSettings | None = None, trial: TrialSettings | None = None,
                signal: ImportanceSignal | None = None, selectors: Sequence[str] = DEFAULT,
                ks: Sequence[int] = (1,), max_train_examples: int | None = None,
                holdout_fraction: float | None = None, force: bool = False,
                progress: ProgressFn | None = None, train_fn: TrainFn | None = None
                ) -> CompareResult:
    """Compare ``selectors`` for every primary over ``candidates`` (see the module docstring).

    ``trial`` gives the MTL settings and the number of seeds (as for ``gradts trial``).
    """
    from .. import mtl
    from ..config import RunSettings, TrialSettings
    from ..models import resolve_model

    t0 = time.perf_counter()
    run, trial = run or RunSettings(), trial or TrialSettings()
    sels = tuple(dict.fromkeys(get_selector(s).name for s in selectors))
    ks = tuple(sorted(set(int(k) for k in ks)))
    _check(primaries, candidates, sels, ks, trial.seeds)
    settings = MTLSettings.of(trial)
    settings.check()
    ref = resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    env = _Env(store, model, ref, run, settings, signal or ImportanceSignal(),
               tuple(run.seed + i for i in range(trial.seeds)), max_train_examples,
               holdout_fraction, force, progress, train_fn or mtl.train_mtl)
    done, trained = [], 0
    runs: dict[str, dict[tuple[str, int], list[Run]]] = {}
    dist: dict[str, Any] = {}
    for p in primaries:
        comp, row_runs, ledger = _compare_one(env, p, [c for c in candidates
                                                       if c.name != p.name], sels, ks)
        done.append(comp)
        runs[p.name] = row_runs
        trained += ledger.trained
        info = ledger.distributed_info()
        if info:
            dist = {**info, "runs": {**dist.get("runs", {}), **info["runs"]}}
    summary = _summary(done, runs, sels, ks, run.seed) if len(done) > 1 else ()
    result = CompareResult(
        model=ref.cache_id, model_name=ref.name, primaries=tuple(done), summary=summary,
        selectors=sels, ks=ks, seeds=env.seeds,
        settings={**settings.key(), "seeds": trial.seeds, "seed": run.seed,
                  "max_train_examples": max_train_examples, "holdout_fraction": holdout_fraction,
                  "measure": str(env.signal.measure), "estimator": str(env.signal.estimator),
                  "method": str(env.signal.method)},
        trained=trained, seconds=time.perf_counter() - t0,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        words=tuple(w for c in done for w in _words(c)), distributed=dist)
    return _store(store, result, [c.name for c in candidates])


def _check(primaries: Sequence[TaskSpec], candidates: Sequence[TaskSpec], sels: Sequence[str],
           ks: Sequence[int], seeds: int) -> None:
    if not primaries:
        raise UsageError("no primary task given", hint="pass --primary NAME (or --all)")
    names = [c.name for c in candidates]
    if len(primaries) == 1 and primaries[0].name in names:
        raise UsageError(f"the primary '{primaries[0].name}' is among the candidates",
                         hint="leave it out of --candidates")
    pool = min(len([n for n in names if n != p.name]) for p in primaries)
    if pool < 2:
        raise UsageError(f"{pool} candidate{'s' if pool != 1 else ''} only: there is nothing "
                         "to choose between", hint="give at least two candidates "
                         "(--candidates a,b or --suite NAME)")
    if not ks or ks[0] < 1 or ks[-1] > pool:
        raise UsageError(f"--k must lie between 1 and the pool size {pool}, not "
                         f"{','.join(map(str, ks)) or 'empty'}", hint="e.g. --k 1,2")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {seeds}")
    if not sels:
        raise UsageError("no selector given", hint=f"e.g. --selectors {','.join(DEFAULT)}")


def _plan(env: _Env, primary: TaskSpec) -> tuple[EvalPlan, str, str]:
    """The evaluation plan and the scoring split: the labelled test split, else held-out dev."""
    plan = EvalPlan.build(primary, env.store, env.holdout_fraction, env.run.seed)
    if "test" in plan.report:
        return plan, "test", f"the labelled test split ({plan.sizes['test']} examples)"
    if "holdout" not in plan.report:
        plan = EvalPlan.build(primary, env.store, DEFAULT_HOLDOUT, env.run.seed)
    return plan, "holdout", (f"the held-out {plan.sizes['holdout']} examples of dev "
                             f"(--holdout-fraction {plan.holdout_fraction:g}), never used to "
                             "choose an epoch")


def _rankings(env: _Env, primary: TaskSpec, cands: Sequence[TaskSpec], sels: Sequence[str]
              ) -> tuple[tuple[SelectorRanking, ...], SelectContext]:
    ctx = SelectContext(env.store, env.model, env.ref, primary, tuple(cands), env.run,
                        env.settings, env.signal, env.seeds, env.cap, env.progress)
    out = []
    for i, name in enumerate(sels):
        r = get_selector(name).rank(ctx)
        out.append(SelectorRanking(name, r.order, r.orders, dict(r.scores), r.seconds,
                                   r.cost_s, r.cost))
        emit(env.progress, Stage.SELECT, task=primary.name, done=i + 1, total=len(sels),
             message=f"{name}: " + ", ".join(r.order))
    return tuple(out), ctx


def _probes(env: _Env, ctx: SelectContext, names: Sequence[str]) -> dict[str, str]:
    """The probe entries of the run keys (as trial records them), when the tasks are probed."""
    from ..results import choose_probes

    if "probes" in ctx.shared:
        return dict(ctx.shared["probes"])
    try:
        return choose_probes(env.store, env.model, list(names), str(env.signal.measure)).keys
    except MissingResultError:
        return {}


def _compare_one(env: _Env, primary: TaskSpec, cands: Sequence[TaskSpec], sels: Sequence[str],
                 ks: Sequence[int]) -> tuple[PrimaryComparison, dict[tuple[str, int], list[Run]],
                                             Ledger]:
    plan, scoring, scoring_text = _plan(env, primary)
    rankings, ctx = _rankings(env, primary, cands, sels)
    names = [primary.name, *(c.name for c in cands)]
    ledger = open_ledger(env.store, env.ref, primary, {s.name: s for s in [primary, *cands]},
                         settings=env.settings, run=env.run, plan=plan,
                         probes=_probes(env, ctx, names), train=env.train,
                         progress=env.progress, max_train_examples=env.cap)
    by = {r.selector: r for r in rankings}
    canon_order = list(by["gradts"].order) if "gradts" in by else sorted(names[1:])

    def canon(aux: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(aux, key=canon_order.index))

    plans: list[tuple[str, int, list[tuple[str, ...]]]] = [
        (ALONE, 0, [()] * len(env.seeds)), (ALL, len(cands), [canon(names[1:])] * len(env.seeds))]
    plans += [(s, k, [canon(by[s].order_for(i)[:k]) for i in range(len(env.seeds))])
              for k in ks for s in sels]
    runs = _train_rows(env, ledger, scoring, plans)
    rows = {key: _row(key[0], key[1], rs, env.seeds, scoring) for key, rs in runs.items()}
    base = runs[(ALONE, 0)]
    out_rows = []
    for s, k, _ in plans[2:]:
        rnd = runs.get(("random", k)) if s != "random" else None
        out_rows.append(_with_gains(rows[(s, k)], runs[(s, k)], base, rnd, primary.main_metric,
                                    scoring, env.run.seed))
    notes = list(dict.fromkeys(ctx.shared.get("notes", [])))
    for n in notes:
        emit(env.progress, Stage.NOTE, task=primary.name, message=n, kind=NoteKind.WARNING)
    comp = PrimaryComparison(
        primary=primary.name, main_metric=primary.main_metric, scored_on=scoring,
        scored_on_text=scoring_text, n_examples=int(plan.sizes.get(scoring, 0)),
        candidates=tuple(names[1:]), rankings=rankings, agreement=_agreement(rankings),
        baseline=rows[(ALONE, 0)],
        all_candidates=_with_gains(rows[(ALL, len(cands))], runs[(ALL, len(cands))], base, None,
                                   primary.main_metric, scoring, env.run.seed),
        rows=tuple(out_rows), notes=tuple(notes))
    return comp, runs, ledger


def _train_rows(env: _Env, ledger: Ledger, scoring: str,
                plans: Sequence[tuple[str, int, Sequence[tuple[str, ...]]]]
                ) -> dict[tuple[str, int], list[Run]]:
    """The runs of every row: set ``sets[i]`` with seed i. Every selector's sets are known
    up front, so all rows are one batch of the ledger (which trains each pair once; under
    torchrun the runs spread over the ranks, :meth:`Ledger.get_many`)."""
    p = ledger.ctx.primary
    units: list[Unit] = []
    where: list[tuple[str, int, int, int]] = []      # selector, k, seed index, row size
    for selector, k, sets in plans:
        for i, (aux, seed) in enumerate(zip(sets, env.seeds, strict=True)):
            label = (f"{p.name} + " + " + ".join(aux) if aux else f"{p.name} alone") + (
                f" (seed {seed})" if len(env.seeds) > 1 else "")
            units.append(Unit(tuple(aux), seed, label))
            where.append((selector, k, i, len(sets)))

    def start(j: int) -> None:
        selector, k, i, n = where[j]
        emit(env.progress, Stage.COMPARE_START, task=p.name, done=i, total=n,
             message=f"{selector} k={k}: {units[j].label}")

    def done(j: int, r: Run) -> None:
        selector, k, i, n = where[j]
        emit(env.progress, Stage.COMPARE_RUN, task=p.name, done=i + 1, total=n,
             message=f"{selector} k={k}: {units[j].label}",
             metrics={"score": _score(r, scoring, p.main_metric), "cached": float(r.cached)})

    flat = ledger.get_many(units, force=env.force, on_start=start, on_done=done)
    # runs stored before the report predictions were kept: trained again (one batch too)
    stale = [j for j, r in enumerate(flat) if scoring not in r.result.report_predictions]
    if stale:
        for j, r in zip(stale, ledger.get_many([units[j] for j in stale], force=True),
                        strict=True):
            flat[j] = r
    out: dict[tuple[str, int], list[Run]] = {}
    for (selector, k, _, _), r in zip(where, flat, strict=True):
        out.setdefault((selector, k), []).append(r)
    return out


def _score(r: Run, scoring: str, main: str) -> float:
    return float(r.result.report_metrics.get(scoring, {}).get(main, math.nan))


def _row(selector: str, k: int, runs: Sequence[Run], seeds: tuple[int, ...],
         scoring: str) -> CompareRow:
    main = runs[0].result.main_metric
    scores = tuple(_score(r, scoring, main) for r in runs)
    return CompareRow(selector=selector, k=k, sets=tuple(r.result.aux for r in runs), seeds=seeds,
                      scores=scores, mean=seed_mean(scores), std=seed_std(scores), gain=None,
                      vs_random=None, cached=tuple(r.cached for r in runs),
                      ledger=tuple(r.key for r in runs),
                      train_s=float(sum(r.result.seconds for r in runs)))


def diffs_between(a: Sequence[Run], b: Sequence[Run], main: str, scoring: str,
                  seed: int) -> np.ndarray:
    """Bootstrap replicates of mean_s score(a_s) - mean_s score(b_s) on the scoring split,
    resampling evaluation examples and seeds (paired by seed index)."""
    y = np.asarray(a[0].result.report_predictions[scoring][1])
    return paired_diffs(main, y, [np.asarray(r.result.report_predictions[scoring][0]) for r in a],
                        [np.asarray(r.result.report_predictions[scoring][0]) for r in b],
                        seed=seed, resample_seeds=True)


def _gain(a: Sequence[Run], b: Sequence[Run], main: str, scoring: str, seed: int,
          diff: float) -> Gain:
    lo, hi = percentile_interval(diffs_between(a, b, main, scoring, seed))
    ok = math.isfinite(lo) and math.isfinite(hi)
    return Gain(diff, lo if ok else None, hi if ok else None, bool(ok and (lo > 0 or hi < 0)))


def _with_gains(row: CompareRow, runs: Sequence[Run], base: Sequence[Run],
                rnd: Sequence[Run] | None, main: str, scoring: str, seed: int) -> CompareRow:
    b_mean = seed_mean([_score(r, scoring, main) for r in base])
    gain = _gain(runs, base, main, scoring, seed, row.mean - b_mean)
    vs = None
    if rnd is not None:
        vs = _gain(runs, rnd, main, scoring, seed,
                   row.mean - seed_mean([_score(r, scoring, main) for r in rnd]))
    return dataclasses.replace(row, gain=gain, vs_random=vs, verdict=_verdict(row, gain, vs, main))


def _verdict(row: CompareRow, gain: Gain, vs: Gain | None, main: str) -> str:
    pct = int(round(NOISE_LEVEL * 100))

    def say(g: Gain, what: str) -> str:
        if g.low is None or g.high is None:
            return f"{g.diff:+.4f} {main} over {what} (no interval)"
        iv = f"{pct}% interval [{g.low:+.4f}, {g.high:+.4f}]"
        if not g.separable:
            return f"{g.diff:+.4f} over {what} is within the noise ({iv} includes 0)"
        return f"{g.diff:+.4f} over {what}, {'better' if g.diff > 0 else 'worse'} ({iv})"

    parts = [say(gain, "the primary alone")] + ([say(vs, "random")] if vs is not None else [])
    return f"{row.selector} (k={row.k}): " + "; ".join(parts)


def _agreement(rankings: Sequence[SelectorRanking]) -> dict[str, dict[str, float]]:
    """Kendall tau between every two selectors' orders (positions of the candidates)."""
    from ..correlate import correlate

    pos = {r.selector: np.array([r.order.index(t) for t in sorted(r.order)], float)
           for r in rankings}
    return {a: {b: float(correlate(pos[a], pos[b], "kendall")[0]) for b in pos} for a in pos}


def _summary(comps: Sequence[PrimaryComparison], runs: Mapping[str, Mapping[tuple[str, int],
             list[Run]]], sels: Sequence[str], ks: Sequence[int],
             seed: int) -> tuple[SummaryRow, ...]:
    """Per selector and k: the mean gain over primaries and how often it beats the others."""
    out = []
    for k in ks:
        for s in sels:
            reps, gains, beats = [], [], {o: 0 for o in sels if o != s}
            for c in comps:
                r = runs[c.primary]
                reps.append(diffs_between(r[(s, k)], r[(ALONE, 0)], c.main_metric,
                                          c.scored_on, seed))
                gains.append(next(x.gain.diff for x in c.rows if (x.selector, x.k) == (s, k)
                                  if x.gain is not None))
                for o in beats:
                    lo, _ = percentile_interval(diffs_between(r[(s, k)], r[(o, k)],
                                                              c.main_metric, c.scored_on, seed))
                    beats[o] += int(math.isfinite(lo) and lo > 0)
            lo, hi = percentile_interval(np.mean(np.stack(reps), 0))
            out.append(SummaryRow(s, k, len(comps), float(np.mean(gains)),
                                  lo if math.isfinite(lo) else None,
                                  hi if math.isfinite(hi) else None, beats))
    return tuple(out)


def _words(c: PrimaryComparison) -> list[str]:
    sep = [r for r in c.rows if r.gain is not None and r.gain.separable and r.gain.diff > 0]
    noise = [r for r in c.rows if r.gain is not None and not r.gain.separable]
    out = [f"{c.primary}: scored on {c.scored_on_text}."]
    out += [r.verdict for r in c.rows]
    if not sep:
        out.append(f"{c.primary}: no selector's set is separably better than the primary alone"
                   + (f" ({len(noise)} within the noise)" if noise else "") + ".")
    return out


def _store(store: Store, result: CompareResult, candidates: list[str]) -> CompareResult:
    key = store.key(KIND, [safe_component(result.model_name),
                           "+".join(p.primary for p in result.primaries)], {
        "model": result.model, "primaries": [p.primary for p in result.primaries],
        "candidates": candidates, "selectors": list(result.selectors), "ks": list(result.ks),
        "settings": dict(result.settings)})
    result = dataclasses.replace(result, key=str(key))
    with summary_writer(store, key, {
            "primary": ",".join(p.primary for p in result.primaries),
            "model_name": result.model_name, "selectors": list(result.selectors)}) as w:
        w.save_json("result", encode(result))
    return result


def load_compare(store: Store, model: str, primary: str) -> CompareResult | None:
    """The newest stored comparison of ``primary`` (or ``a,b,c``) with ``model``, or None."""
    from ..results import newest_entry

    newest = newest_entry(store, KIND, model, primary=primary)
    return None if newest is None else decode(CompareResult, store.load_json(newest, "result"))

