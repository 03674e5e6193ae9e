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

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException  # typer 0.29 vendors click

from gradts_engine import __version__
from gradts_engine import errors as E

from . import output
from .options import State

COMMANDS = ("data", "probe", "corr", "trial", "fg", "report", "demo", "config", "cache")

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
    E.GradtsError: 1,
}
EXIT_INTERRUPTED = 130

HELP = """GradTS: choose auxiliary tasks for multi-task learning from attention-head gradients.

Pipeline: [bold]probe[/bold] each task (fine-tune, measure head importance) ->
[bold]corr[/bold] (rank candidates by Kendall tau) -> [bold]trial[/bold] (GradTS-trial) ->
[bold]fg[/bold] (GradTS-fg, instance selection) -> [bold]report[/bold]. Results are cached.

[dim]Examples:[/dim]

  gradts demo                                  [dim]# the whole pipeline, offline[/dim]

  gradts data list

  gradts probe --model bert-base-cased --suite glue

  gradts corr --model bert-base-cased --suite glue --primary rte

  gradts trial --model bert-base-cased --primary rte --suite glue
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
        "--home", envvar="GRADTS_HOME", help="Store (cache) root. Env: GRADTS_HOME.",
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
    output.set_quiet(quiet)
    ctx.obj = State(home=home, config_file=config, tasks_files=list(tasks_file or []), quiet=quiet)


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
    interrupts.install()
    interrupts.reset()
    try:
        # typer returns (not raises) Exit codes in this mode, 130 for a KeyboardInterrupt
        rv = app(args=argv, prog_name="gradts", standalone_mode=False)
    except E.GradtsError as e:
        if debug:
            raise
        output.error_line(e.message, e.hint)
        return exit_code_for(e)
    except typer.Exit as e:
        rv = int(getattr(e, "exit_code", 0) or 0)
    except ClickException as e:
        if debug:
            raise
        e.show(file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except (output.PipeClosed, BrokenPipeError):
        return 0
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == EXIT_INTERRUPTED:
        return _interrupted()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
