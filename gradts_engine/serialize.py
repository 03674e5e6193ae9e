"""Plain-JSON views of engine results (one converter for the store and the CLI's --json).

Dataclasses become objects, tuples lists, numpy scalars and arrays Python numbers and lists,
paths strings, and non-finite floats ``null`` — so the output is strict JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """A structure of dicts, lists, strings, numbers, booleans and None equal to ``obj``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return to_jsonable(obj.tolist())
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj
