"""Progress of long commands: the generic event display, the interrupt safe point, and the
record of finished units that the "interrupted" line reports.

Every progress callback handed to the engine goes through :func:`guarded`: it first calls
:func:`gradts_engine.interrupts.check` (so Ctrl-C stops the run at the next event, between
steps), then records finished units (:func:`finished_units`), then draws. Displays branch on
:class:`~gradts_engine.progress.Stage`, never on message text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gradts_engine.progress import Stage

from .. import output

if TYPE_CHECKING:
    from gradts_engine.progress import Progress

Callback = Callable[["Progress"], None]

# Units that count as finished for the interrupted line: the stage, and how it names the unit.
_FINISHED = {Stage.DONE: "task", Stage.CACHED: "task", Stage.TRIAL_RUN: "message",
             Stage.FG_RUN: "message", Stage.COMPARE_RUN: "message"}
_STARTED = {Stage.FINE_TUNE: "task", Stage.IMPORTANCE: "task", Stage.TRIAL_START: "message",
            Stage.FG_START: "message", Stage.COMPARE_START: "message", Stage.DEMO: "message"}
_record: dict[str, Any] = {"finished": [], "current": None, "unit": "unit"}


def begin(unit: str) -> None:
    """Start recording a command's units (``unit`` names them: task, trial run, ...)."""
    _record.update(finished=[], current=None, unit=unit)


def _note(event: Progress) -> None:
    stage = Stage(event.stage)
    if stage in _FINISHED:
        name = event.task if _FINISHED[stage] == "task" else event.message
        if name and name not in _record["finished"]:
            _record["finished"].append(name)
        if name == _record["current"]:
            _record["current"] = None
    elif stage in _STARTED:
        name = event.task if _STARTED[stage] == "task" else event.message
        if name and name not in _record["finished"] and name != "done":
            _record["current"] = name


def interrupted_message() -> str:
    """``interrupted: 2 tasks finished (a, b); c was not finished`` from what was recorded."""
    done: list[str] = _record["finished"]
    unit = _record["unit"]
    bits = []
    if done:
        names = ", ".join(done[:6]) + (", ..." if len(done) > 6 else "")
        bits.append(f"{len(done)} {unit}{'' if len(done) == 1 else 's'} finished ({names})")
    else:
        bits.append(f"no {unit} finished")
    if _record["current"]:
        bits.append(f"{_record['current']} was not finished (a rerun starts it again)")
    return "interrupted: " + "; ".join(bits)


def guarded(callback: Callback) -> Callback:
    """``callback`` behind the interrupt safe point and the record of finished units."""
    from gradts_engine import interrupts

    def on_event(event: Progress) -> None:
        interrupts.check()
        _note(event)
        callback(event)
    return on_event


@contextmanager
def running(display: Any) -> Iterator[Any]:
    """Run a Rich live display; on an error or Ctrl-C drop it (the error line says the rest),
    so that its last lines are not printed twice."""
    display.start()
    try:
        yield display
    except BaseException:
        live = getattr(display, "live", display)
        live.transient = True
        raise
    finally:
        display.stop()


def ask(question: str) -> str:
    """Prompt on stderr; Ctrl-C at the prompt stops at once (the safe-point handler that
    :func:`gradts_engine.interrupts.install` sets would wait for a step that never comes)."""
    import signal
    import threading

    from rich.prompt import Prompt

    if threading.current_thread() is not threading.main_thread():
        return Prompt.ask(question, console=output.err)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return Prompt.ask(question, console=output.err)
    finally:
        signal.signal(signal.SIGINT, previous)


def _metrics(event: Progress) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())


@contextmanager
def reporter(*, skip: tuple[Stage, ...] = ()) -> Iterator[Callback]:
    """A callback for engine progress events: Rich bars on a TTY, else sparse lines.
    Events of the ``skip`` stages are recorded (and checked for Ctrl-C) but not drawn."""
    if output.is_quiet():
        yield guarded(lambda event: None)
        return
    if output.err.is_terminal:
        bars: dict[tuple[str, str | None], Any] = {}
        with running(output.progress_display("{task.fields[metrics]}", transient=False,
                                             remaining=True)) as bar:
            def on_event(event: Progress) -> None:
                if event.stage in skip:
                    return
                key = (str(event.stage), event.task)
                desc = f"{event.stage}" + (f" [bold]{event.task}[/bold]" if event.task else "")
                if event.message:
                    desc += f" {event.message}"
                if key not in bars:
                    bars[key] = bar.add_task(desc, total=event.total, metrics=_metrics(event))
                bar.update(bars[key], completed=event.done, total=event.total,
                           description=desc, metrics=_metrics(event))
            yield guarded(on_event)
        return
    last: dict[tuple[str, str | None], float] = {}

    def on_plain(event: Progress) -> None:
        if event.stage in skip:
            return
        key = (str(event.stage), event.task)
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if not finished and now - last.get(key, 0.0) < 10.0:
            return
        last[key] = now
        where = f"{event.stage}" + (f" {event.task}" if event.task else "")
        count = f" {event.done}/{event.total}" if event.total else ""
        output.err.print(f"{where}{count} {event.message} {_metrics(event)}".rstrip())
    yield guarded(on_plain)
