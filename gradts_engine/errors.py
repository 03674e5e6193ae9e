"""One exception hierarchy for the whole engine (DESIGN.md §6).

Every error carries structured fields: ``message`` (what is wrong, naming the object),
``hint`` (the next thing to run or change) and free ``details``. The CLI maps each class to an
exit code in one table (``gradts_cli.app.EXIT_CODES``) and prints one line; engine code never
prints. Unknown names get a "did you mean" suggestion through :func:`did_you_mean`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class GradtsError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(GradtsError):
    """A configuration file, key, value or flag combination is wrong."""


class UsageError(ConfigError):
    """Flags that cannot be used together, or a required choice not made."""


class TaskError(GradtsError):
    """A task specification is invalid or refers to something that does not exist."""


class UnknownTaskError(TaskError):
    """A task or suite name is not in the registry."""


class DuplicateTaskError(TaskError):
    """Two tasks were registered under one name."""


class DataError(GradtsError):
    """Data files are missing, unreadable, empty or do not fit the task's spec."""


class OfflineError(GradtsError):
    """Something had to be downloaded but the network or the Hub is not reachable."""


class ModelError(GradtsError):
    """A model path, id or configuration cannot be used."""


class UnsupportedArchitectureError(ModelError):
    """The model family has no head adapter (DESIGN.md §2)."""


class MissingDependencyError(GradtsError):
    """An optional package that a flag needs is not installed (the hint names the extra)."""


class DeviceError(GradtsError):
    """The requested device or precision is not available."""


class TrainingError(GradtsError):
    """Training diverged (NaN or infinite loss) or could not proceed."""


class StoreError(GradtsError):
    """The cache cannot be read or written."""


class CorruptEntryError(StoreError):
    """A cache entry is half-written, truncated or altered (checksum mismatch)."""


class MissingResultError(StoreError):
    """A result that a command needs is not in the store (e.g. a task was never probed)."""


class IncompatibleResultsError(GradtsError):
    """Results that must not be compared: different models, measures or shapes."""


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest choice, or None."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
