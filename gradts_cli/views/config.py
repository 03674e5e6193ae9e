"""``gradts config``: every resolved setting, its value and where it came from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType

from .widgets import Col, table


def settings_table(rows: Sequence[tuple[str, Any, str]], user_file: Any) -> RenderableType:
    return table(None, ["setting", Col("value", wrap=True), Col("from", wrap=True)],
                 [(k, "–" if v is None else v, s) for k, v, s in rows],
                 caption=f"user file: {user_file}")
