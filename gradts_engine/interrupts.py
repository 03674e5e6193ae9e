"""Ctrl-C handled at safe points (DESIGN.md §6; an interrupted command exits 130).

A ``KeyboardInterrupt`` raised by Python's default SIGINT handler can land anywhere, including
inside a native call of torch or a tokenizer, where it aborts the process. Instead, the CLI's
``main()`` calls :func:`install`: the first SIGINT only sets a flag, and long-running engine
loops call :func:`check` between steps, which raises :class:`Interrupted` (a
``KeyboardInterrupt``) at a point where nothing is half-written. A second SIGINT, for a process
stuck where no check is reached, raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_flag = threading.Event()
_installed = False


class Interrupted(KeyboardInterrupt):
    """Raised by :func:`check` after a SIGINT."""


def _handler(signum: int, frame: FrameType | None) -> None:
    if _flag.is_set():
        raise KeyboardInterrupt
    _flag.set()


def install() -> None:
    """Route SIGINT to the flag (main thread only; a no-op elsewhere or when done twice)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    _installed = True


def check() -> None:
    """Raise :class:`Interrupted` if a SIGINT arrived; call between training steps and units."""
    if _flag.is_set():
        raise Interrupted


def reset() -> None:
    """Forget an interrupt (tests, and ``main()`` between in-process runs)."""
    _flag.clear()
