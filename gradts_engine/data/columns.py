"""A split's columns as read from its source, before labels are mapped (DESIGN.md §3).

:class:`Raw` holds the columns of one split; a column is named by its header name or by its
index (``"0"``, ``"1"``, ...). Missing and "-1" values mark unlabelled test rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, did_you_mean


@dataclass
class Raw:
    """A split's columns as read, before labels are mapped (``where`` names the file)."""

    columns: dict[str, list[Any]]
    where: str
    first_line: int = 1          # file line of row 0 (for messages)
    label_ids_direct: bool = False  # Hub ClassLabel ints / generator ints: ids already


def find_column(field: str, names: Sequence[str]) -> str | None:
    if field in names:
        return field
    if field.isdigit() and int(field) < len(names):
        return names[int(field)]
    return None


def resolve_column(field: str, names: Sequence[str], where: str, role: str) -> str:
    col = find_column(field, names)
    if col is None:
        hint = did_you_mean(field, names)
        shown = ", ".join(repr(c) for c in names)
        raise DataError(
            f"{where}: no {role} column {field!r} (columns: {shown})",
            hint=(hint + " " if hint else "")
            + "name a column by its header or by its index (0, 1, ...)",
            column=field,
        )
    return col


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def is_minus_one(v: Any) -> bool:
    try:
        return float(v) == -1.0
    except (TypeError, ValueError):
        return False

