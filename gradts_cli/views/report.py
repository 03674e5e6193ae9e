"""``gradts report``: composes the stage views (probe summary, correlation matrix and
rankings, trials, fg runs) with the findings, the cost per stage and the next steps; and saves
the same view as SVG or HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from . import compare as compare_view
from . import corr as corr_view
from . import fg as fg_view
from . import probe as probe_view
from . import trial as trial_view
from .widgets import duration, plural, table


def _header(rep: Any) -> list[RenderableType]:
    from rich.panel import Panel

    title = Text("gradts report", style="bold")
    title.append(f" — {rep.model_name}", style="bold cyan")
    if rep.primary:
        title.append(f" — primary {rep.primary}", style="bold")
    what = Text()
    for i, f in enumerate(rep.findings):
        what.append(("\n" if i else "") + "• ", style="cyan")
        what.append(f)
    return [title,
            Text(f"store {rep.store_root}; {rep.measure} measure, {rep.estimator} estimator, "
                 f"{rep.method} tau", style="dim"),
            Panel(what, title="what was chosen and why", title_align="left",
                  border_style="cyan")]


def _correlations(rep: Any, matrix: bool) -> list[RenderableType]:
    res = rep.corr
    if res is None:
        return [Text(rep.corr_note or "no correlations", style="yellow")]
    items: list[RenderableType] = [corr_view.matrix_table(res)] if matrix else []
    if rep.primary:
        items += corr_view.ranking_table(res, rep.primary, bootstrap=False)
    else:
        items.append(corr_view.top_candidates_table(res))
    return items


def _costs(rep: Any) -> list[RenderableType]:
    if not rep.costs:
        return []
    total = sum(c.seconds for c in rep.costs)
    return [table("cost per stage (compute recorded in the store)",
                  ["stage", "runs", "device time", "wall", "device", "what"],
                  [[c.stage, str(c.runs), duration(c.seconds),
                    "–" if c.wall_s is None else duration(c.wall_s), c.device, c.detail]
                   for c in rep.costs],
                  caption=f"total {duration(total)} of device time (summed over processes)")]


def renderables(rep: Any, *, matrix: bool = True,
                n_classes: Mapping[str, int] | None = None) -> list[RenderableType]:
    """The ``gradts report`` view as Rich renderables (printed, or recorded for SVG/HTML)."""
    classes = dict(n_classes or {})
    items = _header(rep)
    lines = probe_view.lines_from_report(rep.probes, classes)
    items.append(probe_view.probe_table(lines, f"probes ({plural(len(lines), 'task')})",
                                        primary=rep.primary, entries=False))
    items += _correlations(rep, matrix)
    for s in rep.trials:
        items += trial_view.trials_table(s, n_classes=classes.get(s.primary),
                                         cached_column=False)
        items += trial_view.verdict_lines(s)
    for f in rep.fg:
        items.append(fg_view.runs_table(f, n_classes=classes.get(f.primary),
                                        cached_column=False))
    for c in getattr(rep, "compare", ()):
        for pc in c.primaries:
            items.append(compare_view.comparison(pc, len(c.seeds)))
        if c.summary:
            items.append(compare_view.summary(c))
    items += _costs(rep)
    items += [Text(f"note: {n}", style="yellow") for n in rep.notes]
    if rep.next_steps:
        nxt = Text("next: ", style="bold")
        nxt.append("   ".join(rep.next_steps), style="cyan")
        items.append(nxt)
    return items


def export(items: Sequence[Any], *, svg: Any = None, html: Any = None,
           title: str = "gradts report", width: int = 110) -> list[str]:
    """Record ``items`` on a Rich recording console and write SVG and/or HTML atomically."""
    import io

    from gradts_engine.store import atomic_write_text

    rec = Console(record=True, width=width, file=io.StringIO(), force_terminal=True,
                  color_system="truecolor", highlight=False)
    for item in items:
        rec.print(item)
    written = []
    if svg is not None:
        atomic_write_text(svg, rec.export_svg(title=title, clear=False), what="--svg")
        written.append(str(svg))
    if html is not None:
        atomic_write_text(html, rec.export_html(clear=False), what="--html")
        written.append(str(html))
    return written
