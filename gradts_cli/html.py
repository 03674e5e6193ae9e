"""``gradts report --html``: a self-contained HTML page of a :class:`~gradts_engine.report.Report`.

The page holds the findings in sentences, the tables as real HTML tables (probes, the task
correlation matrix, candidate rankings, GradTS-trial sets, GradTS-fg cuts, the cost ledger),
the figures of :mod:`gradts_cli.figures` embedded as base64 PNG, and the provenance (model and
revision, each task's data fingerprint, library versions, settings). It loads nothing from the
network (no scripts, fonts or style sheets from elsewhere), reads at 1000 px wide (tables wrap
their cells instead of widening the page) and prints on A4 (``@page``; figures never split).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradts_engine.export import EntryProvenance
    from gradts_engine.report import Report

FIGURE_DPI = 200
SCREEN_SCALE = 1.6   # figures are drawn at paper size (3.4 in); shown larger on screen

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: #1d1d1f; max-width: 940px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.5em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.sub { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1em; font-size: 13px;
        table-layout: auto; }
tbody th { width: 30%; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 3px 6px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f5f5f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.diag { background: #fafafa; color: #aaa; text-align: center; }
tr.sel td { background: #fff4e5; }
code { font: 12.5px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f5f5f7;
       padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
figure { margin: 1em 0 1.5em; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; text-align: center; }
.note { color: #7a4b00; }
@page { size: A4; margin: 14mm; }
@media print { body { max-width: none; padding: 0; font-size: 11pt; }
               h2 { break-after: avoid; } table { font-size: 9pt; } }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, fmt: str = "{:.4f}") -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return "–"
    return "–" if not math.isfinite(float(x)) else fmt.format(x)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], num: Sequence[int] = (),
           sel: Iterable[bool] | None = None) -> str:
    """An HTML table; ``num``: columns right-aligned; cells are escaped unless pre-rendered
    (a tuple ``("html", markup)``)."""
    sel_list = list(sel) if sel is not None else None
    out = ["<table><thead><tr>"]
    out += [f'<th{" class=num" if i in num else ""}>{_e(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for r_i, row in enumerate(rows):
        cls = ' class="sel"' if sel_list is not None and sel_list[r_i] else ""
        cells = []
        for i, c in enumerate(row):
            body = c[1] if isinstance(c, tuple) and c and c[0] == "html" else _e(c)
            cells.append(f'<td{" class=num" if i in num else ""}>{body}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# sections


def _findings(rep: Report) -> str:
    parts = ["<h2>Findings: what was chosen and why</h2><ul>"]
    parts += [f"<li>{_e(f)}</li>" for f in rep.findings]
    parts.append("</ul>")
    if rep.notes or rep.corr_note:
        parts += [f'<p class="note">{_e(n)}</p>' for n in (*rep.notes, rep.corr_note) if n]
    if rep.next_steps:
        parts.append("<h3>Next steps</h3><ul>")
        parts += [f"<li><code>{_e(s)}</code></li>" for s in rep.next_steps]
        parts.append("</ul>")
    return "".join(parts)


def _probes(rep: Report) -> str:
    rows = [(p.task, p.instances, p.measure, p.dev_metric or "–",
             _num(p.dev_score), _num(p.train_loss), _num(p.seconds, "{:.1f}"),
             _num(p.examples_per_s, "{:.1f}"), p.device or "–") for p in rep.probes]
    return ("<h2>Tasks probed</h2>"
            + _table(["task", "train examples", "measure", "dev metric", "dev score",
                      "final train loss", "seconds", "examples/s", "device"], rows,
                     num=(1, 4, 5, 6, 7)))


def _corr(rep: Report) -> str:
    c = rep.corr
    if c is None:
        return ""
    tasks = list(c.tasks)
    out = [f"<h2>Task correlation</h2><p>{_e(c.method)} between the {_e(c.estimator)} "
           f"head-importance matrices ({c.shape[0]} layers × {c.shape[1]} heads); "
           "* marks p &lt; 0.05 (uncorrected).</p>"]
    rows = []
    for i, a in enumerate(tasks):
        cells: list[Any] = [a]
        for j, _b in enumerate(tasks):
            if i == j:
                cells.append(("html", "·"))
                continue
            s, pv = float(c.stats[i, j]), float(c.pvalues[i, j])
            star = "*" if math.isfinite(pv) and pv < 0.05 else ""
            cells.append(_num(s, "{:+.2f}") + star)
        rows.append(cells)
    out.append(_table(["", *tasks], rows, num=tuple(range(1, len(tasks) + 1))))
    out.append("<h3>Candidate rankings</h3>")
    rank_rows = []
    for p in c.primaries:
        ranked = c.rankings.get(p, ())
        rank_rows.append((p, ", ".join(f"{r.rank}. {r.task} ({_num(r.stat, '{:+.2f}')})"
                                       for r in ranked[:5]) + (" …" if len(ranked) > 5 else "")))
    out.append(_table(["primary", "candidates, best first (statistic)"], rank_rows))
    return "".join(out)


def _trials(rep: Report) -> str:
    out = []
    for t in rep.trials:
        out.append(f"<h2>GradTS-trial: {_e(t.primary)}</h2>")
        recs = [*t.trials, *t.comparisons]
        rows = [(" + ".join(r.aux) or f"{t.primary} alone", r.role, len(r.seeds),
                 _num(r.mean), _num(r.std) if len(r.seeds) > 1 else "–",
                 ", ".join(str(e) for e in r.best_epochs),
                 {True: "yes", False: "no", None: "–"}[r.improved],
                 _num(r.seconds, "{:.1f}")) for r in recs]
        sel = [tuple(r.aux) == tuple(t.selected) and r.role != "random" for r in recs]
        out.append(_table(["set", "role", "seeds", f"dev {t.main_metric}", "s.d.",
                           "best epoch(s)", "improved", "seconds"], rows,
                          num=(2, 3, 4, 7), sel=sel))
        v = t.verdict
        ci = (f" (paired bootstrap {round(100 * v.level)}% interval "
              f"{_num(v.ci_low, '{:+.4f}')} to {_num(v.ci_high, '{:+.4f}')}, "
              f"{v.n_examples} dev examples)" if v.ci_low is not None else "")
        out.append(f"<p>Selected: <b>{_e(' + '.join(t.selected) or 'none')}</b>; "
                   f"difference against the baseline {_num(v.diff, '{:+.4f}')}{_e(ci)}: "
                   f"{_e(v.message)}. Stop: {_e(t.stop_reason)}.</p>")
        for h in t.holdout:
            out.append(f"<p>{_e(h.kind)} ({_e(h.split)}, {h.n_examples} examples): "
                       f"{_e(h.message)}</p>")
    return "".join(out)


def _fgs(rep: Report) -> str:
    out = []
    for f in rep.fg:
        out.append(f"<h2>GradTS-fg: {_e(f.primary)}</h2><p>Auxiliary tasks "
                   f"{_e(', '.join(f.aux) or 'none')} (from {_e(f.aux_source)}); instances "
                   f"scored by {_e(f.method)} against the primary's {_e(f.estimator)} "
                   f"matrix. Baseline ({_e(f.primary)} alone): {_num(f.baseline.mean)}"
                   + (f"; trial set {_e(' + '.join(f.trial.aux))}: {_num(f.trial.mean)}"
                      if f.trial is not None else "") + ".</p>")
        best = f.best
        rows = [(r.cut.label, "; ".join(f"{k.task} {k.kept}/{k.total}" for k in r.kept),
                 _num(r.fraction, "{:.3f}"), _num(r.mean),
                 _num(r.std) if len(r.seeds) > 1 else "–",
                 _num(r.mean - f.baseline.mean, "{:+.4f}"),
                 (f"{_num(r.ci_low, '{:+.4f}')} to {_num(r.ci_high, '{:+.4f}')}"
                  if r.ci_low is not None else "–")) for r in f.rows]
        out.append(_table(["cut", "kept per task", "fraction", f"dev {f.main_metric}", "s.d.",
                           "Δ baseline", "interval of Δ"], rows, num=(2, 3, 4, 5),
                          sel=[r is best for r in f.rows]))
    return "".join(out)


def _costs(rep: Report) -> str:
    rows = [(c.stage, c.runs, _num(c.seconds, "{:.1f}"),
             "–" if c.wall_s is None else _num(c.wall_s, "{:.1f}"), c.device, c.detail)
            for c in rep.costs]
    total = sum(c.seconds for c in rep.costs)
    return ("<h2>Cost ledger</h2>"
            + _table(["stage", "runs", "device-seconds", "wall seconds", "device", "what"], rows,
                     num=(1, 2, 3))
            + f"<p>Total recorded compute: {total:.1f} device-seconds (summed over the "
              "processes of a torchrun launch).</p>")


def _provenance(rep: Report, prov: Sequence[EntryProvenance]) -> str:
    facts = [("model", rep.model_name), ("model id (revision or path)", rep.model),
             ("measure / estimator / method", f"{rep.measure} / {rep.estimator} / {rep.method}"),
             ("store", rep.store_root), ("report created", rep.created)]
    out = ["<h2>Provenance</h2><table><tbody>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts]
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted(p.versions.items()))
                       for p in prov})
    out += [f"<tr><th>versions</th><td>{_e(v)}</td></tr>" for v in versions]
    out.append("</tbody></table>")
    if prov:
        code = lambda x: ("html", f"<code>{_e(x or '–')}</code>")  # noqa: E731
        out.append("<h3>Stored results used</h3>")
        out.append(_table(["task", "entry", "data fingerprint", "created", "store key"],
                          [(p.task or "–", p.kind, code(p.data), p.created or "–", code(p.key))
                           for p in prov]))
        out.append("<h3>Settings</h3>")
        out.append(_table(["task", "entry", "settings"],
                          [(p.task or "–", p.kind,
                            ", ".join(f"{k}={v}" for k, v in sorted(p.settings.items())))
                           for p in prov]))
    return "".join(out)


def _figures(figs: Sequence[tuple[str, str, bytes]], missing: str | None) -> str:
    out = ["<h2>Figures</h2>"]
    if missing:
        out.append(f'<p class="note">{_e(missing)}</p>')
    for name, title, png in figs:
        w = _png_width(png)
        style = f' style="width:{w * 96 * SCREEN_SCALE / FIGURE_DPI:.0f}px"' if w else ""
        out.append(f'<figure id="fig-{_e(name)}"><img alt="{_e(title)}"{style} '
                   f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                   f"<figcaption>{_e(title)}</figcaption></figure>")
    return "".join(out)


def _png_width(png: bytes) -> int | None:
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(png[16:20], "big")


def render_html(rep: Report, figures: Sequence[tuple[str, str, bytes]] = (),
                provenance: Sequence[EntryProvenance] = (),
                figures_missing: str | None = None) -> str:
    """The whole page as a string (see the module docstring)."""
    title = f"gradts report — {rep.model_name}"
    primary = f", primary {rep.primary}" if rep.primary else ""
    body = [f"<h1>{_e(title)}</h1><p class=sub>{len(rep.probes)} tasks{_e(primary)}; "
            f"created {_e(rep.created)}</p>", _findings(rep)]
    if figures or figures_missing:
        body.append(_figures(figures, figures_missing))
    body += [_probes(rep), _corr(rep), _trials(rep), _fgs(rep), _costs(rep),
             _provenance(rep, provenance)]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_html_report(rep: Report, path: Path, store: Any,
                      taus: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[Path, str | None]:
    """Render the report with its figures and provenance, write it atomically to ``path``.

    Returns the path and, when matplotlib is missing, the note printed in place of the
    figures (the page is still written).
    """
    from gradts_engine.export import provenance
    from gradts_engine.store import atomic_write_text

    from . import figures as F

    figs: list[tuple[str, str, bytes]] = []
    missing = None
    try:
        F.require_matplotlib()
    except F.PlotUnavailableError as e:
        missing = f"Figures need matplotlib: {F.PLOT_HINT}"
        del e
    else:
        import matplotlib.pyplot as plt

        for name, title, fig in F.report_figures(rep, taus):
            try:
                figs.append((name, title, F.render_bytes(fig, "png", dpi=FIGURE_DPI)))
            finally:
                plt.close(fig)
    keys = [p.key for p in rep.probes] + [t.key for t in rep.trials if t.key] \
        + [f.key for f in rep.fg if f.key]
    atomic_write_text(path, render_html(rep, figs, provenance(store, keys), missing),
                      what="--html")
    return path, missing
