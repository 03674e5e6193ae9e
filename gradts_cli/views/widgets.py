"""Widgets every view shares: the one table builder, the correlation cell, the heatmap, and the
formatting of scores, durations, intervals and chance-level flags.

Widgets return Rich renderables; only :mod:`gradts_cli.output` prints them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

SYMBOL = {"kendall": "τ", "spearman": "ρ", "pearson": "r"}
DASH = "–"


@dataclass(frozen=True)
class Col:
    """A table column: header, justification, and whether its cells may wrap (default: text
    columns wrap, numeric (right-justified) ones never do)."""

    name: str
    justify: str = "left"
    wrap: bool | None = None
    ratio: int | None = None

    @property
    def wraps(self) -> bool:
        return self.justify == "left" if self.wrap is None else self.wrap


ColSpec = Col | str | tuple[str, str]


def col(spec: ColSpec) -> Col:
    """A :class:`Col` from itself, a header, or (header, justify)."""
    if isinstance(spec, Col):
        return spec
    return Col(spec) if isinstance(spec, str) else Col(*spec)


def table(title: str | None, columns: Sequence[ColSpec], rows: Sequence[Sequence[Any]], *,
          caption: str | None = None) -> Table:
    """THE table: bold headers, left-justified title and caption; cells are str or Text."""
    t = Table(title=title, caption=caption, header_style="bold", title_justify="left",
              caption_justify="left")
    for c in map(col, columns):
        t.add_column(c.name, justify=c.justify,  # type: ignore[arg-type]
                     no_wrap=not c.wraps, overflow="fold" if c.wraps else "ellipsis",
                     ratio=c.ratio)
    for r in rows:
        t.add_row(*[c if isinstance(c, Text) else Text(str(c)) for c in r])
    return t


class Fit:
    """The first of ``layouts`` that fits the width it is given (the last one otherwise): a
    wide table on a wide terminal, a compact one at 80 columns, where Rich would squeeze a
    wide table's wrapping text columns to nothing to keep its no-wrap numbers whole."""

    def __init__(self, *layouts: RenderableType) -> None:
        self.layouts = layouts

    def __rich_console__(self, console: Any, options: Any) -> Any:
        for layout in self.layouts[:-1]:
            if needed_width(console, options, layout) <= options.max_width:
                yield layout
                return
        yield self.layouts[-1]


def needed_width(console: Any, options: Any, renderable: RenderableType) -> int:
    """The width ``renderable`` needs: for a table, its no-wrap columns whole and its wrapping
    ones at their longest word (Rich's own minimum counts words in no-wrap columns too)."""
    from rich.measure import Measurement

    wide = options.update_width(10_000)
    if not isinstance(renderable, Table):
        return Measurement.get(console, wide, renderable).minimum
    total = renderable._extra_width
    for column in renderable.columns:
        m = renderable._measure_column(console, wide, column)
        total += m.maximum if column.no_wrap else m.minimum
    return total


def dim(text: str) -> Text:
    return Text(text, style="dim")


# -- numbers ----------------------------------------------------------------------------------
def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def opt(x: float | None, spec: str = ".3f") -> str:
    """``x`` formatted, or a dash when missing or not finite."""
    return format(x, spec) if finite(x) else DASH


def corr_cell(x: float | None) -> Text:
    """A correlation value coloured from red (−1) through grey (0) to green (+1)."""
    if not finite(x):
        return Text(DASH, style="dim")
    assert x is not None
    style = "bold green" if x >= 0.5 else "green" if x >= 0.2 else (
        "red" if x <= -0.2 else "white")
    return Text(f"{x:+.2f}", style=style)


def pvalue_text(p: float | None) -> Text:
    """A p-value: ``<.001``, ``.042``, ``1.00``; bold below .05, dim from .05 up."""
    if not finite(p):
        return Text(DASH, style="dim")
    assert p is not None
    s = "<.001" if p < 0.001 else (f"{p:.3f}".lstrip("0") if p < 1.0 else "1.00")
    return Text(s, style="bold" if p < 0.05 else "dim")


def interval(lo: float | None, hi: float | None) -> str:
    return f"{lo:+.2f} … {hi:+.2f}" if finite(lo) and finite(hi) else DASH


def pct(x: float | None) -> str:
    return f"{x:.0%}" if finite(x) else DASH


def duration(seconds: float | None) -> str:
    if not finite(seconds):
        return DASH
    assert seconds is not None
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def score(mean: float | None, std: float | None, n_seeds: int) -> str:
    """A dev score: ``0.8123``, or ``0.8123 ± 0.0100`` over several seeds."""
    if not finite(mean):
        return DASH
    return f"{mean:.4f}" if n_seeds <= 1 or not finite(std) else f"{mean:.4f} ± {std:.4f}"


def delta(d: float | None) -> Text:
    if not finite(d):
        return Text(DASH, style="dim")
    assert d is not None
    return Text(f"{d:+.4f}", style="green" if d > 0 else "red" if d < 0 else "")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks`` (never ``task(s)``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# -- chance level -----------------------------------------------------------------------------
_CORRELATION_METRICS = ("matthews", "pearson", "spearman")


def at_chance(metric: str | None, value: float | None, *, n: int | None = None,
              n_classes: int | None = None) -> bool:
    """Whether a dev score is no better than guessing.

    Accuracy: within two binomial standard errors of 1/K (K classes; 2 when unknown).
    Matthews, Pearson, Spearman: within two standard errors of 0 (1/sqrt(n) under no
    association). Without ``n`` the margin is 0.05. Other metrics (F1) are never flagged: their
    chance level depends on the class balance, which the score alone does not tell.
    """
    if metric is None or not finite(value):
        return False
    assert value is not None
    if metric == "accuracy":
        p = 1.0 / max(2, n_classes or 2)
        margin = 2.0 * math.sqrt(p * (1 - p) / n) if n else 0.05
        return value <= p + margin
    if metric in _CORRELATION_METRICS:
        margin = 2.0 / math.sqrt(n) if n else 0.05
        return abs(value) <= margin
    return False


CHANCE_MARK = "*"
CHANCE_NOTE = "* = at chance level: no better than guessing (not learned)"


def chance_text(flag: bool) -> Text:
    """The mark after a score at chance level (its meaning: :data:`CHANCE_NOTE`)."""
    return Text(CHANCE_MARK, style="bold yellow") if flag else Text("")


# -- heatmap and bars -------------------------------------------------------------------------
_SHADES = " ░▒▓█"
_EIGHTHS = " ▏▎▍▌▋▊▉█"
_SPARK = "▁▂▃▄▅▆▇█"


def heatmap(matrix: Any, title: str, *, row_label: str = "L",
            col_label: str = "H") -> RenderableType:
    """A compact terminal heatmap of a (rows, cols) matrix, scaled to its own min and max."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    span = hi - lo if hi > lo else 1.0
    t = Table(title=title or None, title_justify="left", show_header=True, header_style="dim",
              box=None, pad_edge=False, padding=(0, 0))
    t.add_column("", style="dim", justify="right")
    for j in range(m.shape[1]):
        t.add_column(f"{j}"[-1], justify="center", width=2)
    for i in range(m.shape[0]):
        cells = []
        for j in range(m.shape[1]):
            v = (m[i, j] - lo) / span
            shade = _SHADES[min(len(_SHADES) - 1, int(v * (len(_SHADES) - 1) + 0.5))]
            cells.append(Text(shade * 2, style=f"rgb({int(40 + 215 * v)},{int(60 + 120 * v)},90)"))
        t.add_row(f"{row_label}{i}", *cells)
    legend = Text(f"  {col_label} = head index; shading from {lo:.3g} to {hi:.3g}", style="dim")
    return Group(t, legend)


def bar(value: float | None, lo: float, hi: float, width: int) -> str:
    """A horizontal unicode bar of ``value`` on [lo, hi] (eighth-block resolution)."""
    if not finite(value):
        return ""
    assert value is not None
    frac = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    full, part = divmod(int(round(frac * width * 8)), 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def sparkline(counts: Sequence[int]) -> str:
    """Histogram counts as unicode bars scaled to the largest; an empty bin is a space."""
    top = max(counts) if len(counts) else 0
    if top <= 0:
        return " " * len(counts)
    return "".join(" " if c == 0 else _SPARK[min(7, int(c / top * 7 + 0.5))] for c in counts)
