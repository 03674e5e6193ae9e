"""The only place that prints (DESIGN.md §3, §6).

Data (tables, JSON) go to stdout through :data:`out`; messages, warnings, errors and progress go
to stderr through :data:`err`. Progress bars are drawn only when stderr is a terminal;
``--quiet`` silences messages and progress (never data or errors). ``--json`` output is one
JSON document on stdout, always parseable.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from gradts_engine.progress import Progress

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)
_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


# -- messages ---------------------------------------------------------------------------------
def info(message: str) -> None:
    if not _state["quiet"]:
        err.print(message)


def success(message: str) -> None:
    if not _state["quiet"]:
        err.print(f"[green]✓[/green] {message}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


def error_line(message: str, hint: str | None = None) -> None:
    """One line: ``error: <what is wrong> — <what to do>`` (no traceback)."""
    text = Text("error: ", style="bold red")
    text.append(message)
    if hint:
        text.append(" — ", style="dim")
        text.append(hint, style="cyan")
    err.print(text, soft_wrap=True)


# -- data -------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    from gradts_engine.serialize import to_jsonable

    return to_jsonable(obj)


def print_json(obj: Any) -> None:
    """One JSON document on stdout (NaN becomes null, so the output is strict JSON)."""
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
          justify: Sequence[str] | None = None, caption: str | None = None) -> None:
    t = Table(title=title, caption=caption, header_style="bold", title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify=(justify[i] if justify else "left"))  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*[c if isinstance(c, Text) else Text(str(c)) for c in r])
    out.print(t)


def print_text(text: str | Text) -> None:
    out.print(text)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if digits and abs(x) <= 1.0 else f"{x:.{digits}f}"


def corr_cell(x: float | None) -> Text:
    """A correlation value coloured from red (−1) through grey (0) to green (+1)."""
    if x is None or math.isnan(x):
        return Text("–", style="dim")
    style = "bold green" if x >= 0.5 else "green" if x >= 0.2 else (
        "red" if x <= -0.2 else "white" if abs(x) < 0.2 else "")
    return Text(f"{x:+.2f}", style=style)


_SHADES = " ░▒▓█"


def heatmap(matrix: Any, title: str, *, row_label: str = "L", col_label: str = "H") -> None:
    """A compact terminal heatmap of a (rows, cols) matrix, scaled to its own min and max."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    span = hi - lo if hi > lo else 1.0
    t = Table(title=title, title_justify="left", show_header=True, header_style="dim",
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
    out.print(t)
    out.print(Text(f"  {col_label} = head index; shading from {lo:.3g} to {hi:.3g}", style="dim"))


# -- progress ---------------------------------------------------------------------------------
def _progress_bars(fields: str, *, transient: bool, remaining: bool = False) -> Any:
    """The Rich progress display every live view uses: spinner, description, bar, count,
    elapsed (and remaining) time, then ``fields`` (a column template of the task's fields)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return RichProgress(*columns, TextColumn(fields), console=err, transient=transient)


@contextmanager
def progress_reporter() -> Iterator[Any]:
    """A callback for engine :class:`Progress` events: Rich bars on a TTY, else sparse lines."""
    if _state["quiet"]:
        yield lambda event: None
        return
    if err.is_terminal:
        bars: dict[tuple[str, str | None], Any] = {}
        with _progress_bars("{task.fields[metrics]}", transient=False, remaining=True) as bar:
            def on_event(event: Progress) -> None:
                key = (event.stage, event.task)
                desc = f"{event.stage}" + (f" [bold]{event.task}[/bold]" if event.task else "")
                if event.message:
                    desc += f" {event.message}"
                metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
                if key not in bars:
                    bars[key] = bar.add_task(desc, total=event.total, metrics=metrics)
                bar.update(bars[key], completed=event.done, total=event.total,
                           description=desc, metrics=metrics)
            yield on_event
        return

    last: dict[tuple[str, str | None], float] = {}

    def on_plain(event: Progress) -> None:
        key = (event.stage, event.task)
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if not finished and now - last.get(key, 0.0) < 10.0:
            return
        last[key] = now
        where = f"{event.stage}" + (f" {event.task}" if event.task else "")
        count = f" {event.done}/{event.total}" if event.total else ""
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
        err.print(f"{where}{count} {event.message} {metrics}".rstrip())

    yield on_plain


# -- probe ------------------------------------------------------------------------------------
def is_interactive() -> bool:
    """Whether we may ask the user (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and err.is_terminal


def choose_tasks(names: Sequence[str], suites: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], str | None]:
    """Offer the registered tasks and suites; return (task names, suite or None)."""
    from rich.prompt import Prompt

    from gradts_engine.errors import UsageError

    grouped = {n for members in suites.values() for n in members}
    t = Table(title="registered tasks", title_justify="left", header_style="bold")
    t.add_column("suite")
    t.add_column("tasks")
    for suite, members in suites.items():
        t.add_row(suite, ", ".join(members))
    others = [n for n in names if n not in grouped]
    if others:
        t.add_row("(other)", ", ".join(others))
    err.print(t)
    answer = Prompt.ask("Tasks to probe (comma-separated names, or one suite name)",
                        console=err).strip()
    if answer in suites:
        return [], answer
    picked = [a.strip() for a in answer.split(",") if a.strip()]
    if not picked:
        raise UsageError("no tasks chosen", hint="pass --task NAME or --suite NAME")
    return picked, None


def probe_report(run: Any, estimator: str = "during") -> None:
    """The probe's summary table, then a heatmap of each task's ``estimator`` matrix."""
    rows = []
    root = None
    for o in run.outcomes:
        r = o.result
        root = r.store.root
        rows.append((o.task, f"{r.num_instances}", f"{o.seconds:.1f}s",
                     Text("cached", style="dim") if o.cached else Text("new", style="green"),
                     r.entry.key_path))
    n_cached = sum(o.cached for o in run.outcomes)
    table(f"probe: {run.model} (measure {run.measure})",
          ["task", "examples", "time", "status", "cache entry"], rows,
          justify=["left", "right", "right", "left", "left"],
          caption=f"{len(rows)} tasks, {n_cached} from the cache; store: {root}")
    for o in run.outcomes:
        r = o.result
        bits = [f"{r.num_layers} layers x {r.num_heads} heads"]
        loss = (r.info.get("train") or {}).get("final_loss")
        if isinstance(loss, (int, float)):
            bits.append(f"final train loss {loss:.3g}")
        dev = r.info.get("dev") or {}
        main = dev.get("main")
        if isinstance(main, (int, float)):
            bits.append(f"dev {dev.get('metric', 'score')} {main:.3f} (n={dev.get('n')})")
        out.print()
        out.print(Text(f"{o.task}: {estimator} importance; " + ", ".join(bits), style="bold"))
        heatmap(r.matrix(estimator), "")


# -- corr -------------------------------------------------------------------------------------
_SPARK = "▁▂▃▄▅▆▇█"
_SYMBOL = {"kendall": "τ", "spearman": "ρ", "pearson": "r"}


def sparkline(counts: Sequence[int]) -> str:
    """Histogram counts as unicode bars scaled to the largest; an empty bin is a space."""
    top = max(counts) if len(counts) else 0
    if top <= 0:
        return " " * len(counts)
    return "".join(" " if c == 0 else _SPARK[min(7, int(c / top * 7 + 0.5))] for c in counts)


def pvalue_text(p: float | None) -> Text:
    """A p-value: ``<.001``, ``.042``, ``1.00``; bold below .05, dim from .05 up."""
    if p is None or math.isnan(p):
        return Text("–", style="dim")
    s = "<.001" if p < 0.001 else (f"{p:.3f}".lstrip("0") if p < 1.0 else "1.00")
    return Text(s, style="bold" if p < 0.05 else "dim")


def _ci(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "–"
    return f"{lo:+.2f} … {hi:+.2f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.0%}"


def _corr_table(title: str, columns: Sequence[tuple[str, str, bool]],
                rows: Sequence[Sequence[Any]]) -> None:
    """A table whose columns are (header, justify, no_wrap); the task column may wrap."""
    t = Table(title=title, header_style="bold", title_justify="left")
    for name, justify, no_wrap in columns:
        t.add_column(name, justify=justify, no_wrap=no_wrap)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*[c if isinstance(c, Text) else Text(str(c)) for c in r])
    out.print(t)


def _square_table(res: Any, title: str, cell: Any, values: Any) -> None:
    T = len(res.tasks)
    cols = [("#", "right", True), ("task", "left", False),
            *[(str(j + 1), "right", True) for j in range(T)]]
    rows = [[Text(str(i + 1), style="dim"), name,
             *[Text("·", style="dim") if i == j else cell(float(values[i, j])) for j in range(T)]]
            for i, name in enumerate(res.tasks)]
    _corr_table(title, cols, rows)


def corr_report(res: Any, *, pvalues: bool = False, heatmaps: bool = False) -> None:
    """``gradts corr``: the task x task matrix, rankings, instance level and heatmaps."""
    sym = _SYMBOL.get(res.method, res.method)
    for w in res.warnings:
        warn(w)
    where = f"{res.model_name}, measure {res.measure}, {res.estimator} estimator"
    _square_table(res, f"{res.method} {sym} between tasks ({where})", corr_cell, res.stats)
    if pvalues:
        _square_table(res, f"two-sided p-values of {sym}", pvalue_text, res.pvalues)

    boot = res.bootstrap
    for p in res.primaries:
        cols = [("rank", "right", True), ("candidate", "left", False), (sym, "right", True),
                ("p", "right", True)]
        brow = {r.task: r for r in boot.rows.get(p, ())} if boot is not None else {}
        same = boot is not None and res.estimator == boot.estimator
        if brow:
            pct = f"{boot.level:.0%}"
            if same:
                cols += [(f"{pct} interval", "left", True), ("kept", "right", True)]
            else:
                e = boot.estimator
                cols += [(f"{e} {sym}", "right", True), (f"{e} rank", "right", True),
                         (f"{pct} interval", "left", True), ("kept", "right", True)]
        rows = []
        for c in res.rankings[p]:
            row: list[Any] = [str(c.rank), Text(c.task, style="bold" if c.rank == 1 else ""),
                              corr_cell(c.stat), pvalue_text(c.pvalue)]
            b = brow.get(c.task)
            if brow and same:
                row += [_ci(c.ci_low, c.ci_high), _pct(c.rank_stability)]
            elif brow:
                row += ([corr_cell(b.stat), str(b.rank), _ci(b.ci_low, b.ci_high),
                         _pct(b.rank_stability)] if b else ["–"] * 4)
            rows.append(row)
        _corr_table(f"candidates for {p} (highest {sym} first)", cols, rows)
        if brow:
            out.print(Text(
                f"  bootstrap: {boot.n_boot} resamples of every task's instances (seed "
                f"{boot.seed}); interval = {boot.level:.0%} percentile interval of {sym}; kept = "
                f"share of resamples in which the candidate keeps its {boot.estimator} rank",
                style="dim"))
            if boot.note:
                out.print(Text(f"  note: {boot.note}", style="yellow"))

    if res.instances is not None:
        rows = []
        thr: list[float] = [0.5, 0.62, 0.7]
        for r in res.instances:
            label = Text(r.task) + (Text(" (own)", style="dim") if r.is_primary else Text(""))
            s = r.summary
            if s is None:
                rows.append([label, "–", "–", "–", "–", "–", "–",
                             Text(r.note or "no instances", style="yellow")])
                continue
            thr = list(s.frac_above)
            rows.append([label, str(s.n), corr_cell(s.mean), corr_cell(s.median),
                         *[_pct(v) for v in s.frac_above.values()],
                         Text(sparkline(s.hist_counts), style="cyan")])
        cols = [("task", "left", False), ("n", "right", True), ("mean", "right", True),
                ("median", "right", True), *[(f">{t:g}", "right", True) for t in thr],
                (f"{sym} from -1 to +1", "left", True)]
        _corr_table(f"instance level: {res.primary}'s {res.estimator} matrix against each "
                    f"instance's ({sym})", cols, rows)
        out.print(Text("  GradTS-fg keeps the instances above a threshold (0.62 in the "
                       "original); (own) = the primary's own instances, for reference",
                       style="dim"))

    if heatmaps:
        out.print(Text(f"head importance, {res.estimator} estimator (rows: layers, columns: "
                       "heads)", style="bold"))
        for t in res.tasks:
            heatmap(res.matrices[t], t)
    info(f"[dim]{len(res.tasks)} tasks in {res.elapsed_s:.2f} s (read from the store; nothing "
         f"trained)[/dim]")


# -- trial ------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _score(mean: float, std: float, n: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.4f}" if n <= 1 else f"{mean:.4f} ± {std:.4f}"


@contextmanager
def trial_live(primary: str, main_metric: str) -> Iterator[Any]:
    """A callback for ``run_trial`` progress: a live table of the trial runs on a TTY (set,
    seed, epoch, loss, dev score), one line per finished run and epoch otherwise."""
    if _state["quiet"]:
        yield lambda event: None
        return
    done: list[tuple[str, str, str, str]] = []   # set, score, best epoch, status
    cur: dict[str, Any] = {}

    def on_plain(event: Progress) -> None:
        m = event.metrics
        if event.stage == "mtl-epoch":
            loss = m.get(f"loss_{primary}", float("nan"))
            err.print(f"  {event.message}: epoch {event.done}/{event.total}  loss {loss:.4f}  "
                      f"dev {main_metric} {m.get(main_metric, float('nan')):.4f}")
        elif event.stage == "trial-run":
            tag = " (cached)" if m.get("cached") else ""
            err.print(f"{event.message}: {main_metric} {m.get(main_metric, float('nan')):.4f} "
                      f"at epoch {int(m.get('epoch', 0))}{tag}")

    if not err.is_terminal:
        yield on_plain
        return
    from rich.live import Live

    def render() -> Table:
        t = Table(title=f"GradTS-trial for {primary} ({main_metric} on dev)",
                  title_justify="left", header_style="bold")
        for c in ("run", f"best {main_metric}", "best epoch", "status"):
            t.add_column(c)
        for row in done[-30:]:
            t.add_row(*row)
        if cur:
            status = f"epoch {cur.get('epoch', 1)}"
            if cur.get("total"):
                status += f" · step {cur.get('step', 0)}/{cur['total']}"
            if "loss" in cur:
                status += f" · loss {cur['loss']:.4f}"
            if "dev" in cur:
                status += f" · dev {cur['dev']:.4f}"
            t.add_row(Text(cur["label"], style="bold"), "…", "", Text(status, style="cyan"))
        return t

    with Live(get_renderable=render, console=err, refresh_per_second=4, transient=False):
        def on_event(event: Progress) -> None:
            m = event.metrics
            if event.stage == "trial-start":
                cur.clear()
                cur["label"] = event.message
            elif event.stage == "mtl" and cur:
                cur.update(step=event.done, total=event.total, epoch=int(m.get("epoch", 1)),
                           loss=m.get("loss", float("nan")))
                if main_metric in m:
                    cur["dev"] = m[main_metric]
            elif event.stage == "mtl-epoch" and cur:
                cur["dev"] = m.get(main_metric, float("nan"))
            elif event.stage == "trial-run":
                done.append((event.message, f"{m.get(main_metric, float('nan')):.4f}",
                             str(int(m.get("epoch", 0))),
                             "cached" if m.get("cached") else "trained"))
                cur.clear()
        yield on_event


def trial_report(res: Any) -> None:
    """Every trial of a :class:`TrialSummary`: set, mean ± spread, best epoch, time, cached;
    the baseline, the selected set marked, the noise verdict and the held-out score."""
    n_seeds = len(res.seeds)
    if res.ranking:
        ranks = ", ".join(f"{r.rank}. {r.task} {r.stat:+.2f}" for r in res.ranking)
        print_text(Text(f"ranking for {res.primary} ({res.method} tau, {res.estimator} "
                        f"importance, {res.measure}): {ranks}", style="dim"))
    seeds = (f"seed {res.seeds[0]}" if n_seeds == 1 else f"{n_seeds} seeds: mean ± std")
    t = Table(title=f"GradTS-trial: {res.primary} — {res.main_metric} on dev at the best epoch "
                    f"({seeds})", title_justify="left", header_style="bold",
              caption=res.stop_reason)
    t.add_column("trial", no_wrap=True)
    t.add_column("auxiliary tasks", overflow="fold", ratio=1)
    t.add_column(res.main_metric, justify="right", no_wrap=True)
    t.add_column("best epoch", justify="right")
    t.add_column("time", justify="right", no_wrap=True)
    t.add_column("cached")
    selected_label = None
    for rec in [*res.trials, *res.comparisons]:
        is_sel = rec.aux == tuple(res.selected) and rec.role in ("baseline", "prefix")
        if is_sel:
            selected_label = rec.label
        role = {"baseline": "baseline", "prefix": f"top-{len(rec.aux)}", "random": "random",
                "all": "all"}[rec.role]
        cached = ("yes" if rec.all_cached else "no" if not any(rec.cached)
                  else f"{sum(rec.cached)}/{len(rec.cached)}")
        style = "bold green" if is_sel else ("dim" if rec.role in ("random", "all") else "")
        t.add_row(Text(("→ " if is_sel else "  ") + role, style=style),
                  Text(rec.label, style=style),
                  Text(_score(rec.mean, rec.std, n_seeds), style=style),
                  ",".join(str(e) for e in rec.best_epochs), _duration(rec.seconds), cached)
    out.print(t)
    v = res.verdict
    if not res.selected:
        print_text(Text(f"selected: nothing — {v.message}", style="yellow"))
    else:
        print_text(Text(f"selected: {selected_label}", style="bold green"))
        print_text(Text(("within the noise: " if v.within_noise else "") + v.message,
                        style="yellow" if v.within_noise else "green"))
    for h in res.holdout:
        print_text(Text(h.message, style="dim" if h.kind == "same-dev" else ""))
    for note in res.notes:
        print_text(Text(note, style="dim"))
    total = sum(len(r.cached) for r in [*res.trials, *res.comparisons])
    info(f"[dim]{res.trained} run(s) trained, {total - res.trained} reused from the cache, in "
         f"{_duration(res.seconds)}; model {res.model_name}; summary: {res.key}[/dim]")


# -- fg ---------------------------------------------------------------------------------------
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _bar(value: float, lo: float, hi: float, width: int) -> str:
    """A horizontal unicode bar of ``value`` on [lo, hi] (eighth-block resolution)."""
    if value is None or not math.isfinite(value):
        return ""
    frac = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    eighths = int(round(frac * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


@contextmanager
def fg_live(primary: str, main_metric: str) -> Iterator[Any]:
    """A callback for ``run_fg`` progress: Rich progress on a TTY (the run being trained, its
    step, loss and dev score), one line per finished run and epoch otherwise."""
    if _state["quiet"]:
        yield lambda event: None
        return

    def line(event: Progress) -> str | None:
        m = event.metrics
        if event.stage == "fg-run":
            tag = " (cached)" if m.get("cached") else ""
            return (f"{event.message}: {main_metric} {m.get(main_metric, float('nan')):.4f} at "
                    f"epoch {int(m.get('epoch', 0))}{tag}")
        return None

    if not err.is_terminal:
        def on_plain(event: Progress) -> None:
            m = event.metrics
            if event.stage == "mtl-epoch":
                loss = m.get(f"loss_{primary}", float("nan"))
                err.print(f"  {event.message}: epoch {event.done}/{event.total}  loss "
                          f"{loss:.4f}  dev {main_metric} {m.get(main_metric, float('nan')):.4f}")
            elif (text := line(event)) is not None:
                err.print(text)
        yield on_plain
        return

    with _progress_bars("{task.fields[metrics]}", transient=True) as bar:
        current: dict[str, Any] = {}

        def on_event(event: Progress) -> None:
            m = event.metrics
            if event.stage == "fg-start":
                if "id" in current:
                    bar.remove_task(current["id"])
                current.clear()
                current["id"] = bar.add_task(event.message, total=None, metrics="")
            elif event.stage == "mtl" and "id" in current:
                status = f"epoch {int(m.get('epoch', 1))}  loss {m.get('loss', float('nan')):.4f}"
                if main_metric in m:
                    status += f"  dev {m[main_metric]:.4f}"
                bar.update(current["id"], completed=event.done, total=event.total,
                           metrics=status)
            elif (done := line(event)) is not None:
                if "id" in current and not m.get("cached"):
                    bar.remove_task(current.pop("id"))
                bar.console.print(done)
        yield on_event


def fg_report(res: Any) -> None:
    """A GradTS-fg result: the instances kept per auxiliary task and cut (with each task's tau
    distribution), the score per cut against the baseline and the trial's set, and with several
    cuts a chart of score against the fraction of auxiliary data kept."""
    n_seeds = len(res.seeds)
    main = res.main_metric
    seeds = f"seed {res.seeds[0]}" if n_seeds == 1 else f"{n_seeds} seeds: mean ± std"
    aux = " + ".join(res.aux) if res.aux else "none"
    print_text(Text(f"auxiliary set ({'from the trial' if res.aux_source == 'trial' else '--aux'})"
                    f": {aux}", style="dim"))
    if res.aux:
        dist = {d.task: d for d in res.taus}
        k = Table(title=f"instances kept: {res.method} tau of each instance's matrix against "
                        f"{res.primary}'s {res.estimator} matrix ({res.measure})",
                  title_justify="left", header_style="bold")
        k.add_column("auxiliary task", no_wrap=True)
        for c in ("tau median", "q90", "max"):
            k.add_column(c, justify="right", no_wrap=True)
        for r in res.rows:
            k.add_column(r.cut.label, justify="right", no_wrap=True)
        for i, task in enumerate(res.aux):
            d = dist.get(task)
            stats = ([f"{d.median:+.2f}", f"{d.q90:+.2f}", f"{d.max:+.2f}"] if d is not None
                     else ["–", "–", "–"])
            counts = [f"{r.kept[i].kept}/{r.kept[i].total}" for r in res.rows]
            k.add_row(task, *stats, *counts)
        if len(res.aux) > 1:
            k.add_row(Text("all", style="bold"), "", "", "",
                      *[Text(f"{100 * r.fraction:.0f}%", style="bold") for r in res.rows])
        out.print(k)
    t = Table(title=f"GradTS-fg: {res.primary} — {main} on dev at the best epoch ({seeds})",
              title_justify="left", header_style="bold")
    t.add_column("run", no_wrap=True)
    t.add_column("aux data", justify="right", no_wrap=True)
    t.add_column(main, justify="right", no_wrap=True)
    t.add_column("vs alone", justify="right", no_wrap=True)
    if res.trial is not None:
        t.add_column("vs trial", justify="right", no_wrap=True)
    t.add_column("cached", no_wrap=True)
    best = res.best
    any_trained = any(not r.primary_alone for r in res.rows)
    for r in res.rows:
        is_best = best is not None and r is best and len(res.rows) > 1 and any_trained
        style = "bold green" if is_best else ""
        label = ("→ " if is_best else "  ") + r.cut.label
        if r.primary_alone and res.aux:
            label += " (alone)"
        cells: list[Any] = [
            Text(label, style=style), f"{100 * r.fraction:.0f}%",
            Text(_score(r.mean, r.std, n_seeds), style=style),
            _delta(r.mean - res.baseline.mean)]
        if res.trial is not None:
            cells.append(_delta(r.mean - res.trial.mean))
        cells.append("yes" if r.all_cached else "no" if not any(r.cached)
                     else f"{sum(r.cached)}/{len(r.cached)}")
        t.add_row(*cells)
    refs = [("primary alone", "0%", res.baseline)]
    if res.trial is not None:
        refs.append(("trial set" + (" (all)" if res.trial.source == "ledger" else ""), "100%",
                     res.trial))
    for name, frac, ref in refs:
        cells = [Text("  " + name, style="dim"), Text(frac, style="dim"),
                 Text(_score(ref.mean, ref.std, len(ref.scores)), style="dim"), ""]
        if res.trial is not None:
            cells.append("")
        cells.append(Text(ref.source, style="dim"))
        t.add_row(*cells)
    out.print(t)
    if res.trial is not None:
        print_text(Text(f"trial set: {res.trial.label}", style="dim"))
    if len(res.rows) > 1:
        fg_chart(res)
    trained = [r for r in res.rows if not r.primary_alone]
    if best is not None and res.aux and trained:
        best = max(trained, key=lambda r: r.mean if math.isfinite(r.mean) else -math.inf)
        diff = best.mean - res.baseline.mean
        msg = (f"{'best cut' if len(res.rows) > 1 else 'cut'}: {best.cut.label} "
               f"({100 * best.fraction:.0f}% of the auxiliary data), {diff:+.4f} {main} over "
               "the primary alone")
        if best.ci_low is not None and best.ci_high is not None:
            inside = best.ci_low <= 0.0 <= best.ci_high
            msg += (f"; 90% bootstrap interval over dev examples [{best.ci_low:+.4f}, "
                    f"{best.ci_high:+.4f}]" + (" includes 0: within the noise" if inside else ""))
        if res.trial is not None:
            msg += f"; {best.mean - res.trial.mean:+.4f} against the trial's set"
        print_text(Text(msg))
    for note in res.notes:
        print_text(Text(note, style="yellow" if "kept no" in note or "kept any" in note
                        else "dim"))
    runs = {k for r in res.rows for k in r.ledger} | set(res.baseline.ledger)
    info(f"[dim]{res.trained} run(s) trained, {max(0, len(runs) - res.trained)} reused from the "
         f"cache, in {_duration(res.seconds)}; model {res.model_name}; result: {res.key}[/dim]")


def _delta(d: float) -> Text:
    if d is None or not math.isfinite(d):
        return Text("–", style="dim")
    return Text(f"{d:+.4f}", style="green" if d > 0 else "red" if d < 0 else "")


def fg_chart(res: Any, width: int = 32) -> None:
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
        return
    lo, hi = min(vals), max(vals)
    pad = max(0.01, 0.25 * (hi - lo))
    lo = max(0.0, lo - pad) if lo >= 0 else lo - pad
    t = Table(title=f"{res.main_metric} against auxiliary data kept (bars from {lo:.3f})",
              title_justify="left", box=None, show_header=False, pad_edge=False)
    t.add_column(justify="right", style="dim", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True, min_width=width)
    t.add_column(justify="right", no_wrap=True)
    best = max(vals)
    for label, frac, mean, std in rows:
        style = "bold green" if mean == best else "cyan"
        t.add_row(label, f"{100 * frac:3.0f}%", Text(_bar(mean, lo, hi, width), style=style),
                  _score(mean, std, len(res.seeds)))
    out.print(t)


# -- report / demo ----------------------------------------------------------------------------
def _rep_table(title: str | None, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
               caption: str | None = None) -> Table:
    """A table of (header, justify) columns; cells may be str or Text."""
    t = Table(title=title, caption=caption, header_style="bold", title_justify="left",
              caption_justify="left")
    for i, (name, justify) in enumerate(columns):
        t.add_column(name, justify=justify, no_wrap=i == 0)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*[c if isinstance(c, Text) else Text(str(c)) for c in r])
    return t


def _opt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _probe_settings(st: Mapping[str, Any]) -> str:
    return (f"{st.get('epochs', '?')} epoch(s), lr {st.get('lr', '?'):g}, batch "
            f"{st.get('batch_size', '?')}, max length {st.get('max_length', '?')}, seed "
            f"{st.get('seed', '?')}") if isinstance(st.get("lr"), (int, float)) else "–"


def report_renderables(rep: Any, *, matrix: bool = True) -> list[Any]:
    """The ``gradts report`` view as Rich renderables (printed, or recorded for SVG/HTML)."""
    items: list[Any] = []
    title = Text("gradts report", style="bold")
    title.append(f" — {rep.model_name}", style="bold cyan")
    if rep.primary:
        title.append(f" — primary {rep.primary}", style="bold")
    items.append(title)
    items.append(Text(f"store {rep.store_root}; {rep.measure} measure, {rep.estimator} "
                      f"estimator, {rep.method} tau", style="dim"))
    # what was chosen and why
    what = Text()
    for i, f in enumerate(rep.findings):
        what.append(("\n" if i else "") + "• ", style="cyan")
        what.append(f)
    from rich.panel import Panel

    items.append(Panel(what, title="what was chosen and why", title_align="left",
                       border_style="cyan"))
    # probes
    settings = {_probe_settings(p.settings) for p in rep.probes}
    rows = []
    for p in rep.probes:
        row = [Text(p.task, style="bold" if p.task == rep.primary else ""), str(p.instances),
               _opt(p.train_loss), _opt(p.dev_score),
               _duration(p.seconds) if p.seconds is not None else "–", p.device or "–"]
        if len(settings) > 1:
            row.insert(4, _probe_settings(p.settings))
        rows.append(row)
    metric = next((p.dev_metric for p in rep.probes if p.dev_metric), "dev")
    cols = [("task", "left"), ("examples", "right"), ("train loss", "right"),
            (f"dev {metric}", "right"), ("time", "right"), ("device", "left")]
    if len(settings) > 1:
        cols.insert(4, ("settings", "left"))
    items.append(_rep_table(f"probes ({len(rep.probes)} tasks)", cols, rows,
                            caption=settings.pop() if len(settings) == 1 else None))
    # correlations
    res = rep.corr
    if res is None:
        items.append(Text(rep.corr_note or "no correlations", style="yellow"))
    else:
        sym = _SYMBOL.get(res.method, res.method)
        if matrix:
            T = len(res.tasks)
            mrows = [[Text(str(i + 1), style="dim"), name,
                      *[Text("·", style="dim") if i == j else corr_cell(float(res.stats[i, j]))
                        for j in range(T)]] for i, name in enumerate(res.tasks)]
            items.append(_rep_table(f"{res.method} {sym} between tasks",
                                    [("#", "right"), ("task", "left"),
                                     *[(str(j + 1), "right") for j in range(T)]], mrows))
        if rep.primary:
            rk = res.rankings[rep.primary]
            items.append(_rep_table(
                f"candidates for {rep.primary} (by {sym})",
                [("rank", "right"), ("candidate", "left"), (sym, "right"), ("p", "right")],
                [[str(c.rank), Text(c.task, style="bold" if c.rank == 1 else ""),
                  corr_cell(c.stat), pvalue_text(c.pvalue)] for c in rk]))
        else:
            trows = []
            for t in res.tasks:
                rk = res.rankings[t][:3]
                trows.append([t, *[Text(f"{c.task} ", style="bold" if i == 0 else "")
                                   + corr_cell(c.stat) for i, c in enumerate(rk)]]
                             + [""] * (3 - len(rk)))
            items.append(_rep_table(f"top candidates per task ({sym})",
                                    [("task", "left"), ("1st", "left"), ("2nd", "left"),
                                     ("3rd", "left")], trows))
    # trials
    for s in rep.trials:
        tau = {r.task: r.stat for r in s.ranking}
        trows = []
        for rec in [*s.trials, *s.comparisons]:
            sel = rec.aux == tuple(s.selected) and rec.role in ("baseline", "prefix")
            style = "bold green" if sel else ""
            added = (corr_cell(tau.get(rec.aux[-1], float("nan")))
                     if rec.role == "prefix" and rec.aux else "")
            trows.append([Text(("→ " if sel else "  ") + rec.label, style=style), added,
                          Text(_score(rec.mean, rec.std, len(s.seeds)), style=style),
                          ",".join(str(e) for e in rec.best_epochs), _duration(rec.seconds)])
        v = s.verdict
        items.append(_rep_table(
            f"GradTS-trial for {s.primary}: {s.main_metric} on dev ({len(s.seeds)} seed(s), "
            f"{s.settings.get('epochs')} epoch(s))",
            [("auxiliary tasks", "left"), ("τ of the added", "right"), (s.main_metric, "right"),
             ("best epoch", "right"), ("time", "right")], trows,
            caption=s.stop_reason))
        items.append(Text(("within the noise: " if v.within_noise and s.selected else "")
                          + v.message, style="yellow" if v.within_noise else "green"))
        for h in s.holdout:
            items.append(Text(h.message, style="dim"))
    # fg
    for f in rep.fg:
        frows = []
        best = f.best
        for r in f.rows:
            kept = ", ".join(f"{k.task} {k.kept}/{k.total}" for k in r.kept) or "–"
            frows.append([Text(r.cut.label, style="bold" if r is best else ""), kept,
                          _score(r.mean, r.std, len(f.seeds)), _delta(r.mean - f.baseline.mean),
                          _delta(r.mean - f.trial.mean) if f.trial is not None else "–"])
        frows.append([Text("primary alone", style="dim"), "", Text(
            _score(f.baseline.mean, f.baseline.std, len(f.seeds)), style="dim"), "", ""])
        items.append(_rep_table(
            f"GradTS-fg for {f.primary}: {f.main_metric} on dev",
            [("cut", "left"), ("kept", "left"), (f.main_metric, "right"),
             ("vs alone", "right"), ("vs trial", "right")], frows))
    # costs
    if rep.costs:
        total = sum(c.seconds for c in rep.costs)
        items.append(_rep_table(
            "cost per stage (compute recorded in the store)",
            [("stage", "left"), ("runs", "right"), ("time", "right"), ("device", "left"),
             ("what", "left")],
            [[c.stage, str(c.runs), _duration(c.seconds), c.device, c.detail]
             for c in rep.costs],
            caption=f"total {_duration(total)}"))
    for n in rep.notes:
        items.append(Text(f"note: {n}", style="yellow"))
    if rep.next_steps:
        nxt = Text("next: ", style="bold")
        nxt.append("   ".join(rep.next_steps), style="cyan")
        items.append(nxt)
    return items


def report_view(rep: Any, *, matrix: bool = True) -> None:
    """``gradts report`` on stdout."""
    for item in report_renderables(rep, matrix=matrix):
        out.print(item)


def export_view(items: Sequence[Any], *, svg: Any = None, html: Any = None,
                title: str = "gradts report", width: int = 110) -> list[str]:
    """Record ``items`` on a Rich recording console and write SVG and/or HTML atomically."""
    import io

    from gradts_engine.store import atomic_write_text

    rec = Console(record=True, width=width, file=io.StringIO(), force_terminal=True,
                  color_system="truecolor", highlight=False)
    for item in items:
        rec.print(item)
    written = []
    if svg is not None:
        atomic_write_text(svg, rec.export_svg(title=title, clear=False))
        written.append(str(svg))
    if html is not None:
        atomic_write_text(html, rec.export_html(clear=False))
        written.append(str(html))
    return written


@contextmanager
def demo_progress() -> Iterator[Any]:
    """A callback for ``run_demo``: one bar per stage on a TTY (current task and step in its
    description), a line per stage, task and trial run otherwise."""
    if _state["quiet"]:
        yield lambda event: None
        return
    state: dict[str, Any] = {"stage": None, "done": 0, "total": None, "t0": time.monotonic()}

    def describe(event: Progress) -> str | None:
        """A one-line status for an inner event (None: nothing to show)."""
        m = event.metrics
        if event.stage == "fine-tune":
            loss = f" loss {m['loss']:.3f}" if "loss" in m else ""
            return f"{event.task}: fine-tune {event.done}/{event.total}{loss}"
        if event.stage == "importance":
            return f"{event.task}: importance pass {event.done}/{event.total}"
        if event.stage == "dev":
            return f"{event.task}: dev"
        if event.stage in ("trial-start", "fg-start"):
            return event.message
        if event.stage == "mtl":
            return f"{event.message or event.task}: step {event.done}/{event.total}" + (
                f" loss {m['loss']:.3f}" if "loss" in m else "")
        return None

    def finished(event: Progress) -> str | None:
        """A line worth keeping (a task probed, a trial run scored)."""
        m = event.metrics
        if event.stage == "done":
            return f"  probed {event.task} in {m.get('seconds', 0.0):.1f} s"
        if event.stage == "cached":
            return f"  {event.task}: from the cache"
        if event.stage in ("trial-run", "fg-run"):
            score = [v for k, v in m.items() if k not in ("epoch", "cached", "seed")]
            tag = " (cached)" if m.get("cached") else ""
            return (f"  {event.message}: {score[0]:.4f}{tag}" if score
                    else f"  {event.message}{tag}")
        return None

    def counts(event: Progress) -> bool:
        return event.stage in ("done", "cached", "trial-run", "fg-run", "data")

    if not err.is_terminal:
        def on_plain(event: Progress) -> None:
            if event.stage == "demo":
                if event.message != "done":
                    err.print(f"[bold]▶ {event.message}[/bold] "
                              f"[dim]({event.done + 1}/{event.total}, "
                              f"{time.monotonic() - state['t0']:.0f} s)[/dim]")
            elif event.stage == "demo-note":
                err.print(f"  [dim]{event.message}[/dim]")
            elif (line := finished(event)) is not None:
                err.print(line)
        yield on_plain
        return

    with _progress_bars("[dim]{task.fields[status]}", transient=False) as bar:
        ids: dict[str, Any] = {}

        def on_event(event: Progress) -> None:
            if event.stage == "demo":
                cur = state["stage"]
                if cur in ids:
                    bar.update(ids[cur], status="done")
                    bar.stop_task(ids[cur])
                if event.message == "done":
                    return
                units = event.metrics.get("units")
                state.update(stage=event.message, done=0)
                ids[event.message] = bar.add_task(f"[bold]{event.message}[/bold]",
                                                  total=int(units) if units else None,
                                                  status="")
                return
            sid = ids.get(state["stage"])
            if sid is None:
                return
            if event.stage == "demo-note":
                bar.console.print(f"  [dim]{event.message}[/dim]")
                return
            if (line := finished(event)) is not None:
                bar.console.print(line)
            if counts(event):
                state["done"] += 1
                bar.update(sid, completed=state["done"])
            status = describe(event)
            if status is not None:
                bar.update(sid, status=status)
        yield on_event


def demo_view(res: Any) -> None:
    """``gradts demo``: the report, the planted-sibling table, stage times and caveats."""
    report_view(res.report)
    rows = []
    for r in res.siblings:
        mark = Text("✓", style="bold green") if r.ok else Text("✗", style="bold red")
        rows.append([r.task, r.sibling, Text(r.top, style="green" if r.ok else "red"),
                     corr_cell(r.tau_sibling), corr_cell(r.tau_best_other),
                     _opt(r.dev_score, ".2f"), mark])
    n = len(res.siblings)
    out.print(_rep_table(
        "planted siblings: is each task's sibling its top-ranked candidate?",
        [("task", "left"), ("sibling", "left"), ("top-ranked", "left"), ("τ sib", "right"),
         ("τ other", "right"), ("dev", "right"), ("", "center")],
        rows,
        caption=f"{res.corr.method} τ between {res.corr.estimator} head-importance matrices; "
                f"sibling = the planted one; τ other = the best non-sibling's; dev = the probe's "
                f"dev accuracy; probe "
                f"seed {res.settings.seed}"))
    style = "bold green" if res.recovered >= n - 1 else "bold yellow"
    out.print(Text(f"{res.recovered} of {n} planted siblings ranked first", style=style))
    srows = [[s.stage, Text("skipped", style="dim") if s.skipped else _duration(s.seconds),
              s.detail] for s in res.stages]
    within = res.total_s <= res.budget_s
    out.print(_rep_table(
        "demo stages", [("stage", "left"), ("time", "right"), ("what", "left")], srows,
        caption=f"total {_duration(res.total_s)} (goal: {_duration(res.budget_s)} on 2 CPU "
                f"cores{'' if within else '; over it here'})"))
    for c in res.caveats:
        out.print(Text(f"caveat: {c}", style="yellow"))
    home = res.store_root
    out.print(Text(f"explore: gradts --home {home} report --model {res.model} --primary "
                   f"{res.primary}", style="cyan"))
