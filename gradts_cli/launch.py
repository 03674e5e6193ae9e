"""Several processes: ``--nproc N`` re-executes the command under ``torch.distributed.run``.

``gradts probe --nproc 2 ...`` (also on ``trial``, ``fg``, ``compare``) is the same as
``torchrun --standalone --nproc-per-node 2 -m gradts_cli probe ...`` (DESIGN.md §5): this
process becomes the launcher, its children run the command with torchrun's environment (RANK,
WORLD_SIZE, ...), and the launcher exits with the failing rank's exit code after printing that
rank's one-line error. Under any launch, only rank 0 prints messages, progress and results; a
failing rank prints its own error, naming the rank. Importing this module imports no torch
(the launcher imports it when it launches).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import output

if TYPE_CHECKING:
    from gradts_engine.distributed import World

ENV_ERRORS = "GRADTS_DIST_ERRORS"   # = gradts_engine.distributed.ENV_ERRORS (numpy-free import)

_argv: list[str] = []


def remember(argv: Sequence[str] | None) -> None:
    """Keep the command line (``main()`` calls this) so ``--nproc`` can re-execute it."""
    _argv[:] = list(sys.argv[1:] if argv is None else argv)


def world() -> World:
    """This process's rank and world from the environment (world size 1 when not launched)."""
    from gradts_engine.distributed import World, from_env

    try:
        return from_env()
    except Exception:  # a malformed environment is reported where the engine joins the run
        return World()


def is_main() -> bool:
    """Whether this process prints (rank 0, or the only process)."""
    return world().is_main


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def launcher_args(nproc: int, argv: Sequence[str]) -> list[str]:
    """The ``torch.distributed.run`` arguments that run ``gradts <argv>`` in ``nproc`` processes."""
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--module",
            "gradts_cli", *without_nproc(argv)]


def relaunch_if(nproc: int | None) -> None:
    """``--nproc N`` with N > 1: run this command in N processes, then exit with their code."""
    if nproc is None or nproc <= 1:
        return
    import typer

    from gradts_engine.errors import UsageError

    if world().distributed:
        raise UsageError("--nproc inside a torchrun launch",
                         hint="drop --nproc: torchrun already started the processes")
    raise typer.Exit(relaunch(nproc))


def relaunch(nproc: int) -> int:
    """Run the remembered command in ``nproc`` processes on this machine; the exit code."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if world().distributed:
        raise RuntimeError("relaunch() inside a launched process")  # the caller checks
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with tempfile.TemporaryDirectory(prefix="gradts-ranks-") as errors:
        os.environ[ENV_ERRORS] = errors
        try:
            run(parse_args(launcher_args(nproc, _argv)))
            return 0
        except ChildFailedError as e:
            return _report_failure(Path(errors), e)
        finally:
            os.environ.pop(ENV_ERRORS, None)


def _report_failure(errors: Path, exc: BaseException) -> int:
    records = []
    for p in errors.glob("rank-*.json"):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(p.read_text(encoding="utf-8")))
    if records:
        first = min(records, key=lambda r: r["time"])
        output.error_line(first["message"], first.get("hint"))
        return int(first["code"])
    failures = getattr(exc, "failures", {}) or {}
    rank, failure = min(failures.items()) if failures else (None, None)
    code = int(getattr(failure, "exitcode", 1) or 1)
    where = f"rank {rank}" if rank is not None else "a rank"
    output.error_line(f"{where} failed with exit code {code}", "see its output above")
    return code if code > 0 else 1


def error(message: str, hint: str | None, code: int, *, all_ranks: bool = False) -> None:
    """Show an error of this process: one line, the rank named when there are several.

    An error every rank raised alike (``all_ranks``) is shown by rank 0 only. Under
    ``--nproc`` the launcher shows it (this process records it in ``GRADTS_DIST_ERRORS``).
    """
    from gradts_engine.distributed import describe

    w = world()
    if not w.distributed:
        output.error_line(message, hint)
        return
    if all_ranks and not w.is_main:
        return
    text = message if all_ranks else f"{describe(w)}: {message}"
    folder = os.environ.get(ENV_ERRORS)
    if folder:
        record = {"rank": w.rank, "message": text, "hint": hint, "code": code,
                  "time": time.time()}
        path = Path(folder) / f"rank-{w.rank}.json"
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, path)
            return
    output.error_line(text, hint)


def peer_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that broke because another rank ended (it reports)."""
    if not world().distributed:
        return False
    dist_error = getattr(sys.modules.get("torch.distributed"), "DistError", None)
    return (dist_error is not None and isinstance(exc, dist_error)) or (
        isinstance(exc, RuntimeError) and any(
            s in str(exc) for s in ("Connection closed by peer", "Connection reset by peer",
                                    "Broken pipe")))
