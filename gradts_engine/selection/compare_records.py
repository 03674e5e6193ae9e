"""The records of ``gradts compare`` (saved and loaded with :mod:`.records`' one codec)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .records import encode


@dataclass(frozen=True)
class SelectorRanking:
    """One selector's ranking for one primary, and what it cost."""

    selector: str
    order: tuple[str, ...]                  # best first (the first seed's, for random)
    orders: tuple[tuple[str, ...], ...]     # one per seed where it depends on the seed
    scores: Mapping[str, float]
    seconds: float                          # time spent ranking in this call
    cost_s: float                           # device-seconds it stands on, reused ones included
    cost: str

    def order_for(self, i: int) -> tuple[str, ...]:
        """The order used with the i-th seed."""
        return self.orders[i % len(self.orders)]


@dataclass(frozen=True)
class Gain:
    """A paired difference of scores on the scoring split, with its bootstrap interval."""

    diff: float
    low: float | None
    high: float | None
    separable: bool                         # the interval excludes 0


@dataclass(frozen=True)
class CompareRow:
    """One selector's top-k set (one per seed for ``random``) trained with every seed."""

    selector: str                           # a selector, or "primary alone" / "all candidates"
    k: int
    sets: tuple[tuple[str, ...], ...]       # per seed: the auxiliary set trained
    seeds: tuple[int, ...]
    scores: tuple[float, ...]               # per seed: the main metric on the scoring split
    mean: float
    std: float
    gain: Gain | None                       # over the primary alone
    vs_random: Gain | None                  # over the random selector's set of the same k
    cached: tuple[bool, ...]
    ledger: tuple[str, ...]
    train_s: float                          # training time of its runs (summed over seeds)
    verdict: str = ""

    @property
    def label(self) -> str:
        labels = list(dict.fromkeys(" + ".join(s) or "(primary alone)" for s in self.sets))
        return labels[0] if len(labels) == 1 else f"{len(labels)} draws: " + "; ".join(labels)


@dataclass(frozen=True)
class PrimaryComparison:
    """Every selector for one primary task."""

    primary: str
    main_metric: str
    scored_on: str                          # "test" or "holdout"
    scored_on_text: str
    n_examples: int
    candidates: tuple[str, ...]
    rankings: tuple[SelectorRanking, ...]
    agreement: Mapping[str, Mapping[str, float]]   # Kendall tau between selectors' orders
    baseline: CompareRow
    all_candidates: CompareRow | None
    rows: tuple[CompareRow, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SummaryRow:
    """One selector at one k over several primaries."""

    selector: str
    k: int
    n_primaries: int
    mean_gain: float
    low: float | None
    high: float | None
    beats: Mapping[str, int]                # other selector -> primaries where this one is
    #                                         separably better


@dataclass(frozen=True)
class CompareResult:
    """The outcome of :func:`selection.compare.run_compare`."""

    model: str
    model_name: str
    primaries: tuple[PrimaryComparison, ...]
    summary: tuple[SummaryRow, ...]
    selectors: tuple[str, ...]
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    trained: int
    seconds: float
    key: str = ""
    created: str = ""
    notes: tuple[str, ...] = ()
    level: float = 0.90
    words: tuple[str, ...] = field(default_factory=tuple)   # the verdicts, one per line
    # under torchrun: world size, backend, and per run trained who trained it, how fast
    distributed: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return encode(self)  # type: ignore[no-any-return]

    def to_csv(self) -> str:
        """One row per (primary, selector, k): set, mean, std, gains with intervals, cost."""
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["primary", "selector", "k", "set", "mean", "std", "gain", "gain_low",
                    "gain_high", "vs_random", "vs_random_low", "vs_random_high", "separable",
                    "cost_s", "scored_on"])
        for p in self.primaries:
            cost = {r.selector: r.cost_s for r in p.rankings}
            for r in [p.baseline, *([p.all_candidates] if p.all_candidates else []), *p.rows]:
                g, v = r.gain, r.vs_random
                w.writerow([p.primary, r.selector, r.k, r.label, _c(r.mean), _c(r.std),
                            *(_g(g)), *(_g(v)[:3]), "" if g is None else int(g.separable),
                            _c(cost.get(r.selector)), p.scored_on])
        return buf.getvalue()


def _c(x: float | None) -> str:
    import math

    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def _g(g: Gain | None) -> list[str]:
    return ["", "", ""] if g is None else [_c(g.diff), _c(g.low), _c(g.high)]
