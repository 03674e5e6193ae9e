"""Long-format CSV of GradTS-trial, GradTS-fg, compare and report results (issue 15).

One schema for every stage, as ``gradts corr --csv`` is long: a row per measured number,
columns :data:`LONG_COLUMNS` = stage, primary, set (the auxiliary set ``a+b`` or the fg cut's
label), role (baseline | prefix | random | all | verdict | cut | trial set | candidate; in
``compare`` rows the selector), task (the auxiliary or probed task a row is about), seed (empty
for aggregates), quantity (the metric's name, ``<metric>_mean``, ``<metric>_std``,
``best_epoch``, ``selected``, ``kept``, ...), value (NaN and None are empty cells; floats at
full precision). A spreadsheet or pandas pivots it into any table:
``df.pivot_table(index="set", columns="quantity", values="value")``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

__all__ = ["LONG_COLUMNS", "compare_csv", "fg_csv", "report_csv", "trial_csv"]



LONG_COLUMNS = ("stage", "primary", "set", "role", "task", "seed", "quantity", "value")


def _v(x: Any) -> str:
    """A CSV cell: NaN and None empty, floats at full precision."""
    if x is None or isinstance(x, bool):
        return "" if x is None else str(int(x))
    if isinstance(x, float):
        return "" if x != x else repr(x)
    return str(x)


def _long_csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LONG_COLUMNS)
    w.writerows([_v(c) for c in r] for r in rows)
    return buf.getvalue()


def _trial_rows(t: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    sel = "+".join(t.selected)
    for r in (*t.trials, *t.comparisons):
        name = "+".join(r.aux)
        for seed, score, epoch in zip(r.seeds, r.scores, r.best_epochs, strict=False):
            rows.append(("trial", t.primary, name, r.role, "", seed, t.main_metric, score))
            rows.append(("trial", t.primary, name, r.role, "", seed, "best_epoch", epoch))
        rows.append(("trial", t.primary, name, r.role, "", "", f"{t.main_metric}_mean", r.mean))
        rows.append(("trial", t.primary, name, r.role, "", "", f"{t.main_metric}_std", r.std))
        if r.role != "random":
            rows.append(("trial", t.primary, name, r.role, "", "", "selected",
                         int(name == sel)))
    v = t.verdict
    for q, x in (("diff", v.diff), ("ci_low", v.ci_low), ("ci_high", v.ci_high),
                 ("level", v.level), ("within_noise", int(v.within_noise))):
        rows.append(("trial", t.primary, sel, "verdict", "", "", q, x))
    return rows


def trial_csv(summary: Any) -> str:
    """A GradTS-trial summary in long format (:data:`LONG_COLUMNS`): per set and seed the
    primary's main metric and best epoch, per set the mean, s.d. and whether it was selected,
    and the noise verdict (selected - baseline, its interval)."""
    return _long_csv(_trial_rows(summary))


def _fg_rows(f: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for ref, role in ((f.baseline, "baseline"), (f.trial, "trial set")):
        if ref is None:
            continue
        for seed, score in zip(ref.seeds, ref.scores, strict=False):
            rows.append(("fg", f.primary, "+".join(ref.aux), role, "", seed, f.main_metric,
                         score))
    for r in f.rows:
        label = r.cut.label
        for seed, score in zip(r.seeds, r.scores, strict=False):
            rows.append(("fg", f.primary, label, "cut", "", seed, f.main_metric, score))
        rows += [("fg", f.primary, label, "cut", "", "", q, x) for q, x in (
            (f"{f.main_metric}_mean", r.mean), (f"{f.main_metric}_std", r.std),
            ("fraction_kept", r.fraction), ("ci_low", r.ci_low), ("ci_high", r.ci_high),
            (r.cut.kind, r.cut.value))]
        for k in r.kept:
            rows += [("fg", f.primary, label, "cut", k.task, "", q, x) for q, x in (
                ("kept", k.kept), ("total", k.total), ("min_tau", k.min_tau))]
    return rows


def fg_csv(result: Any) -> str:
    """A GradTS-fg result in long format (:data:`LONG_COLUMNS`): per cut and seed the main
    metric, per cut its mean, s.d., fraction kept and interval against the baseline, per cut
    and auxiliary task the instances kept; the baseline and trial set's seed scores."""
    return _long_csv(_fg_rows(result))


def _compare_rows(res: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for c in res.primaries:
        p, metric = c.primary, c.main_metric
        for rk in c.rankings:
            rows += [("compare", p, "", rk.selector, "", "", q, x) for q, x in (
                ("ranking_s", rk.seconds), ("cost_s", rk.cost_s))]
            for i, order in enumerate(rk.orders):
                seed = res.seeds[i] if len(rk.orders) > 1 and i < len(res.seeds) else ""
                rows += [("compare", p, "", rk.selector, t, seed, "rank", n)
                         for n, t in enumerate(order, start=1)]
            rows += [("compare", p, "", rk.selector, t, "", "selector_score", x)
                     for t, x in rk.scores.items()]
        base = dict(zip(c.baseline.seeds, c.baseline.scores, strict=False))
        for r in (c.baseline, *([c.all_candidates] if c.all_candidates else []), *c.rows):
            role = {"primary alone": "baseline", "all candidates": "all"}.get(r.selector,
                                                                              r.selector)
            for aux, seed, score in zip(r.sets, r.seeds, r.scores, strict=False):
                name = "+".join(aux)
                rows.append(("compare", p, name, role, "", seed, metric, score))
                if r is not c.baseline and seed in base:
                    rows.append(("compare", p, name, role, "", seed, "gain",
                                 float(score) - float(base[seed])))
            label = "+".join(r.sets[0]) if len(set(r.sets)) == 1 else f"top-{r.k}"
            agg = [("k", r.k), (f"{metric}_mean", r.mean), (f"{metric}_std", r.std),
                   ("train_s", r.train_s)]
            for name, g in (("gain", r.gain), ("vs_random", r.vs_random)):
                if g is not None:
                    agg += [(name, g.diff), (f"{name}_low", g.low), (f"{name}_high", g.high),
                            (f"{name}_separable", int(g.separable))]
            rows += [("compare", p, label, role, "", "", q, x) for q, x in agg]
    for s in res.summary:
        agg = [("k", s.k), ("n_primaries", s.n_primaries), ("mean_gain", s.mean_gain),
               ("mean_gain_low", s.low), ("mean_gain_high", s.high),
               *((f"beats_{o}", n) for o, n in s.beats.items())]
        rows += [("compare", "", f"top-{s.k}", s.selector, "", "", q, x) for q, x in agg]
    return rows


def compare_csv(result: Any) -> str:
    """A ``gradts compare`` result in long format (:data:`LONG_COLUMNS`), stage ``compare``,
    role the selector (``baseline`` for the primary alone, ``all`` for all candidates):

    - per selector's ranking (set empty): ``rank`` of each candidate (``task``; with ``seed``
      where the order depends on it, as for random), ``selector_score`` (the selector's own
      score of the candidate), ``ranking_s`` and ``cost_s``;
    - per selector and seed (set = the auxiliary set trained with that seed): the main metric
      on the scoring split and ``gain`` (minus the primary alone with the same seed);
    - per selector and k (seed empty; set = the set, or ``top-<k>`` when the seeds drew
      different sets): ``k``, ``<metric>_mean``, ``<metric>_std``, ``train_s``, ``gain`` with
      ``gain_low``/``gain_high`` (the paired bootstrap interval) and ``gain_separable`` (1
      when it excludes 0), the same four for ``vs_random``;
    - the summary over several primaries (primary empty, set ``top-<k>``): ``k``,
      ``n_primaries``, ``mean_gain`` with its interval, ``beats_<selector>``.
    """
    return _long_csv(_compare_rows(result))


def report_csv(report: Any) -> str:
    """A whole report in long format: probes, correlations, trials, fg and costs."""
    rows: list[tuple[Any, ...]] = []
    for p in report.probes:
        rows += [("probe", "", "", "", p.task, "", q, x) for q, x in (
            ("instances", p.instances), ("dev_score", p.dev_score),
            ("train_loss", p.train_loss), ("seconds", p.seconds))]
    c = report.corr
    if c is not None:
        for p in c.tasks:
            for r in c.rankings.get(p, ()):
                rows += [("corr", p, "", "candidate", r.task, "", q, x) for q, x in (
                    (c.method, r.stat), ("pvalue", r.pvalue), ("rank", r.rank))]
    for t in report.trials:
        rows += _trial_rows(t)
    for f in report.fg:
        rows += _fg_rows(f)
    for cmp in report.compare:
        rows += _compare_rows(cmp)
    for cost in report.costs:
        rows += [("cost", "", cost.stage, "", "", "", q, x) for q, x in (
            ("runs", cost.runs), ("seconds", cost.seconds))]
    return _long_csv(rows)
