"""``gradts compare``: the selectors' rankings and agreement, the comparison table per primary,
the words on noise, the multi-primary summary, and plain progress lines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from gradts_engine.progress import Stage

from .. import output
from . import progress as live
from .widgets import (
    DASH,
    Fit,
    corr_cell,
    delta,
    dim,
    duration,
    interval,
    plural,
    score,
    table,
)


def _gain(g: Any) -> list[Any]:
    if g is None:
        return [Text(DASH, style="dim"), Text(DASH, style="dim")]
    cell = delta(g.diff)
    if not g.separable:
        cell = Text(f"{g.diff:+.4f}", style="dim")
    return [cell, interval(g.low, g.high) + ("" if g.separable else " ~")]


def rankings(c: Any) -> list[RenderableType]:
    rows = [[r.selector, ", ".join(r.order), duration(r.cost_s), dim(r.cost)] for r in c.rankings]
    items: list[RenderableType] = [table(
        f"{c.primary}: each selector's ranking of {plural(len(c.candidates), 'candidate')}",
        ["selector", ("ranking (best first)", "left"), ("cost", "right"), "what it cost"], rows)]
    names = [r.selector for r in c.rankings]
    if len(names) > 1:
        items.append(table("Kendall tau between the selectors' rankings", ["", *names],
                           [[a, *[corr_cell(c.agreement[a][b]) for b in names]] for a in names]))
    return items


def comparison(c: Any, n_seeds: int) -> RenderableType:
    """The comparison table: one column per field where the width allows, else a compact
    table (selector over its set, the gain over its 90% interval) that fits 80 columns."""
    sets = [c.baseline, *([c.all_candidates] if c.all_candidates else []), *c.rows]
    title = (f"{c.primary}: {c.main_metric} on {c.scored_on_text}, mean over "
             f"{plural(n_seeds, 'seed')}")
    caption = ("dim gains and ~: within the noise (the paired bootstrap interval over "
               "evaluation examples and seeds includes 0)")
    wide = table(title, ["selector", ("k", "right"), ("set", "left"), ("score", "right"),
                         ("gain vs alone", "right"), ("90% interval", "right"),
                         ("vs random", "right"), ("train", "right")],
                 [[r.selector, _k(r), r.label, score(r.mean, r.std, n_seeds), *_gain(r.gain),
                   *_gain(r.vs_random)[:1], duration(r.train_s)] for r in sets],
                 caption=caption)
    compact = table(title, [("selector, set", "left"), ("score", "right"),
                            ("gain vs alone", "right"), ("vs random", "right"),
                            ("train", "right")],
                    [[Text(r.selector + ("" if _k(r) == DASH else f" k={_k(r)}"), style="bold")
                      + Text(f"\n{r.label}"),
                      score(r.mean, r.std, n_seeds), Text("\n").join(
                          x if isinstance(x, Text) else Text(x) for x in _gain(r.gain)),
                      _gain(r.vs_random)[0], duration(r.train_s)] for r in sets],
                    caption=caption)
    return Fit(wide, compact)


def _k(r: Any) -> str:
    return DASH if r.selector == "primary alone" else str(r.k)


def summary(res: Any) -> RenderableType:
    others = list(res.selectors)
    rows = [[s.selector, str(s.k), f"{s.mean_gain:+.4f}", interval(s.low, s.high),
             *[str(s.beats[o]) if o in s.beats else DASH for o in others]] for s in res.summary]
    return table(f"Over {plural(len(res.primaries), 'primary', 'primaries')}: mean gain over the "
                 "primary alone, and the primaries where each selector is separably better "
                 "than another", ["selector", ("k", "right"), ("mean gain", "right"),
                                  ("90% interval", "right"), *[f"beats {o}" for o in others]],
                 rows)


def renderables(res: Any) -> list[RenderableType]:
    items: list[RenderableType] = []
    for c in res.primaries:
        items += rankings(c)
        items.append(comparison(c, len(res.seeds)))
        items += [Text(f"note: {n}", style="yellow") for n in c.notes]
    if res.summary:
        items.append(summary(res))
    items += [Text(w) for w in res.words]
    return items


def footer(res: Any) -> str:
    return (f"[dim]{plural(res.trained, 'run')} trained now (every finished run is reused on a "
            f"rerun), in {duration(res.seconds)}; model {res.model_name}; stored: {res.key}"
            "[/dim]")


@contextmanager
def progress(primary: str) -> Iterator[live.Callback]:
    """One line per ranking and per finished run (TTY or not); MTL steps are not drawn."""
    live.begin("comparison run")
    if output.is_quiet():
        yield live.guarded(lambda event: None)
        return

    def on_event(event: Any) -> None:
        m = event.metrics
        if event.stage == Stage.SELECT:
            output.err.print(f"[dim]rank[/dim] {event.task}: {event.message}")
        elif event.stage == Stage.COMPARE_RUN:
            tag = " (cached)" if m.get("cached") else ""
            output.err.print(f"{event.message}: {m.get('score', float('nan')):.4f}{tag}")
        elif event.stage == Stage.NOTE:
            output.warn(event.message)

    yield live.guarded(on_event)
