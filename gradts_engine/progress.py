"""Progress events: how long-running engine functions report without printing (DESIGN.md §3).

An engine function takes ``progress: ProgressFn | None`` and calls it with :class:`Progress`
events; the CLI turns them into Rich progress bars (on a TTY) or a few log lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One update: ``stage`` (e.g. "fine-tune", "importance"), what it is for, how far."""

    stage: str
    task: str | None = None
    done: int = 0
    total: int | None = None
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


def emit(progress: ProgressFn | None, *args: object, **kwargs: object) -> None:
    """Send an event if there is a listener (``emit(cb, "stage", task=..., done=...)``)."""
    if progress is not None:
        progress(Progress(*args, **kwargs))  # type: ignore[arg-type]
