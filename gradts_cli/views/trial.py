"""``gradts trial``: the live table of trial runs, and the trials table (shared with
``report``): every candidate set's dev score (flagged at chance), the selected set, the noise
verdict and the held-out score."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gradts_engine.progress import Stage

from .. import output
from . import progress as live
from .widgets import (
    CHANCE_NOTE,
    Col,
    at_chance,
    chance_text,
    corr_cell,
    dim,
    duration,
    plural,
    score,
    table,
)

ROLE = {"baseline": "baseline", "random": "random", "all": "all"}


def _role(rec: Any) -> str:
    return f"top-{len(rec.aux)}" if rec.role == "prefix" else ROLE.get(rec.role, rec.role)


def _cached(rec: Any) -> str:
    return ("yes" if rec.all_cached else "no" if not any(rec.cached)
            else f"{sum(rec.cached)}/{len(rec.cached)}")


def identical(values: list[float]) -> bool:
    """Several finite scores that are all equal (every set trained to the same predictions)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return len(vals) > 1 and max(vals) - min(vals) < 1e-9


def trials_table(s: Any, *, n_classes: int | None = None,
                 cached_column: bool = True) -> list[RenderableType]:
    """Every trial of a :class:`TrialSummary`: role, set, the tau of the candidate added, mean
    (± spread) dev score, best epoch, time, cached; the selected set marked; notes for scores
    at chance level and for a trial where every row is the same."""
    n_seeds = len(s.seeds)
    tau = {r.task: r.stat for r in s.ranking}
    seeds = f"seed {s.seeds[0]}" if n_seeds == 1 else f"{n_seeds} seeds: mean ± std"
    cols: list[Col | str] = ["trial", Col("auxiliary tasks", wrap=True, ratio=1),
                             Col("τ added", "right"), Col(s.main_metric, "right"),
                             Col("epoch", "right"), Col("time", "right")]
    if cached_column:
        cols.append("cached")
    rows = []
    records = [*s.trials, *s.comparisons]
    chance = False
    for rec in records:
        is_sel = rec.aux == tuple(s.selected) and rec.role in ("baseline", "prefix")
        style = "bold green" if is_sel else ("dim" if rec.role in ("random", "all") else "")
        flag = at_chance(s.main_metric, rec.mean, n_classes=n_classes)
        chance |= flag
        added = (corr_cell(tau.get(rec.aux[-1], float("nan")))
                 if rec.role == "prefix" and rec.aux else "")
        row: list[Any] = [Text(("→ " if is_sel else "  ") + _role(rec), style=style),
                          Text(rec.label, style=style), added,
                          Text(score(rec.mean, rec.std, n_seeds), style=style) + chance_text(flag),
                          ",".join(str(e) for e in rec.best_epochs), duration(rec.seconds)]
        if cached_column:
            row.append(_cached(rec))
        rows.append(row)
    epochs = s.settings.get("epochs")
    title = (f"GradTS-trial for {s.primary}: {s.main_metric} on dev at the best epoch ({seeds}"
             + (f", {plural(int(epochs), 'epoch')}" if isinstance(epochs, int) else "") + ")")
    items: list[RenderableType] = [table(title, cols, rows, caption=s.stop_reason)]
    if identical([r.mean for r in records]):
        items.append(Text(
            f"note: every trial scored exactly {records[0].mean:.4f}: the models likely predict "
            "the same labels whatever the auxiliary tasks (e.g. one class), so this trial does "
            "not test the ranking; try more epochs, another learning rate or a larger dev split",
            style="bold yellow"))
    elif chance:
        items.append(Text(CHANCE_NOTE, style="yellow"))
    return items


def verdict_lines(s: Any) -> list[RenderableType]:
    v = s.verdict
    items: list[RenderableType] = []
    if s.selected:
        items.append(Text(v.message, style="yellow" if v.within_noise else "green"))
    items += [Text(h.message, style="dim" if h.kind == "same-dev" else "") for h in s.holdout]
    return items


def renderables(s: Any, *, n_classes: int | None = None) -> list[RenderableType]:
    items: list[RenderableType] = []
    if s.ranking:
        ranks = ", ".join(f"{r.rank}. {r.task} {r.stat:+.2f}" for r in s.ranking)
        items.append(dim(f"ranking for {s.primary} ({s.method} tau, {s.estimator} importance, "
                         f"{s.measure}): {ranks}"))
    items += trials_table(s, n_classes=n_classes)
    label = next((r.label for r in s.trials
                  if r.aux == tuple(s.selected) and r.role in ("baseline", "prefix")), None)
    if not s.selected:
        items.append(Text(f"selected: nothing — {s.verdict.message}", style="yellow"))
    else:
        items.append(Text(f"selected: {label}", style="bold green"))
    items += verdict_lines(s)
    items += [dim(note) for note in s.notes]
    return items


def footer(s: Any) -> str:
    total = sum(len(r.cached) for r in [*s.trials, *s.comparisons])
    return (f"[dim]{plural(s.trained, 'run')} trained, {total - s.trained} reused from the "
            f"cache, in {duration(s.seconds)}; model {s.model_name}; summary: {s.key}[/dim]")


def choose_primary(probed: list[str], *, ask: Any = None) -> str:
    """Offer the probed tasks as the primary; ask again until the answer is one of them."""
    from gradts_engine.errors import UsageError, did_you_mean

    output.err.print(table("probed tasks", ["#", Col("task", wrap=True)],
                           [(str(i + 1), t) for i, t in enumerate(probed)]))
    ask = ask or (lambda: live.ask("Primary task (name or number)"))
    for _ in range(5):
        answer = ask().strip()
        if answer.isdigit() and 1 <= int(answer) <= len(probed):
            return probed[int(answer) - 1]
        if answer in probed:
            return answer
        hint = did_you_mean(answer, probed)
        output.warn(f"'{answer}' is not a probed task" + (f" — {hint}" if hint else ""))
    raise UsageError("no primary task chosen", hint="pass --primary NAME")


# -- progress ---------------------------------------------------------------------------------
@contextmanager
def progress(primary: str, main_metric: str) -> Iterator[live.Callback]:
    """A live table of the trial runs on a TTY (set, epoch, step, loss, dev score), one line
    per finished run and epoch otherwise."""
    live.begin("trial run")
    nan = float("nan")
    if output.is_quiet():
        yield live.guarded(lambda event: None)
        return

    def on_plain(event: Any) -> None:
        m = event.metrics
        if event.stage == Stage.TRIAL_START:
            output.err.print(f"training {event.message}")
        elif event.stage == Stage.MTL_EPOCH:
            output.err.print(f"  {event.message}: epoch {event.done}/{event.total}  loss "
                             f"{m.get(f'loss_{primary}', nan):.4f}  dev {main_metric} "
                             f"{m.get(main_metric, nan):.4f}")
        elif event.stage == Stage.TRIAL_RUN:
            tag = " (cached)" if m.get("cached") else ""
            output.err.print(f"{event.message}: {main_metric} {m.get(main_metric, nan):.4f} "
                             f"at epoch {int(m.get('epoch', 0))}{tag}")

    if not output.err.is_terminal:
        yield live.guarded(on_plain)
        return
    from rich.live import Live

    done: list[tuple[str, str, str, str]] = []   # set, score, best epoch, status
    cur: dict[str, Any] = {}

    def render() -> Table:
        rows: list[list[Any]] = [list(r) for r in done[-30:]]
        if cur:
            status = f"epoch {cur.get('epoch', 1)}"
            if cur.get("total"):
                status += f" · step {cur.get('step', 0)}/{cur['total']}"
            if "loss" in cur:
                status += f" · loss {cur['loss']:.4f}"
            if "dev" in cur:
                status += f" · dev {cur['dev']:.4f}"
            rows.append([Text(cur["label"], style="bold"), "…", "", Text(status, style="cyan")])
        return table(f"GradTS-trial for {primary} ({main_metric} on dev)",
                     ["run", f"best {main_metric}", "best epoch", "status"], rows)

    def on_event(event: Any) -> None:
        m = event.metrics
        if event.stage == Stage.TRIAL_START:
            cur.clear()
            cur["label"] = event.message
        elif event.stage == Stage.MTL and cur:
            cur.update(step=event.done, total=event.total, epoch=int(m.get("epoch", 1)),
                       loss=m.get("loss", nan))
            if main_metric in m:
                cur["dev"] = m[main_metric]
        elif event.stage == Stage.MTL_EPOCH and cur:
            cur["dev"] = m.get(main_metric, nan)
        elif event.stage == Stage.TRIAL_RUN:
            done.append((event.message, f"{m.get(main_metric, nan):.4f}",
                         str(int(m.get("epoch", 0))), "cached" if m.get("cached") else "trained"))
            cur.clear()

    with live.running(Live(get_renderable=render, console=output.err, refresh_per_second=4,
                           transient=False)):
        yield live.guarded(on_event)
