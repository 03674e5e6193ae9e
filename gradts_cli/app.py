"""The ``gradts`` Typer app: global options, one module per command, and ``main()``.

``main()`` is the only place errors are caught: each engine error class maps to an exit code
and a one-line message (:data:`EXIT_CODES`); ``GRADTS_DEBUG=1`` shows the traceback instead.
Importing this module must not import torch, transformers or datasets (a test asserts it), so
``gradts --help`` and tab completion stay fast.

Adding a command: write ``gradts_cli/commands/<name>.py`` with ``register(app)`` that adds a
command or a sub-app, parses and checks flags, calls ONE engine function and hands the result
to :mod:`gradts_cli.output`; then add its name to :data:`COMMANDS`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException  # typer 0.29 vendors click
from typer.core import TyperArgument, TyperOption

from gradts_engine import __version__
from gradts_engine import errors as E

from . import launch, output
from .options import State

COMMANDS = ("data", "probe", "corr", "trial", "fg", "compare", "report", "demo", "config",
            "cache")

# Exit codes, most specific class first (looked up along the exception's MRO).
EXIT_CODES: dict[type[BaseException], int] = {
    E.UsageError: 2,
    E.ConfigError: 2,
    E.UnknownTaskError: 3,
    E.DuplicateTaskError: 3,
    E.TaskError: 3,
    E.DataError: 4,
    E.OfflineError: 5,
    E.UnsupportedArchitectureError: 6,
    E.ModelError: 6,
    E.DeviceError: 7,
    E.TrainingError: 8,
    E.MissingResultError: 9,
    E.IncompatibleResultsError: 9,
    E.CorruptEntryError: 10,
    E.StoreError: 10,
    E.MissingDependencyError: 1,   # an optional extra (plot, log) is not installed
    E.GradtsError: 1,
}
EXIT_INTERRUPTED = 130

HELP = """Choose auxiliary tasks for multi-task learning from attention-head gradients (GradTS).

probe -> corr -> trial -> fg -> report; results are cached. Global options may also follow
the command (gradts report --home DIR).

[dim]Examples:[/dim]

  gradts demo

  gradts probe --model bert-base-cased --suite glue

  gradts corr --model bert-base-cased --suite glue --primary rte
"""

app = typer.Typer(
    name="gradts",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        output.print_text(f"gradts {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(
        "--home", envvar="GRADTS_HOME", help="Store (cache) root.",
        show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Project config TOML (default: ./gradts.toml).",
        show_default=False)] = None,
    tasks_file: Annotated[list[Path] | None, typer.Option(
        "--tasks-file", help="Extra task declarations (TOML; repeatable).",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only data and errors.")] = False,
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    output.set_quiet(quiet or not launch.is_main())  # under torchrun only rank 0 prints
    ctx.obj = State(home=home, config_file=config, tasks_files=list(tasks_file or []), quiet=quiet)


# -- help: value names instead of Python types ------------------------------------------------
def _display_type(self: TyperOption | TyperArgument, ctx: object) -> str | None:
    """The value column of --help: nothing for flags, the metavar when one is declared, the
    choices of a closed set (``gate|qkv|legacy``), else a short upper-case name."""
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    if self.metavar:
        return self.metavar
    desc = self.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return "PATH"
    base = self.bare_type().removeprefix("list[").removesuffix("]")
    return {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH"}.get(base, base.upper())


for _cls in (TyperOption, TyperArgument):
    _cls.display_type_rich = _display_type  # type: ignore[method-assign,assignment]
    _cls._get_number_range_help_str = lambda self: None  # type: ignore[method-assign]

# Global options typed after the command (``gradts report --home D``) are moved before it.
GLOBAL_VALUED = ("--home", "--config", "--tasks-file")
GLOBAL_FLAGS = ("--quiet", "-q")


def hoist_globals(argv: list[str]) -> list[str]:
    """``[cmd, ..., --home, D, ...]`` -> ``[--home, D, cmd, ...]`` (as git and hf accept
    ``-C``/``--token`` where users type them); nothing after ``--`` moves."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_VALUED else 1
    if i >= len(argv):
        return argv
    head, rest, moved = list(argv[:i]), [], []
    j = i
    while j < len(argv):
        a = argv[j]
        if a == "--":
            rest += argv[j:]
            break
        if a in GLOBAL_VALUED and j + 1 < len(argv):
            moved += [a, argv[j + 1]]
            j += 2
            continue
        if a in GLOBAL_FLAGS or any(a.startswith(g + "=") for g in GLOBAL_VALUED):
            moved.append(a)
        else:
            rest.append(a)
        j += 1
    return head + moved + rest


def _mount() -> None:
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gradts_cli.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"gradts_cli.commands.{name}":
                continue  # not built yet: no placeholder commands
            raise
        module.register(app)


_mount()


def exit_code_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


CHOICE_NAMES = {"--measure": "importance measure", "--method": "correlation method"}


def _choice_error(message: str) -> tuple[str, str] | None:
    """Click's "Invalid value for '--method': 'kendal' is not one of ..." as our one line:
    ``unknown correlation method 'kendal' — did you mean 'kendall'? (choose --method from ...)``."""
    import re

    m = re.search(r"'(--[a-z-]+)'.*?: '([^']*)' is not one of (.*)", message)
    if m is None:
        return None
    flag, given, choices = m.group(1), m.group(2), re.findall(r"'([^']*)'", m.group(3))
    what = CHOICE_NAMES.get(flag, flag[2:].replace("-", " "))
    close = E.did_you_mean(given, choices)
    return (f"unknown {what} '{given}'",
            (f"{close} " if close else "") + f"(choose {flag} from {', '.join(choices)})")


def _interrupted() -> int:
    from .views.progress import interrupted_message

    output.error_line(interrupted_message(), "finished work is cached: run the same command "
                      "again to resume")
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, map errors to one line and an exit code.

    Ctrl-C exits 130 with one line saying what finished (the first SIGINT stops at the next
    safe point, see :mod:`gradts_engine.interrupts`); a closed stdout exits 0.
    """
    from gradts_engine import interrupts

    debug = os.environ.get("GRADTS_DEBUG", "") not in ("", "0")
    launch.remember(argv)
    interrupts.install()
    interrupts.reset()
    args = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    try:
        # typer returns (not raises) Exit codes in this mode, 130 for a KeyboardInterrupt
        rv = app(args=args, prog_name="gradts", standalone_mode=False)
    except E.GradtsError as e:
        if debug:
            raise
        launch.error(e.message, e.hint, exit_code_for(e),
                     all_ranks=bool(e.details.get("all_ranks")))
        return exit_code_for(e)
    except typer.Exit as e:
        rv = int(getattr(e, "exit_code", 0) or 0)
    except ClickException as e:
        if debug:
            raise
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "gradts"
        message = " ".join(e.format_message().replace("Value error, ", "").split())
        output.error_line(*(_choice_error(message) or (message, f"see `{where} --help`")))
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except (output.PipeClosed, BrokenPipeError):
        return 0
    except Exception as e:
        if launch.peer_failed(e) and not debug:  # another rank failed and reports it
            return 1
        raise
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == EXIT_INTERRUPTED:
        return _interrupted()
    return code


def run() -> None:
    """The console script (``gradts``, ``python -m gradts_cli``): :func:`main`, then exit.

    Once main() has returned, SIGINT is ignored: the interpreter's shutdown (which can take
    seconds with torch loaded) restores the default handler, and a Ctrl-C landing there would
    kill the process with signal 2 instead of letting the finished command exit cleanly.
    """
    import signal

    from gradts_engine import distributed

    code = main()
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    distributed.finish(ok=code == 0)       # under torchrun: all ranks leave together
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
