"""Progress events: how long-running engine functions report without printing (DESIGN.md §3).

An engine function takes ``progress: ProgressFn | None`` and calls it with :class:`Progress`
events; the CLI turns them into Rich progress bars (on a TTY) or a few log lines. The stage of
an event is a :class:`Stage` (a ``str`` enum, so ``Stage.FINE_TUNE == "fine-tune"``); the CLI
branches on the enum, never on message text. The kind of a note (:class:`NoteKind`) says how
the CLI should show it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum


class Stage(str, Enum):
    """Every stage an engine function reports."""

    DATA = "data"                  # a task's data is loaded / tokenised
    LOAD = "load"                  # a model is loaded
    FINE_TUNE = "fine-tune"        # probe fine-tuning steps
    IMPORTANCE = "importance"      # the probe's importance pass
    INSTANCES = "instances"        # instance-level correlation chunks
    DEV = "dev"                    # dev evaluation after fine-tuning
    DONE = "done"                  # a unit (a task's probe) finished and was stored
    CACHED = "cached"              # a unit was reused from the store
    BOOTSTRAP = "bootstrap"        # bootstrap resamples
    MTL = "mtl"                    # multi-task training steps
    MTL_EPOCH = "mtl-epoch"        # one multi-task epoch finished (metrics attached)
    TRIAL_START = "trial-start"    # a trial set begins
    TRIAL_RUN = "trial-run"        # a trial set finished (or was reused)
    TRIAL_DONE = "trial-done"      # GradTS-trial finished
    FG_START = "fg-start"          # an fg cut begins training
    FG_CUT = "fg-cut"              # an fg cut's instances were chosen
    FG_RUN = "fg-run"              # an fg cut finished (or was reused)
    COMPARE_START = "compare-start"  # a comparison's set begins
    COMPARE_RUN = "compare-run"      # a comparison's set finished (or was reused)
    SELECT = "select"                # a selector ranked the candidates
    DEMO = "demo"                  # a demo stage begins or ends
    NOTE = "note"                  # a message for the user (see NoteKind)
    DEMO_NOTE = "demo-note"        # a demo message (the model used, ...)

    def __str__(self) -> str:  # "fine-tune", not "Stage.FINE_TUNE"
        return self.value


class NoteKind(str, Enum):
    """How a :data:`Stage.NOTE` message is meant: plain information, or a warning."""

    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True)
class Progress:
    """One update: ``stage``, what it is for (``task``), how far (``done`` of ``total``)."""

    stage: Stage
    task: str | None = None
    done: int = 0
    total: int | None = None
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    kind: NoteKind = NoteKind.INFO


ProgressFn = Callable[[Progress], None]


def emit(progress: ProgressFn | None, stage: Stage | str, *args: object, **kwargs: object) -> None:
    """Send an event if there is a listener (``emit(cb, Stage.DEV, task=..., done=...)``)."""
    if progress is not None:
        progress(Progress(Stage(stage), *args, **kwargs))  # type: ignore[arg-type]
