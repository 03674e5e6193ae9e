"""What the ``--figure``, ``--figures``, ``--csv`` and ``--html`` flags write, for the commands.

Each command calls :func:`check_figure` before it starts working (a wrong suffix or a missing
``plot`` extra is one error at once, not after a long run), then one ``write_*`` function with
its result; each returns the paths written, which the command reports. Heavy imports
(matplotlib, numpy) happen inside these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_figure(path: Path | None) -> None:
    """An error now if ``path`` cannot be written as a figure (suffix, matplotlib)."""
    if path is None:
        return
    from gradts_engine.errors import UsageError

    from . import figures

    if path.suffix.lower().lstrip(".") not in figures.FORMATS:
        raise UsageError(f"cannot tell the figure format of '{path.name}'",
                         hint="use a file name ending in .png, .svg or .pdf")
    figures.require_matplotlib()


def check_figures_dir(path: Path | None) -> None:
    if path is None:
        return
    from gradts_engine.errors import UsageError

    from . import figures

    if path.exists() and not path.is_dir():
        raise UsageError(f"--figures needs a directory, and {path} is a file",
                         hint="give a directory name, e.g. --figures figs/")
    figures.require_matplotlib()


def _csv(path: Path | None, text_of: Any, result: Any) -> list[Path]:
    if path is None:
        return []
    from gradts_engine.store import atomic_write_text

    atomic_write_text(path, text_of(result), what="--csv")
    return [path]


def write_corr(res: Any, figure: Path | None) -> list[Path]:
    """``gradts corr --figure FILE``: the clustered task correlation heatmap."""
    if figure is None:
        return []
    from . import figures
    from .figures import plots

    return list(figures.write_one(lambda: plots.corr_heatmap(res), figure, "corr",
                                  "task correlation").paths)


def write_trial(summary: Any, figure: Path | None, csv: Path | None) -> list[Path]:
    """``gradts trial --figure FILE --csv FILE``: the scores per set; the long CSV."""
    from gradts_engine.longcsv import trial_csv

    out = _csv(csv, trial_csv, summary)
    if figure is not None:
        from . import figures
        from .figures import plots

        out += figures.write_one(lambda: plots.trial_scores(summary), figure, "trial",
                                 "trial").paths
    return out


def write_fg(store: Any, result: Any, figure: Path | None, csv: Path | None) -> list[Path]:
    """``gradts fg --figure FILE --csv FILE``: the sweep (and, beside it as
    ``<stem>-taus.<suffix>``, the instance-tau histograms); the long CSV."""
    from gradts_engine.longcsv import fg_csv

    out = _csv(csv, fg_csv, result)
    if figure is not None and result.rows:
        from gradts_engine.export import fg_instance_taus

        from . import figures
        from .figures import plots

        out += figures.write_one(lambda: plots.fg_sweep(result), figure, "fg", "fg").paths
        taus = {t: tau for t, (_, tau) in fg_instance_taus(store, result).items()}
        if taus:
            hist = figure.with_name(f"{figure.stem}-taus{figure.suffix}")
            out += figures.write_one(lambda: plots.fg_tau_hist(result, taus), hist,
                                     "fg-taus", "fg taus").paths
    return out


def write_compare(result: Any, figure: Path | None, csv: Path | None) -> list[Path]:
    """``gradts compare --figure FILE --csv FILE``: each selector's gain over the primary
    alone with its interval; the long CSV (one row per selector x seed, and the summaries)."""
    from gradts_engine.longcsv import compare_csv

    out = _csv(csv, compare_csv, result)
    if figure is not None:
        from . import figures
        from .figures import plots

        out += figures.write_one(lambda: plots.compare_gains(result), figure, "compare",
                                 "compare").paths
    return out


def report_taus(store: Any, rep: Any) -> dict[str, dict[str, Any]]:
    """Per fg primary of the report, ``{aux task: instance taus (N,)}`` (for the histograms);
    a primary whose probes are gone is left out."""
    from gradts_engine.errors import GradtsError
    from gradts_engine.export import fg_instance_taus

    out = {}
    for f in rep.fg:
        if not f.rows:
            continue
        try:
            out[f.primary] = {t: tau for t, (_, tau) in fg_instance_taus(store, f).items()}
        except GradtsError:
            continue
    return out


def write_report(store: Any, rep: Any, *, figures_dir: Path | None, html: Path | None,
                 csv: Path | None) -> tuple[list[Path], list[str]]:
    """``gradts report --figures DIR --html FILE --csv FILE``; (paths written, notes)."""
    from gradts_engine.longcsv import report_csv

    out = _csv(csv, report_csv, rep)
    notes: list[str] = []
    taus = report_taus(store, rep) if (figures_dir is not None or html is not None) else {}
    if figures_dir is not None:
        from . import figures

        for f in figures.write_report_figures(rep, figures_dir, taus):
            out += f.paths
    if html is not None:
        from .html import write_html_report

        path, missing = write_html_report(rep, html, store, taus)
        out.append(path)
        if missing:
            notes.append(f"the HTML report has no figures: {missing}")
    return out, notes
