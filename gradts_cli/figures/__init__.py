"""Figures of GradTS results for papers: PNG at print resolution, SVG and PDF (issue 15).

Each figure is drawn from the engine's public result objects (the ``ImportanceResult``
matrices, ``CorrResult``, ``TrialSummary``, ``FgResult``, ``CompareResult`` and ``Report``) by
a builder in :mod:`gradts_cli.figures.plots`; this module saves them. matplotlib is an optional
dependency (the ``plot`` extra) and is imported only inside these functions: importing
``gradts_cli`` never imports it, and without it a figure request is one error naming
``pip install 'gradts[plot]'``.

File names are deterministic (:data:`FIGURE_NAMES`): ``importance``, ``corr``,
``candidates-<primary>``, ``trial-<primary>``, ``fg-<primary>``, ``fg-taus-<primary>``,
``compare-<primaries>`` (``a+b`` for a comparison over several primaries), each
as ``.png`` (300 dpi), ``.svg`` (text kept as text, so task names are searchable) and ``.pdf``
(TrueType fonts embedded). Every file is written atomically (a temporary file renamed into
place). Sizes are one column of a two-column paper (3.4 in wide) or the full text width
(7 in), with 7-8 pt fonts, so nothing needs to be scaled down.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradts_engine.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from gradts_engine.report import Report

PLOT_HINT = "pip install 'gradts[plot]'"
FORMATS = ("png", "svg", "pdf")
DPI = 300
FIGURE_NAMES = ("importance", "corr", "candidates-<primary>", "trial-<primary>",
                "fg-<primary>", "fg-taus-<primary>", "compare-<primaries>")

__all__ = ["DPI", "FORMATS", "PLOT_HINT", "FigureFile", "require_matplotlib", "save_figure",
           "write_report_figures", "write_one"]


class PlotUnavailableError(MissingDependencyError):
    """matplotlib (the ``plot`` extra) is not installed."""


@dataclass(frozen=True)
class FigureFile:
    """One figure written in one or more formats."""

    name: str                      # deterministic stem, e.g. "trial-rte"
    title: str                     # what it shows, one line (used as the HTML caption)
    paths: tuple[Path, ...]


def require_matplotlib() -> Any:
    """``matplotlib`` with the non-interactive Agg backend, or one error naming the extra."""
    try:
        import matplotlib
    except ImportError as e:
        raise PlotUnavailableError("figures need matplotlib, which is not installed",
                                   hint=PLOT_HINT) from e
    matplotlib.use("Agg", force=True)
    return matplotlib


def render_bytes(fig: Any, fmt: str, dpi: int = DPI) -> bytes:
    """The figure as ``fmt`` bytes, deterministic (no dates, fixed SVG ids)."""
    import matplotlib

    if fmt not in FORMATS:
        raise UsageError(f"cannot write a figure as .{fmt}",
                         hint="use a file name ending in .png, .svg or .pdf")
    meta: dict[str, Any] = {"png": {"Software": None},
                            "svg": {"Date": None, "Creator": None},
                            "pdf": {"CreationDate": None, "ModDate": None, "Creator": None,
                                    "Producer": None}}[fmt]
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "gradts", "svg.fonttype": "none",
                                "pdf.fonttype": 42}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def save_figure(fig: Any, path: Path, formats: Sequence[str] | None = None) -> tuple[Path, ...]:
    """Write ``fig`` atomically to ``path`` (format from its suffix), or to ``path`` with each
    suffix of ``formats``; close it; return the paths written."""
    import matplotlib.pyplot as plt

    from gradts_engine.store import atomic_write_bytes

    if formats is None:
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in FORMATS:
            raise UsageError(f"cannot tell the figure format of '{path.name}'",
                             hint="use a file name ending in .png, .svg or .pdf")
        targets = [(path, suffix)]
    else:
        targets = [(path.with_suffix(f".{f}"), f) for f in formats]
    try:
        for p, f in targets:
            atomic_write_bytes(p, render_bytes(fig, f), what="the figure")
    finally:
        plt.close(fig)
    return tuple(p for p, _ in targets)


# ---------------------------------------------------------------------------------------------
# which figures a report has


@dataclass(frozen=True)
class _Planned:
    name: str
    title: str
    build: Callable[[], Any]


def _plan(report: Report, taus: Mapping[str, Mapping[str, Any]] | None) -> list[_Planned]:
    from . import plots

    out: list[_Planned] = []
    corr = report.corr
    if corr is not None and corr.matrices:
        out.append(_Planned("importance", f"Head importance per task ({corr.estimator})",
                            lambda: plots.importance_grid(corr.matrices, corr.estimator,
                                                          corr.measure, corr.model_name)))
    if corr is not None and len(corr.tasks) >= 2:
        out.append(_Planned("corr", f"Task correlation ({corr.method})",
                            lambda: plots.corr_heatmap(corr)))
        for p in ([report.primary] if report.primary else []):
            out.append(_Planned(f"candidates-{p}", f"Candidates for {p}",
                                partial(plots.candidates, corr, p)))
    for t in report.trials:
        out.append(_Planned(f"trial-{t.primary}", f"GradTS-trial for {t.primary}",
                            partial(plots.trial_scores, t)))
    for f in report.fg:
        out.append(_Planned(f"fg-{f.primary}", f"GradTS-fg sweep for {f.primary}",
                            partial(plots.fg_sweep, f)))
        got = (taus or {}).get(f.primary)
        if got:
            out.append(_Planned(f"fg-taus-{f.primary}",
                                f"Instance taus of the auxiliary tasks of {f.primary}",
                                partial(plots.fg_tau_hist, f, got)))
    for c in report.compare:
        names = "+".join(p.primary for p in c.primaries)
        if any(plots.compare_rows(p) for p in c.primaries):
            out.append(_Planned(f"compare-{names}", f"Selectors compared for {names}",
                                partial(plots.compare_gains, c)))
    return out


def report_figures(report: Report, taus: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> list[tuple[str, str, Any]]:
    """``(name, title, matplotlib Figure)`` for every figure the report's results allow.

    ``taus``: per fg primary, ``{aux task: instance taus (N,)}`` (from
    :func:`gradts_engine.export.fg_instance_taus`); without it no histogram is drawn.
    """
    require_matplotlib()
    return [(p.name, p.title, p.build()) for p in _plan(report, taus)]


def write_report_figures(report: Report, out_dir: Path,
                         taus: Mapping[str, Mapping[str, Any]] | None = None,
                         formats: Sequence[str] = FORMATS) -> list[FigureFile]:
    """Write every figure of ``report`` into ``out_dir`` as PNG, SVG and PDF."""
    require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in _plan(report, taus):
        paths = save_figure(p.build(), out_dir / _safe(p.name), formats)
        written.append(FigureFile(p.name, p.title, paths))
    return written


def write_one(fig_builder: Callable[[], Any], path: Path, name: str, title: str) -> FigureFile:
    """Build one figure (matplotlib checked first) and write it to ``path``."""
    require_matplotlib()
    return FigureFile(name, title, save_figure(fig_builder(), path))


def _safe(name: str) -> str:
    from gradts_engine.store import safe_component

    return safe_component(name)
