"""``gradts demo``: the report, the planted-sibling check (saying which tasks were never
learned), the stage times and the caveats; and the live progress, one bar per stage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from gradts_engine.progress import Stage

from .. import output
from . import progress as live
from . import report as report_view
from .widgets import at_chance, corr_cell, dim, duration, opt, table


def _unlearned(res: Any) -> list[Any]:
    return [r for r in res.siblings
            if at_chance("accuracy", r.dev_score, n=res.settings.dev_size, n_classes=2)]


def recovered_line(res: Any) -> Text:
    """``8 of 8 planted siblings ranked first``, naming the tasks the probe never learned."""
    n = len(res.siblings)
    style = "bold green" if res.recovered >= n - 1 else "bold yellow"
    text = Text(f"{res.recovered} of {n} planted siblings ranked first", style=style)
    unlearned = _unlearned(res)
    if unlearned:
        counted = [r for r in unlearned if r.ok]
        names = ", ".join(f"{r.task} (dev {r.dev_score:.2f})" for r in unlearned)
        text.append(f"; never learned by the probe: {names}", style="yellow")
        if counted:
            text.append(f" — {len(counted)} of the {res.recovered} count tasks at chance level, "
                        "recovered from shared sentence frames rather than a learned skill",
                        style="yellow")
    return text


def siblings_table(res: Any) -> RenderableType:
    rows = []
    for r in res.siblings:
        mark = Text("✓", style="bold green") if r.ok else Text("✗", style="bold red")
        chance = at_chance("accuracy", r.dev_score, n=res.settings.dev_size, n_classes=2)
        rows.append([r.task, r.sibling, Text(r.top, style="green" if r.ok else "red"),
                     corr_cell(r.tau_sibling), corr_cell(r.tau_best_other),
                     Text(opt(r.dev_score, ".2f"), style="yellow" if chance else ""), mark])
    return table("planted siblings: is each task's sibling its top-ranked candidate?",
                 ["task", "sibling", "top-ranked", ("τ sib", "right"), ("τ other", "right"),
                  ("dev", "right"), ("", "center")], rows,
                 caption=f"{res.corr.method} τ between {res.corr.estimator} head-importance "
                         "matrices; sibling = the planted one; τ other = the best non-sibling's;"
                         " dev = the probe's dev accuracy (yellow: at chance, not learned); "
                         f"probe seed {res.settings.seed}")


def renderables(res: Any) -> list[RenderableType]:
    items = report_view.renderables(res.report)
    items += [siblings_table(res), recovered_line(res)]
    srows = [[s.stage, dim("skipped") if s.skipped else duration(s.seconds), s.detail]
             for s in res.stages]
    items.append(table("demo stages", ["stage", ("time", "right"), "what"], srows,
                       caption=f"total {duration(res.total_s)}"))
    items += [Text(f"caveat: {c}", style="yellow") for c in res.caveats]
    items.append(Text(f"explore: gradts --home {res.store_root} report --model {res.model} "
                      f"--primary {res.primary}", style="cyan"))
    return items


# -- progress ---------------------------------------------------------------------------------
def _status(event: Any) -> str | None:
    """A one-line status for an inner event (None: nothing to show)."""
    m = event.metrics
    loss = f" loss {m['loss']:.3f}" if "loss" in m else ""
    if event.stage == Stage.FINE_TUNE:
        return f"{event.task}: fine-tune {event.done}/{event.total}{loss}"
    if event.stage == Stage.IMPORTANCE:
        return f"{event.task}: importance pass {event.done}/{event.total}"
    if event.stage == Stage.DEV:
        return f"{event.task}: dev"
    if event.stage in (Stage.TRIAL_START, Stage.FG_START):
        return event.message
    if event.stage == Stage.MTL:
        return f"{event.message or event.task}: step {event.done}/{event.total}{loss}"
    return None


def _finished(event: Any) -> str | None:
    """A line worth keeping (a task probed, a trial run scored)."""
    m = event.metrics
    if event.stage == Stage.DONE:
        return f"  probed {event.task} in {duration(m.get('seconds', 0.0))}"
    if event.stage == Stage.CACHED:
        return f"  {event.task}: from the cache"
    if event.stage in (Stage.TRIAL_RUN, Stage.FG_RUN):
        score = [v for k, v in m.items() if k not in ("epoch", "cached", "seed")]
        tag = " (cached)" if m.get("cached") else ""
        return f"  {event.message}: {score[0]:.4f}{tag}" if score else f"  {event.message}{tag}"
    return None


_COUNTED = (Stage.DONE, Stage.CACHED, Stage.TRIAL_RUN, Stage.FG_RUN, Stage.DATA)


@contextmanager
def progress() -> Iterator[live.Callback]:
    """One bar per stage on a TTY (current task and step in its description; a stage that
    ends shows as complete), a line per stage, task and trial run otherwise."""
    live.begin("demo stage")
    if output.is_quiet():
        yield live.guarded(lambda event: None)
        return
    state: dict[str, Any] = {"stage": None, "done": 0, "t0": time.monotonic()}
    if not output.err.is_terminal:
        def on_plain(event: Any) -> None:
            if event.stage == Stage.DEMO:
                if event.message != "done":
                    output.err.print(f"[bold]▶ {event.message}[/bold] [dim]({event.done + 1}/"
                                     f"{event.total}, {time.monotonic() - state['t0']:.0f} s)"
                                     "[/dim]")
            elif event.stage in (Stage.DEMO_NOTE, Stage.NOTE):
                output.err.print(f"  [dim]{event.message}[/dim]")
            elif (line := _finished(event)) is not None:
                output.err.print(line)
        yield live.guarded(on_plain)
        return

    with live.running(output.progress_display("[dim]{task.fields[status]}",
                                              transient=False)) as bar:
        ids: dict[str, Any] = {}

        def close(name: str | None) -> None:
            """A finished stage shows what it counted as complete (a cached stage: 1/1)."""
            if name in ids:
                total = max(state["done"], 1)
                bar.update(ids[name], total=total, completed=total, status="done")
                bar.stop_task(ids[name])

        def on_event(event: Any) -> None:
            if event.stage == Stage.DEMO:
                close(state["stage"])
                if event.message == "done":
                    return
                units = event.metrics.get("units")
                state.update(stage=event.message, done=0)
                ids[event.message] = bar.add_task(f"[bold]{event.message}[/bold]",
                                                  total=int(units) if units else None,
                                                  status="")
                return
            sid = ids.get(state["stage"])
            if sid is None:
                return
            if event.stage in (Stage.DEMO_NOTE, Stage.NOTE):
                bar.console.print(f"  [dim]{event.message}[/dim]")
                return
            if (line := _finished(event)) is not None:
                bar.console.print(line)
            if event.stage in _COUNTED:
                state["done"] += 1
                task = bar.tasks[[t.id for t in bar.tasks].index(sid)]
                bar.update(sid, completed=min(state["done"], int(task.total or state["done"])))
            if (status := _status(event)) is not None:
                bar.update(sid, status=status)
        yield live.guarded(on_event)
