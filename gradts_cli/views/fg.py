"""``gradts fg``: the instances kept per auxiliary task and cut, the runs table (shared with
``report``) against the primary alone and the trial's set, the score-against-data chart, and
the live progress."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gradts_engine.progress import NoteKind, Stage

from .. import output
from . import progress as live
from .widgets import (
    CHANCE_NOTE,
    Col,
    at_chance,
    bar,
    chance_text,
    delta,
    dim,
    duration,
    plural,
    score,
    table,
)


def note_text(note: Any) -> Text:
    """An engine note: a warning in yellow, information dim (by its :class:`NoteKind`; a plain
    string is a caveat the user should read, so it is shown as a warning)."""
    kind = getattr(note, "kind", NoteKind.WARNING)
    text = str(getattr(note, "text", note))
    return Text(text, style="yellow" if kind == NoteKind.WARNING else "dim")


def kept_table(res: Any) -> RenderableType:
    dist = {d.task: d for d in res.taus}
    cols: list[Col | str] = ["auxiliary task", *[Col(c, "right") for c in
                                                 ("tau median", "q90", "max")],
                             *[Col(r.cut.label, "right") for r in res.rows]]
    rows: list[list[Any]] = []
    for i, task in enumerate(res.aux):
        d = dist.get(task)
        stats = ([f"{d.median:+.2f}", f"{d.q90:+.2f}", f"{d.max:+.2f}"] if d is not None
                 else ["–", "–", "–"])
        rows.append([task, *stats, *[f"{r.kept[i].kept}/{r.kept[i].total}" for r in res.rows]])
    if len(res.aux) > 1:
        rows.append([Text("all", style="bold"), "", "", "",
                     *[Text(f"{100 * r.fraction:.0f}%", style="bold") for r in res.rows]])
    return table(f"instances kept: {res.method} tau of each instance's matrix against "
                 f"{res.primary}'s {res.estimator} matrix ({res.measure})", cols, rows)


def runs_table(res: Any, *, n_classes: int | None = None,
               cached_column: bool = True) -> RenderableType:
    """One row per cut (aux data kept, score, against the primary alone and the trial's set),
    then the two references."""
    n_seeds = len(res.seeds)
    seeds = f"seed {res.seeds[0]}" if n_seeds == 1 else f"{n_seeds} seeds: mean ± std"
    cols: list[Col | str] = ["run", Col("aux data", "right"), Col(res.main_metric, "right"),
                             Col("vs alone", "right")]
    if res.trial is not None:
        cols.append(Col("vs trial", "right"))
    if cached_column:
        cols.append("cached")
    best = res.best
    any_trained = any(not r.primary_alone for r in res.rows)
    rows: list[list[Any]] = []
    for r in res.rows:
        is_best = best is not None and r is best and len(res.rows) > 1 and any_trained
        style = "bold green" if is_best else ""
        label = ("→ " if is_best else "  ") + r.cut.label
        if r.primary_alone and res.aux:
            label += " (alone)"
        flag = at_chance(res.main_metric, r.mean, n_classes=n_classes)
        cells: list[Any] = [Text(label, style=style), f"{100 * r.fraction:.0f}%",
                            Text(score(r.mean, r.std, n_seeds), style=style) + chance_text(flag),
                            delta(r.mean - res.baseline.mean)]
        if res.trial is not None:
            cells.append(delta(r.mean - res.trial.mean))
        if cached_column:
            cells.append("yes" if r.all_cached else "no" if not any(r.cached)
                         else f"{sum(r.cached)}/{len(r.cached)}")
        rows.append(cells)
    chance = any(at_chance(res.main_metric, r.mean, n_classes=n_classes) for r in res.rows)
    refs = [("primary alone", "0%", res.baseline)]
    if res.trial is not None:
        refs.append(("trial set" + (" (all)" if res.trial.source == "ledger" else ""), "100%",
                     res.trial))
    for name, frac, ref in refs:
        cells = [dim("  " + name), dim(frac), dim(score(ref.mean, ref.std, len(ref.scores))), ""]
        if res.trial is not None:
            cells.append("")
        if cached_column:
            cells.append(dim(ref.source))
        rows.append(cells)
    return table(f"GradTS-fg for {res.primary}: {res.main_metric} on dev at the best epoch "
                 f"({seeds})", cols, rows, caption=CHANCE_NOTE if chance else None)


def chart(res: Any, width: int = 32) -> RenderableType | None:
    """Score against the fraction of auxiliary data kept, as unicode bars (sorted by fraction):
    the baseline (0% kept) first and the trial's set (100%) last when known."""
    rows: list[tuple[str, float, float, float]] = [
        ("primary alone", 0.0, res.baseline.mean, res.baseline.std)]
    for r in sorted(res.rows, key=lambda r: (r.fraction, -r.cut.value)):
        rows.append((r.cut.label, r.fraction, r.mean, r.std))
    if res.trial is not None:
        rows.append(("trial set (all)", 1.0, res.trial.mean, res.trial.std))
    vals = [v for _, _, v, _ in rows if v is not None and math.isfinite(v)]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    pad = max(0.01, 0.25 * (hi - lo))
    lo = max(0.0, lo - pad) if lo >= 0 else lo - pad
    t = Table(title=f"{res.main_metric} against auxiliary data kept (bars from {lo:.3f})",
              title_justify="left", box=None, show_header=False, pad_edge=False)
    t.add_column(justify="right", style="dim", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True, min_width=width)
    t.add_column(justify="right", no_wrap=True)
    top = max(vals)
    for label, frac, mean, std in rows:
        t.add_row(label, f"{100 * frac:3.0f}%",
                  Text(bar(mean, lo, hi, width), style="bold green" if mean == top else "cyan"),
                  score(mean, std, len(res.seeds)))
    return t


def _best_line(res: Any) -> Text | None:
    trained = [r for r in res.rows if not r.primary_alone]
    if res.best is None or not res.aux or not trained:
        return None
    best = max(trained, key=lambda r: r.mean if math.isfinite(r.mean) else -math.inf)
    diff = best.mean - res.baseline.mean
    msg = (f"{'best cut' if len(res.rows) > 1 else 'cut'}: {best.cut.label} "
           f"({100 * best.fraction:.0f}% of the auxiliary data), {diff:+.4f} {res.main_metric} "
           "over the primary alone")
    if best.ci_low is not None and best.ci_high is not None:
        inside = best.ci_low <= 0.0 <= best.ci_high
        msg += (f"; 90% bootstrap interval over dev examples [{best.ci_low:+.4f}, "
                f"{best.ci_high:+.4f}]" + (" includes 0: within the noise" if inside else ""))
    if res.trial is not None:
        msg += f"; {best.mean - res.trial.mean:+.4f} against the trial's set"
    return Text(msg)


def renderables(res: Any, *, n_classes: int | None = None) -> list[RenderableType]:
    aux = " + ".join(res.aux) if res.aux else "none"
    source = "from the trial" if res.aux_source == "trial" else "--aux"
    items: list[RenderableType] = [dim(f"auxiliary set ({source}): {aux}")]
    if res.aux:
        items.append(kept_table(res))
    items.append(runs_table(res, n_classes=n_classes))
    if res.trial is not None:
        items.append(dim(f"trial set: {res.trial.label}"))
    if len(res.rows) > 1 and (c := chart(res)) is not None:
        items.append(c)
    if (line := _best_line(res)) is not None:
        items.append(line)
    items += [note_text(n) for n in res.notes]
    return items


def footer(res: Any) -> str:
    runs = {k for r in res.rows for k in r.ledger} | set(res.baseline.ledger)
    return (f"[dim]{plural(res.trained, 'run')} trained, {max(0, len(runs) - res.trained)} "
            f"reused from the cache, in {duration(res.seconds)}; model {res.model_name}; "
            f"result: {res.key}[/dim]")


# -- progress ---------------------------------------------------------------------------------
@contextmanager
def progress(primary: str, main_metric: str) -> Iterator[live.Callback]:
    """Rich progress on a TTY (the run being trained, its step, loss and dev score), one line
    per finished run and epoch otherwise."""
    live.begin("fg run")
    nan = float("nan")
    if output.is_quiet():
        yield live.guarded(lambda event: None)
        return

    def line(event: Any) -> str | None:
        if event.stage != Stage.FG_RUN:
            return None
        m = event.metrics
        tag = " (cached)" if m.get("cached") else ""
        return (f"{event.message}: {main_metric} {m.get(main_metric, nan):.4f} at epoch "
                f"{int(m.get('epoch', 0))}{tag}")

    if not output.err.is_terminal:
        def on_plain(event: Any) -> None:
            m = event.metrics
            if event.stage == Stage.FG_START:
                output.err.print(f"training {event.message}")
            elif event.stage == Stage.MTL_EPOCH:
                output.err.print(f"  {event.message}: epoch {event.done}/{event.total}  loss "
                                 f"{m.get(f'loss_{primary}', nan):.4f}  dev {main_metric} "
                                 f"{m.get(main_metric, nan):.4f}")
            elif (text := line(event)) is not None:
                output.err.print(text)
        yield live.guarded(on_plain)
        return

    with live.running(output.progress_display("{task.fields[metrics]}", transient=True)) as bars:
        current: dict[str, Any] = {}

        def on_event(event: Any) -> None:
            m = event.metrics
            if event.stage == Stage.FG_START:
                if "id" in current:
                    bars.remove_task(current["id"])
                current.clear()
                current["id"] = bars.add_task(event.message, total=None, metrics="")
            elif event.stage == Stage.MTL and "id" in current:
                status = f"epoch {int(m.get('epoch', 1))}  loss {m.get('loss', nan):.4f}"
                if main_metric in m:
                    status += f"  dev {m[main_metric]:.4f}"
                bars.update(current["id"], completed=event.done, total=event.total,
                            metrics=status)
            elif (done := line(event)) is not None:
                if "id" in current and not m.get("cached"):
                    bars.remove_task(current.pop("id"))
                bars.console.print(done)
        yield live.guarded(on_event)
