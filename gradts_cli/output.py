"""The sink: the only place that writes to the terminal (DESIGN.md §3, §6).

Data (tables, JSON) go to stdout through :data:`out`; messages, warnings, errors and progress go
to stderr through :data:`err`. Progress bars are drawn only when stderr is a terminal;
``--quiet`` silences messages and progress (never data or errors). ``--json`` output is one
JSON document on stdout, always parseable. What to show is decided by :mod:`gradts_cli.views`.

A closed stdout (``gradts report | head -1``) is not an error: the first failed write raises
:class:`PipeClosed`, which ``main()`` turns into exit status 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text


class PipeClosed(Exception):
    """The reader of stdout went away (a closed pipe is not an error: exit 0)."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


class _DataConsole(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence_stdout()
        raise PipeClosed


out = _DataConsole(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)
_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def is_interactive() -> bool:
    """Whether we may ask the user (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and err.is_terminal


# -- messages (stderr) ------------------------------------------------------------------------
def info(message: str | Text) -> None:
    if not _state["quiet"]:
        err.print(message)


def success(message: str) -> None:
    if not _state["quiet"]:
        err.print(f"[green]✓[/green] {message}")


def warn(message: str) -> None:
    err.print(Text("warning: ", style="yellow") + Text(message))


def error_line(message: str, hint: str | None = None) -> None:
    """One line: ``error: <what is wrong> — <what to do>`` (no traceback)."""
    text = Text("error: ", style="bold red")
    text.append(message)
    if hint:
        text.append(" — ", style="dim")
        text.append(hint, style="cyan")
    err.print(text, soft_wrap=True)


# -- data (stdout) ----------------------------------------------------------------------------
def show(*items: RenderableType | str) -> None:
    """Print renderables (tables, texts) on stdout."""
    for item in items:
        out.print(item)


def print_text(text: str | Text) -> None:
    out.print(text)


def print_json(obj: Any) -> None:
    """One JSON document on stdout (NaN becomes null, so the output is strict JSON)."""
    from gradts_engine.serialize import to_jsonable

    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise PipeClosed from None


# -- progress (stderr) ------------------------------------------------------------------------
def progress_display(fields: str, *, transient: bool, remaining: bool = False) -> Any:
    """The Rich progress display every live view uses: spinner, description, bar, count,
    elapsed (and remaining) time, then ``fields`` (a column template of the task's fields)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return RichProgress(*columns, TextColumn(fields), console=err, transient=transient)
