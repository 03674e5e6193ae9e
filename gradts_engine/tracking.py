"""Experiment tracking, opt-in: where the one training core's curves go (DESIGN.md §2).

``gradts <command> --log tensorboard|wandb [--log-dir DIR]`` wraps the command's engine call in
:func:`tracking`; every :class:`training.Trainer` built inside hands :class:`Tracking` to
Accelerate's trackers (``Accelerator(log_with=..., project_dir=...)``, ``init_trackers``,
``log``, ``end_training``). A tracker whose package is missing is one error before any work.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingDependencyError, UsageError

__all__ = ["TRACKERS", "TRACKER_HINTS", "Tracking", "check_tracking", "current", "run_name",
           "tracking"]

TRACKERS = ("tensorboard", "wandb")
_TRACKER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
TRACKER_HINTS = {"tensorboard": "pip install 'gradts[log]' (or pip install tensorboard)",
                 "wandb": "pip install wandb (and WANDB_MODE=offline to log without an account)"}


@dataclass(frozen=True)
class Tracking:
    """Where training curves go: ``kind`` (tensorboard | wandb) under ``log_dir``."""

    kind: str
    log_dir: Path
    project: str = "gradts"      # the wandb project


_TRACKING: ContextVar[Tracking | None] = ContextVar("gradts_tracking", default=None)


def check_tracking(kind: str, log_dir: str | os.PathLike[str] | None = None) -> Tracking:
    """A :class:`Tracking` for ``kind``, or one error: an unknown name, or its package missing
    (checked without importing it, so that an error comes before any work)."""
    import importlib.util

    from .errors import did_you_mean

    if kind not in TRACKERS:
        dym = did_you_mean(kind, TRACKERS)
        raise UsageError(f"unknown tracker {kind!r}" + (f"; {dym}" if dym else ""),
                         hint=f"--log takes one of {', '.join(TRACKERS)}")
    for module in _TRACKER_MODULES[kind]:
        try:
            if importlib.util.find_spec(module) is not None:
                break
        except (ImportError, ValueError):
            continue
    else:
        raise MissingDependencyError(f"--log {kind} needs the {kind} package, which is not "
                                     "installed", hint=TRACKER_HINTS[kind], package=kind)
    return Tracking(kind, Path(log_dir if log_dir is not None else "runs").expanduser())


@contextlib.contextmanager
def tracking(kind: str | None, log_dir: str | os.PathLike[str] | None = None
             ) -> Iterator[Tracking | None]:
    """Every :class:`Trainer` built inside logs to ``kind`` under ``log_dir`` (``None``: no
    tracking, the default). The CLI wraps one command's engine call in it."""
    if kind is None:
        yield None
        return
    t = check_tracking(kind, log_dir)
    token = _TRACKING.set(t)
    try:
        yield t
    finally:
        _TRACKING.reset(token)


def run_name(label: str) -> str:
    """A run's label as a tracker run name (also a directory name): ``task 'cola'`` ->
    ``task-cola``."""
    name = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", label).strip("-.")
    return name[:120] or "run"


def current() -> Tracking | None:
    """The tracking of the :func:`tracking` block this runs in (``None``: none)."""
    return _TRACKING.get()

