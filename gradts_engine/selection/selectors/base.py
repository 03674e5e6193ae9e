"""The selector interface and registry (DESIGN.md §8).

A selector ranks the candidate auxiliary tasks of a primary task. Each is one small module that
declares a :class:`Selector` (a name, what it needs and reuses, and a ``rank`` function) and
registers it; ``gradts compare`` looks selectors up by name. Selectors that depend on a seed
(``random``) return one order per seed; the others one order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from ...config import RunSettings
    from ...models import ModelRef
    from ...mtl import MTLSettings
    from ...progress import ProgressFn
    from ...signal import ImportanceSignal
    from ...store import Store
    from ...tasks.spec import TaskSpec


@dataclass(frozen=True)
class SelectContext:
    """What a selector may read: the store, the model, the primary, the candidates, settings."""

    store: Store
    model: str
    ref: ModelRef
    primary: TaskSpec
    candidates: tuple[TaskSpec, ...]
    run: RunSettings
    settings: MTLSettings
    signal: ImportanceSignal
    seeds: tuple[int, ...]
    max_train_examples: int | None = None
    progress: ProgressFn | None = None
    shared: dict[str, Any] = field(default_factory=dict)   # e.g. the one joint run of tag/grad-cos


@dataclass(frozen=True)
class Ranking:
    """A selector's ranking of the candidates for one primary."""

    selector: str
    orders: tuple[tuple[str, ...], ...]      # one order (or one per seed), best first
    scores: Mapping[str, float]              # the score behind the (first) order
    seconds: float                           # time spent ranking now
    cost_s: float                            # device-seconds the ranking stands on (reused too)
    cost: str                                # what it cost and what it reused, in words

    @property
    def order(self) -> tuple[str, ...]:
        return self.orders[0]

    def order_for(self, i: int) -> tuple[str, ...]:
        """The order used with the i-th seed."""
        return self.orders[i % len(self.orders)]


@dataclass(frozen=True)
class Selector:
    """One declared selector."""

    name: str
    summary: str
    rank: Callable[[SelectContext], Ranking]


SELECTORS: dict[str, Selector] = {}


def register(selector: Selector) -> Selector:
    """Add a selector to the registry (a name is declared once)."""
    if selector.name in SELECTORS:
        raise ValueError(f"selector {selector.name!r} is declared twice")
    SELECTORS[selector.name] = selector
    return selector


def get_selector(name: str) -> Selector:
    """The selector called ``name``; an unknown name is a one-line error with a did-you-mean."""
    if name not in SELECTORS:
        raise UsageError(f"unknown selector '{name}'",
                         hint=did_you_mean(name, list(SELECTORS))
                         or f"choose from {', '.join(SELECTORS)}")
    return SELECTORS[name]


def order_by(scores: Mapping[str, float], names: list[str]) -> tuple[str, ...]:
    """``names`` by score, highest first; NaN last; ties by name."""
    import math

    return tuple(sorted(names, key=lambda t: (math.isnan(scores[t]),
                                              -scores[t] if not math.isnan(scores[t]) else 0.0,
                                              t)))
