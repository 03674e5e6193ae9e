"""Attention heads: where each model family keeps them, the head gates, per-example importance.

This package implements the definitions of DESIGN.md §2 (head gate, weight-gradient measures):

- :mod:`.layout`: the family table and :func:`head_layout` (where the heads are);
- :mod:`.gates`: :class:`HeadGates`, the per-example gates ``xi`` (B, L, H);
- :mod:`.measures`: :func:`gate_importance` ``|dL_b/dxi[b, l, h]|``, and the weight-gradient
  measures :func:`qkv_importance` and :func:`legacy_importance` (the original GradTS code's).

No measure normalises: they return raw ``(B, L, H)`` float32 matrices on the model's device;
per-layer and min-max normalisation belong to the probe (:mod:`importance`).
"""

from .gates import HeadGates
from .layout import (
    LEGACY_MODEL_TYPES,
    MEASURES,
    SUPPORTED_MODEL_TYPES,
    HeadLayout,
    head_layout,
    supports_measure,
)
from .measures import LossFn, gate_importance, legacy_importance, qkv_blocks, qkv_importance

__all__ = [
    "LEGACY_MODEL_TYPES",
    "MEASURES",
    "SUPPORTED_MODEL_TYPES",
    "HeadGates",
    "HeadLayout",
    "LossFn",
    "gate_importance",
    "head_layout",
    "legacy_importance",
    "qkv_blocks",
    "qkv_importance",
    "supports_measure",
]
