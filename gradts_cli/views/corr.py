"""``gradts corr``: the task x task matrix, the candidate rankings (with bootstrap intervals),
the instance level and the heatmaps. ``report`` reuses the matrix and ranking tables."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.text import Text

from gradts_engine.signal import FG_THRESHOLD

from .widgets import (
    SYMBOL,
    Col,
    corr_cell,
    dim,
    heatmap,
    interval,
    pct,
    plural,
    pvalue_text,
    sparkline,
    table,
)


def symbol(method: str) -> str:
    return SYMBOL.get(str(method), str(method))


def square_table(res: Any, title: str, cell: Any, values: Any) -> RenderableType:
    """A task x task table of ``values`` (the diagonal dotted), tasks numbered."""
    n = len(res.tasks)
    cols = [Col("#", "right"), Col("task", wrap=True), *[Col(str(j + 1), "right")
                                                          for j in range(n)]]
    rows = [[dim(str(i + 1)), name,
             *[dim("·") if i == j else cell(float(values[i, j])) for j in range(n)]]
            for i, name in enumerate(res.tasks)]
    return table(title, cols, rows)


def matrix_table(res: Any, where: str | None = None) -> RenderableType:
    sym = symbol(res.method)
    title = f"{res.method} {sym} between tasks" + (f" ({where})" if where else "")
    return square_table(res, title, corr_cell, res.stats)


def ranking_table(res: Any, primary: str, *, bootstrap: bool = True) -> list[RenderableType]:
    """The candidates for ``primary``, highest statistic first; with the bootstrap's interval
    and rank stability when it was run (and ``bootstrap`` is on)."""
    sym = symbol(res.method)
    boot: Any = res.bootstrap if bootstrap else None
    cols: list[Col | str] = [Col("rank", "right"), Col("candidate", wrap=True),
                             Col(sym, "right"), Col("p", "right")]
    brow = {r.task: r for r in boot.rows.get(primary, ())} if boot is not None else {}
    same = boot is not None and res.estimator == boot.estimator
    if brow:
        level = f"{boot.level:.0%}"
        if same:
            cols += [f"{level} interval", Col("kept", "right")]
        else:
            e = boot.estimator
            cols += [Col(f"{e} {sym}", "right"), Col(f"{e} rank", "right"), f"{level} interval",
                     Col("kept", "right")]
    rows = []
    for c in res.rankings[primary]:
        row: list[Any] = [str(c.rank), Text(c.task, style="bold" if c.rank == 1 else ""),
                          corr_cell(c.stat), pvalue_text(c.pvalue)]
        b = brow.get(c.task)
        if brow and same:
            row += [interval(c.ci_low, c.ci_high), pct(c.rank_stability)]
        elif brow:
            row += ([corr_cell(b.stat), str(b.rank), interval(b.ci_low, b.ci_high),
                     pct(b.rank_stability)] if b else ["–"] * 4)
        rows.append(row)
    items: list[RenderableType] = [table(f"candidates for {primary} (highest {sym} first)",
                                         cols, rows)]
    if brow:
        items.append(dim(
            f"  bootstrap: {boot.n_boot} resamples of every task's instances (seed {boot.seed});"
            f" interval = {boot.level:.0%} percentile interval of {sym}; kept = share of "
            f"resamples in which the candidate keeps its {boot.estimator} rank"))
        if boot.note:
            items.append(Text(f"  note: {boot.note}", style="yellow"))
    return items


def top_candidates_table(res: Any, k: int = 3) -> RenderableType:
    """Each task's top-``k`` candidates in one table (the report without a primary)."""
    sym = symbol(res.method)
    rows = []
    for t in res.tasks:
        rk = res.rankings[t][:k]
        rows.append([t, *[Text(f"{c.task} ", style="bold" if i == 0 else "") + corr_cell(c.stat)
                          for i, c in enumerate(rk)], *[""] * (k - len(rk))])
    ordinal = ["1st", "2nd", "3rd"] + [f"{i}th" for i in range(4, k + 1)]
    return table(f"top candidates per task ({sym})", ["task", *ordinal[:k]], rows)


def instance_table(res: Any) -> list[RenderableType]:
    sym = symbol(res.method)
    rows = []
    thr: list[float] = [0.5, FG_THRESHOLD, 0.7]
    for r in res.instances:
        label = Text(r.task) + (dim(" (own)") if r.is_primary else Text(""))
        s = r.summary
        if s is None:
            rows.append([label, "–", "–", "–", "–", "–", "–",
                         Text(r.note or "no instances", style="yellow")])
            continue
        thr = list(s.frac_above)
        rows.append([label, str(s.n), corr_cell(s.mean), corr_cell(s.median),
                     *[pct(v) for v in s.frac_above.values()],
                     Text(sparkline(s.hist_counts), style="cyan")])
    cols: list[Col | str] = [Col("task", wrap=True), Col("n", "right"), Col("mean", "right"),
            Col("median", "right"), *[Col(f">{t:g}", "right") for t in thr],
            f"{sym} from -1 to +1"]
    return [table(f"instance level: {res.primary}'s {res.estimator} matrix against each "
                  f"instance's ({sym})", cols, rows),
            dim(f"  GradTS-fg keeps the instances above a threshold ({FG_THRESHOLD:g} in the "
                "original); (own) = the primary's own instances, for reference")]


def renderables(res: Any, *, pvalues: bool = False, heatmaps: bool = False
                ) -> list[RenderableType]:
    """``gradts corr``: the matrix, p-values, rankings, instance level and heatmaps."""
    sym = symbol(res.method)
    where = f"{res.model_name}, measure {res.measure}, {res.estimator} estimator"
    items: list[RenderableType] = [matrix_table(res, where)]
    if pvalues:
        items.append(square_table(res, f"two-sided p-values of {sym}", pvalue_text,
                                  res.pvalues))
    for p in res.primaries:
        items += ranking_table(res, p)
    if res.instances is not None:
        items += instance_table(res)
    if heatmaps:
        items.append(Text(f"head importance, {res.estimator} estimator (rows: layers, "
                          "columns: heads)", style="bold"))
        items += [heatmap(res.matrices[t], t) for t in res.tasks]
    return items


def footer(res: Any) -> str:
    return (f"[dim]{plural(len(res.tasks), 'task')} in {res.elapsed_s:.2f} s (read from the "
            "store; nothing trained)[/dim]")
