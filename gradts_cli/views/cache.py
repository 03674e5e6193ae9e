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
    """An entry as data (``cache list --json``)."""
    return {"key": e.key_path, "kind": e.kind, "created": e.meta.get("created"),
            "bytes": sum(f.get("bytes", 0) for f in e.meta.get("files", {}).values()),
            "settings": dict(e.spec.get("settings", {})) if isinstance(
                e.spec.get("settings"), Mapping) else {}}


def list_table(root: Any, entries: Sequence[Any]) -> RenderableType:
    rows = [(e.key_path, e.meta.get("created") or "–", entry_settings(e.spec),
             size_text(entry_row(e)["bytes"])) for e in entries]
    return table(f"cache at {root}", [Col("entry", wrap=True), "created",
                                      Col("settings", wrap=True), ("size", "right")], rows,
                 caption=plural(len(rows), "entry", "entries"))
