"""``gradts data``: the task list, a task's declaration, splits and examples, and the table of
fetched tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType

from .widgets import Col, plural, table


def kind_text(kind: str, labels: Sequence[str]) -> str:
    return plural(len(labels), "class", "classes") if kind == "classification" else "regression"


def list_table(rows: Sequence[Any]) -> RenderableType:
    return table(None, ["task", "suite", "source", "kind", "splits", Col("data", wrap=True)],
                 [(r.name, r.suite or "–", r.source, kind_text(r.kind, r.labels),
                   ",".join(r.splits), r.available) for r in rows],
                 caption=f"{plural(len(rows), 'task')}; details: gradts data show TASK")


def distribution(dist: Mapping[str, Any], kind: str) -> str:
    if kind == "regression":
        if not dist.get("n"):
            return "unlabelled" if dist.get("(none)") else "–"
        text = (f"mean {dist['mean']:.3g} ± {dist['std']:.3g}, range {dist['min']:.3g}–"
                f"{dist['max']:.3g}")
        return text + (f", {dist['(none)']} unlabelled" if dist.get("(none)") else "")
    total = sum(dist.values()) or 1
    return "  ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in dist.items())


def show_tables(spec: Any, summary: Any, examples: int) -> list[RenderableType]:
    """A task's declaration, its splits (rows, label distribution) and a few examples."""
    kind = (f"classification ({', '.join(spec.labels)})" if spec.kind == "classification"
            else "regression")
    fields = [("source", spec.source_label()), ("kind", kind),
              ("text", ", ".join(spec.text_fields)), ("label", spec.label_field),
              ("metrics", ", ".join(spec.metrics) + f" (main: {spec.main_metric})"),
              ("data fingerprint", summary.data_fingerprint)]
    if summary.revision:
        fields.append(("revision", summary.revision))
    if spec.origin != "builtin":
        fields.append(("declared in", spec.origin))
    title = f"{spec.name}" + (f": {spec.description}" if spec.description else "")
    items: list[RenderableType] = [
        table(title, ["field", Col("value", wrap=True)], fields),
             table("splits", ["split", ("rows", "right"), Col("labels", wrap=True)],
                   [(s.split, s.size, distribution(s.distribution, spec.kind))
                    for s in summary.splits])]
    if examples:
        names = spec.text_fields if len(spec.text_fields) > 1 else ["text"]
        rows = [(s.split, *texts, label) for s in summary.splits for texts, label in s.examples]
        items.append(table("examples", ["split", *[Col(n, wrap=True) for n in names], "label"],
                           rows))
    return items


def fetched_table(fetched: Sequence[Any]) -> RenderableType:
    return table(None, ["task", "source", Col("rows", wrap=True), "revision", "fingerprint"],
                 [(f.task, f.source, ", ".join(f"{s} {n}" for s, n in f.sizes.items()),
                   (f.revision or "–")[:12], f.data_fingerprint) for f in fetched])
