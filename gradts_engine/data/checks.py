"""Likely-broken task declarations, caught before ``gradts data add`` writes them (issue 11).

Two mistakes load without an error yet give a wrong task:

* **a regression target declared as classes**: STS-B without ``--kind regression`` became a
  147-class task (``0``, ``0.00`` and ``0.000`` three different classes). Refused when the
  inferred label values are all numbers and either more than :data:`MAX_NUMERIC_CLASSES` of
  them are distinct with some not whole, or one number is written in two ways.
* **the header setting the wrong way round**: CoLA without ``--no-header`` silently loses its
  first row; a file with a header read with ``--no-header`` gains a class named after the label
  column. With a header, refused when the label column's header cell is a label of the data
  (a class name, a class id, or a number for a regression task). Without one, refused when the
  first row's label appears nowhere else in the file while every other row's label is a number
  (or a declared class) and it is not, or while every other class occurs at least twice in a
  file of at least :data:`MIN_ROWS_FOR_RARE` rows.

Each refusal is a :class:`DataError` naming the file and the value, with the flag that fixes it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..errors import DataError

MAX_NUMERIC_CLASSES = 10
MIN_ROWS_FOR_RARE = 20      # rows needed to call a label seen only in the first row a header


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _whole(v: str) -> bool:
    """Written as an integer (``3``, not ``3.0``, ``3e0`` or ``3.5``)."""
    return v.strip().lstrip("+-").isdigit()


def check_numeric_labels(name: str, label: str, values: set[str]) -> None:
    """Refuse inferred classes that look like a regression target (see the module doc)."""
    nums = {v: _number(v) for v in values}
    if not values or any(x is None for x in nums.values()):
        return
    by_number: dict[float, list[str]] = {}
    for v, x in nums.items():
        by_number.setdefault(x, []).append(v)  # type: ignore[arg-type]
    twice = next((sorted(vs) for vs in by_number.values() if len(vs) > 1), None)
    fractional = [v for v in values if not _whole(v)]
    if twice is None and not (fractional and len(values) > MAX_NUMERIC_CLASSES):
        return
    shown = ", ".join(sorted(values, key=lambda v: (nums[v], v))[:4])
    why = (f"{twice[0]!r} and {twice[1]!r} are one number written twice" if twice else
           f"{len(values)} distinct numbers such as {shown}")
    raise DataError(
        f"task '{name}': the label column {label!r} looks like a regression target, not "
        f"{len(values)} classes ({why})",
        hint="pass --kind regression (or --labels a,b,... if these really are classes)",
        column=label)


def _is_label(cell: str, kind: str, labels: Sequence[str], data_values: set[str]) -> bool:
    cell = cell.strip()
    if kind == "regression":
        return _number(cell) is not None
    if cell in labels or cell in data_values:
        return True
    return cell.isdigit() and int(cell) < len(labels)


def check_header_cell(path: str, cell: str, kind: str, labels: Sequence[str],
                      data_values: set[str]) -> None:
    """With a header: refuse a label-column header cell that is itself a label."""
    if _is_label(cell, kind, labels, data_values):
        raise DataError(
            f"{path}: the first line looks like data, not a header (its label column holds "
            f"{cell.strip()!r}, which is a label)",
            hint="pass --no-header (columns are then named by index: 0, 1, ...)", path=path)


def check_first_row(path: str, first: str, rest: Sequence[str], kind: str,
                    labels: Sequence[str]) -> None:
    """Without a header: refuse a first row whose label looks like a column name."""
    first = first.strip()
    others = {v.strip() for v in rest if v.strip()}
    if not others or first in others:
        return
    if kind == "regression" or not labels:
        counts = Counter(v.strip() for v in rest if v.strip())
        looks = (_number(first) is None and all(_number(v) is not None for v in others)) or (
            kind == "classification" and len(rest) >= MIN_ROWS_FOR_RARE
            and min(counts.values()) >= 2)  # a class seen once, and only in the first row
    else:
        looks = (not _is_label(first, kind, labels, set())
                 and all(_is_label(v, kind, labels, set()) for v in others))
    if looks:
        raise DataError(
            f"{path}: the first line looks like a header, not data (its label {first!r} appears "
            "nowhere else in the file)",
            hint="drop --no-header (the first line then names the columns)", path=path)
