"""``gradts cache``: the entries of the store (with the settings that tell two entries of one
task apart), the verification summary and what was removed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType

from .probe import settings_text
from .widgets import Col, plural, table


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def entry_settings(spec: Mapping[str, Any]) -> str:
    """The settings of an entry in a few words (the probe's, or a trial or fg run's)."""
    st = spec.get("settings")
    if isinstance(st, Mapping) and "lr" in st:
        text = settings_text(st)
        measure = spec.get("measure")
        return f"{measure}; {text}" if measure else text
    if isinstance(st, Mapping):
        return ", ".join(f"{k} {v}" for k, v in list(st.items())[:6])
    return "–"


def entry_row(e: Any) -> dict[str, Any]:
    """A scanned entry (:meth:`Store.scan`) as data (``cache list --json``)."""
    return {"key": e.path, "kind": e.kind, "names": list(e.names), "created": e.created,
            "bytes": e.size, "state": e.state.value, "problem": e.problem,
            "settings": dict(e.settings)}


def list_table(root: Any, rows: Sequence[Mapping[str, Any]]) -> RenderableType:
    """The entries (rows of :func:`entry_row`): path, created, settings, size, state."""
    cols: list[Col | str | tuple[str, str]] = [
        Col("entry", wrap=True), "created", Col("settings", wrap=True), ("size", "right"),
        "state"]
    cells = [(r["key"], r["created"] or "–", entry_settings({"settings": r["settings"]}),
              size_text(r["bytes"]), r["state"]) for r in rows]
    return table(f"cache at {root}", cols, cells, caption=plural(len(rows), "entry", "entries"))
