"""``gradts probe``: the probe summary table (shared with ``report``), the heatmaps, the live
progress with an overall "task k of N" line, and the interactive task picker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from gradts_engine.progress import Stage

from .. import output
from . import progress as live
from .widgets import (
    CHANCE_NOTE,
    Col,
    at_chance,
    chance_text,
    dim,
    duration,
    heatmap,
    opt,
    plural,
    table,
)


@dataclass(frozen=True)
class ProbeLine:
    """One task's probe as the summary table shows it (from a probe run or the store)."""

    task: str
    examples: int
    train_loss: float | None
    metric: str | None
    dev: float | None
    dev_n: int | None
    n_classes: int | None
    seconds: float | None          # compute time recorded when the probe was made
    cached: bool | None            # None: read from the store (report), not run now
    device: str | None
    settings: str
    key: str

    @property
    def chance(self) -> bool:
        return at_chance(self.metric, self.dev, n=self.dev_n, n_classes=self.n_classes)


def settings_text(st: Mapping[str, Any]) -> str:
    """``1 epoch, lr 0.0001, batch 16, max length 48, seed 0`` from a probe's settings."""
    if not isinstance(st.get("lr"), (int, float)):
        return "–"
    epochs = st.get("epochs", "?")
    return (f"{epochs} epoch{'' if epochs == 1 else 's'}, lr {st['lr']:g}, batch "
            f"{st.get('batch_size', '?')}, max length {st.get('max_length', '?')}, seed "
            f"{st.get('seed', '?')}")


def _recorded_seconds(info: Mapping[str, Any]) -> float | None:
    t = info.get("timings") or {}
    parts = [t.get(k) for k in ("load_s", "fine_tune_s", "dev_s", "importance_s")]
    vals = [float(p) for p in parts if isinstance(p, (int, float))]
    return sum(vals) if vals else None


def lines_from_run(run: Any, n_classes: Mapping[str, int]) -> list[ProbeLine]:
    lines = []
    for o in run.outcomes:
        r = o.result
        info = r.info
        dev = info.get("dev") or {}
        loss = (info.get("train") or {}).get("final_loss")
        lines.append(ProbeLine(
            task=o.task, examples=r.num_instances,
            train_loss=loss if isinstance(loss, (int, float)) else None,
            metric=dev.get("metric"), dev=dev.get("main") if isinstance(
                dev.get("main"), (int, float)) else None,
            dev_n=dev.get("n") if isinstance(dev.get("n"), int) else None,
            n_classes=n_classes.get(o.task),
            seconds=_recorded_seconds(info) if o.cached else o.seconds, cached=o.cached,
            device=info.get("device"), settings=settings_text(r.settings),
            key=r.entry.key_path))
    return lines


def lines_from_report(rows: Sequence[Any], n_classes: Mapping[str, int]) -> list[ProbeLine]:
    return [ProbeLine(task=p.task, examples=p.instances, train_loss=p.train_loss,
                      metric=p.dev_metric, dev=p.dev_score, dev_n=p.dev_n,
                      n_classes=n_classes.get(p.task), seconds=p.seconds, cached=None,
                      device=p.device, settings=settings_text(p.settings), key=p.key)
            for p in rows]


def probe_table(lines: Sequence[ProbeLine], title: str, *, primary: str | None = None,
                entries: bool = True, caption: str | None = None) -> RenderableType:
    """The summary: task, examples, train loss, dev score (flagged at chance), time, and the
    settings when the tasks were probed with different ones, then status/device/entry."""
    settings = {ln.settings for ln in lines}
    metric = next((ln.metric for ln in lines if ln.metric), None)
    cols: list[Col | str] = [Col("task"), Col("examples", "right"), Col("train loss", "right"),
                             Col(f"dev {metric}" if metric else "dev", "right"),
                             Col("time", "right")]
    if len(settings) > 1:
        cols.append(Col("settings", wrap=True))
    run_now = any(ln.cached is not None for ln in lines)
    cols += ["status" if run_now else "device"] + ([Col("cache entry", wrap=True)]
                                                   if entries else [])
    rows = []
    for ln in lines:
        dev = Text(opt(ln.dev)) + chance_text(ln.chance)
        row: list[Any] = [Text(ln.task, style="bold" if ln.task == primary else ""),
                          str(ln.examples), opt(ln.train_loss, ".3g"), dev,
                          duration(ln.seconds)]
        if len(settings) > 1:
            row.append(ln.settings)
        if run_now:
            row.append(Text("cached", style="dim") if ln.cached else Text("new", style="green"))
        else:
            row.append(ln.device or "–")
        if entries:
            row.append(ln.key)
        rows.append(row)
    if caption is None and len(settings) == 1:
        caption = next(iter(settings))
    elif len(settings) > 1:
        extra = "these tasks were probed with different settings"
        caption = f"{caption}; {extra}" if caption else extra
    chance = [ln.task for ln in lines if ln.chance]
    if chance:
        note = (f"{CHANCE_NOTE}: {', '.join(chance)}; such a task's head importance reflects "
                "the input format more than a learned skill")
        caption = f"{caption}\n{note}" if caption else note
    return table(title, cols, rows, caption=caption)


def renderables(run: Any, estimator: str, n_classes: Mapping[str, int]) -> list[RenderableType]:
    """The probe's summary table, then a heatmap of each task's ``estimator`` matrix."""
    lines = lines_from_run(run, n_classes)
    n_cached = sum(bool(ln.cached) for ln in lines)
    root = run.outcomes[0].result.store.root if run.outcomes else "–"
    items: list[RenderableType] = [probe_table(
        lines, f"probe: {run.model} (measure {run.measure})",
        caption=f"{plural(len(lines), 'task')}, {n_cached} from the cache; store: {root}")]
    for ln, o in zip(lines, run.outcomes, strict=True):
        r = o.result
        bits = [f"{r.num_layers} layers x {r.num_heads} heads"]
        if ln.train_loss is not None:
            bits.append(f"final train loss {ln.train_loss:.3g}")
        if ln.dev is not None:
            bits.append(f"dev {ln.metric or 'score'} {ln.dev:.3f} (n={ln.dev_n})")
        items += ["", Text(f"{o.task}: {estimator} importance; " + ", ".join(bits),
                           style="bold") + (Text(" (dev score at chance level)", style="yellow")
                                            if ln.chance else ""), heatmap(r.matrix(estimator), "")]
    return items


# -- progress ---------------------------------------------------------------------------------
@contextmanager
def progress(n_tasks: int) -> Iterator[live.Callback]:
    """Per-task bars (fine-tune, importance, dev) under an overall "task k of N" bar with its
    ETA on a TTY; a line per finished task otherwise."""
    live.begin("task")
    seen: list[str] = []
    computed: list[float] = []   # seconds of each task probed now (the ETA's basis)

    def eta() -> str:
        left = n_tasks - len(seen)
        if not computed or left <= 0:
            return ""
        return f"about {duration(left * sum(computed) / len(computed))} left"

    def count(event: Any) -> str | None:
        if event.stage in (Stage.DONE, Stage.CACHED) and event.task not in seen:
            seen.append(event.task)
            if event.stage == Stage.DONE:
                computed.append(float(event.metrics.get("seconds", 0.0)))
            how = (f": cached, reused ({event.message})" if event.stage == Stage.CACHED
                   else f" probed in {duration(event.metrics.get('seconds'))}")
            left = eta()
            return f"task {len(seen)} of {n_tasks}: {event.task}{how}" + (
                f"; {left}" if left else "")
        return None

    skip = (Stage.LOAD, Stage.DONE, Stage.CACHED)
    if output.is_quiet() or not output.err.is_terminal:
        with live.reporter(skip=skip) as inner:
            def on_plain(event: Any) -> None:
                line = count(event)
                if line is not None:
                    output.info(line)
                inner(event)
            yield on_plain
        return
    with live.running(output.progress_display("{task.fields[metrics]}", transient=False,
                                              remaining=True)) as bar:
        overall = bar.add_task(f"[bold]{plural(n_tasks, 'task')}[/bold]", total=n_tasks,
                               metrics="")
        bars: dict[tuple[str, str | None], Any] = {}

        def on_event(event: Any) -> None:
            line = count(event)
            if line is not None:
                bar.update(overall, completed=len(seen), metrics=eta())
                bar.console.print(dim("  " + line))
            if event.stage in skip:
                return
            key = (str(event.stage), event.task)
            desc = f"{event.stage}" + (f" [bold]{event.task}[/bold]" if event.task else "")
            metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
            if key not in bars:
                bars[key] = bar.add_task(desc, total=event.total, metrics=metrics)
            bar.update(bars[key], completed=event.done, total=event.total, metrics=metrics)
        yield live.guarded(on_event)


# -- the interactive picker -------------------------------------------------------------------
def choose_tasks(names: Sequence[str], suites: Mapping[str, Sequence[str]], *,
                 ask: Any = None) -> tuple[list[str], str | None]:
    """Offer the registered tasks and suites; ask again until every name is known.
    Returns (task names, suite or None)."""
    from gradts_engine.errors import UsageError, did_you_mean

    grouped = {n for members in suites.values() for n in members}
    rows = [(suite, ", ".join(members)) for suite, members in suites.items()]
    others = [n for n in names if n not in grouped]
    if others:
        rows.append(("(other)", ", ".join(others)))
    output.err.print(table("registered tasks", [Col("suite"), Col("tasks", wrap=True)], rows))
    ask = ask or (lambda: live.ask("Tasks to probe (comma-separated names, or one suite name)"))
    for _ in range(5):
        answer = ask().strip()
        if answer in suites:
            return [], answer
        picked = [a.strip() for a in answer.split(",") if a.strip()]
        unknown = [a for a in picked if a not in names]
        if picked and not unknown:
            return picked, None
        for u in unknown:
            hint = did_you_mean(u, [*names, *suites])
            output.warn(f"unknown task '{u}'" + (f" — {hint}" if hint else ""))
        if not picked:
            output.warn("no task named; type one or more names, or a suite")
    raise UsageError("no tasks chosen", hint="pass --task NAME or --suite NAME")
