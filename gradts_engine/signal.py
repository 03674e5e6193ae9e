"""Which importance signal a comparison uses: measure, estimator and correlation method (§2).

One value, :class:`ImportanceSignal`, is passed whole through the engine instead of three loose
strings; each choice is an enum whose values are the strings users type and stores record, so
``Measure("gate")`` parses a flag and ``str(Measure.GATE) == "gate"`` writes it back.
The defaults are defined here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from .errors import ConfigError, did_you_mean


class _Choice(str, Enum):
    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)


class Measure(_Choice):
    """How a head's importance is measured (DESIGN.md §2)."""

    GATE = "gate"      # |dL_b / dxi[b, l, h]|, the head-gate gradient (default)
    QKV = "qkv"        # mean |dW| over the head's rows of W_Q, W_K, W_V
    LEGACY = "legacy"  # the original code: K and V only, input columns, dropout on


class Estimator(_Choice):
    """When importance is measured: summed over fine-tuning, or one pass after it (§2)."""

    DURING = "during"
    AFTER = "after"


class Method(_Choice):
    """The rank (or linear) correlation between flattened (L*H) importance vectors."""

    KENDALL = "kendall"
    SPEARMAN = "spearman"
    PEARSON = "pearson"


C = TypeVar("C", bound=_Choice)


def parse_choice(cls: type[C], value: str | C, what: str, flag: str) -> C:
    """``cls(value)``, or a :class:`ConfigError` naming ``flag`` with a did-you-mean."""
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        names = cls.names()
        raise ConfigError(f"unknown {what} '{value}'",
                          hint=did_you_mean(str(value), names)
                          or f"choose {flag} from {', '.join(names)}") from None


DEFAULT_MEASURE = Measure.GATE
DEFAULT_ESTIMATOR = Estimator.DURING   # task-level rankings (DESIGN.md §2)
DEFAULT_METHOD = Method.KENDALL
FG_THRESHOLD = 0.62                    # GradTS-fg's instance threshold in the original


@dataclass(frozen=True)
class ImportanceSignal:
    """The importance signal one comparison reads: measure x estimator x correlation method."""

    measure: Measure = DEFAULT_MEASURE
    estimator: Estimator = DEFAULT_ESTIMATOR
    method: Method = DEFAULT_METHOD

    @classmethod
    def parse(cls, measure: str | Measure | None = None, estimator: str | Estimator | None = None,
              method: str | Method | None = None) -> ImportanceSignal:
        """From flag strings (``None`` = the default), with one-line errors for unknown names."""
        return cls(
            parse_choice(Measure, measure, "importance measure", "--measure")
            if measure is not None else DEFAULT_MEASURE,
            parse_choice(Estimator, estimator, "estimator", "--estimator")
            if estimator is not None else DEFAULT_ESTIMATOR,
            parse_choice(Method, method, "correlation method", "--method")
            if method is not None else DEFAULT_METHOD)
