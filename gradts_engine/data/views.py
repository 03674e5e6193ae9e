"""What ``gradts data list / show / get`` show: task rows, split summaries, availability.

All cheap except :func:`summarize_task` and :func:`fetch_tasks`, which load the data;
:func:`list_tasks` and :func:`availability` never import ``datasets`` and never touch the
network (``stat`` calls and the store's revision records only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from ..progress import ProgressFn, Stage, emit
from ..store import Store
from ..tasks.spec import LocalSource, SyntheticSource, TaskSpec
from .hub import recorded_revision, revision_key
from .splits import Split, data_fingerprint, load_task


def fetch_task(spec: TaskSpec, *, store: Store) -> dict[str, int]:
    """Download and prepare every split of a task (``gradts data get``); returns split sizes."""
    splits = load_task(spec, store=store, splits=spec.splits)
    return {s: len(v) for s, v in splits.items()}


@dataclass(frozen=True)
class Fetched:
    """One task made available by :func:`fetch_tasks`."""

    task: str
    source: str
    sizes: Mapping[str, int]
    revision: str | None          # the Hub commit (None for local and synthetic tasks)
    data_fingerprint: str


def fetch_tasks(specs: Sequence[TaskSpec], *, store: Store,
                progress: ProgressFn | None = None) -> list[Fetched]:
    """Download (Hub) or read (local, synthetic) every split of each task, recording the Hub
    commit in the store; stops at the first task that cannot be made available."""
    out: list[Fetched] = []
    for i, spec in enumerate(specs):
        emit(progress, Stage.DATA, task=spec.name, done=i, total=len(specs),
             message=f"loading {spec.source_label()}")
        sizes = fetch_task(spec, store=store)
        out.append(Fetched(spec.name, spec.source_label(), sizes,
                           recorded_revision(spec, store), data_fingerprint(spec, store=store)))
        emit(progress, Stage.DATA, task=spec.name, done=i + 1, total=len(specs), message="ready")
    return out


@dataclass(frozen=True)
class TaskRow:
    """One line of ``gradts data list``."""

    name: str
    suite: str | None
    source: str
    kind: str
    splits: tuple[str, ...]
    labels: tuple[str, ...]
    main_metric: str
    available: str
    description: str
    origin: str


def list_tasks(registry: Any, store: Store | None) -> list[TaskRow]:
    """Every registered task with where its data comes from and whether it is at hand
    (cheap: no ``datasets`` import, no network, no file reads beyond ``stat``)."""
    return [TaskRow(t.name, t.suite, t.source_label(), t.kind, t.splits, t.labels,
                    t.main_metric, availability(t, store), t.description, t.origin)
            for t in registry]


# -- summaries ---------------------------------------------------------------------------------
def label_distribution(split: Split, spec: TaskSpec) -> dict[str, Any]:
    """Counts per label name (classification; ``(none)`` counts unlabelled rows), or a value
    summary ``n, min, max, mean, std`` (regression, over labelled rows)."""
    if spec.kind == "regression":
        y = split.labels[np.isfinite(split.labels)].astype(np.float64)
        out: dict[str, Any] = {"n": int(y.size)}
        if y.size:
            out.update(min=float(y.min()), max=float(y.max()), mean=float(y.mean()),
                       std=float(y.std()))
        missing = len(split) - int(y.size)
        if missing:
            out["(none)"] = missing
        return out
    counts = np.bincount(split.labels[split.labels >= 0], minlength=len(spec.labels))
    dist = {name: int(counts[i]) for i, name in enumerate(spec.labels)}
    missing = int((split.labels < 0).sum())
    if missing:
        dist["(none)"] = missing
    return dist


@dataclass(frozen=True)
class SplitSummary:
    split: str
    size: int
    has_labels: bool
    distribution: Mapping[str, Any]
    examples: tuple[tuple[tuple[str, ...], str], ...]   # ((texts...), label as shown)
    fingerprint: str


@dataclass(frozen=True)
class TaskSummary:
    """What ``gradts data show`` displays."""

    spec: TaskSpec
    splits: tuple[SplitSummary, ...]
    data_fingerprint: str
    revision: str | None


def _label_text(split: Split, spec: TaskSpec, i: int) -> str:
    y = split.labels[i]
    if spec.kind == "regression":
        return "-" if not np.isfinite(y) else f"{float(y):g}"
    return "-" if y < 0 else spec.labels[int(y)]


def summarize_task(spec: TaskSpec, *, store: Store | None = None, n_examples: int = 3,
                   splits: Sequence[str] | None = None) -> TaskSummary:
    """Load a task's splits and summarise them: sizes, label distributions, first examples."""
    loaded = load_task(spec, store=store, splits=tuple(splits or spec.splits))
    rows = []
    for name, sp in loaded.items():
        examples = tuple((sp.example(i), _label_text(sp, spec, i))
                         for i in range(min(n_examples, len(sp))))
        rows.append(SplitSummary(name, len(sp), sp.has_labels, label_distribution(sp, spec),
                                 examples, sp.fingerprint))
    return TaskSummary(spec, tuple(rows), data_fingerprint(spec, store=store),
                       recorded_revision(spec, store))


def availability(spec: TaskSpec, store: Store | None) -> str:
    """Whether a task's data is at hand, cheaply (no ``datasets`` import, no network)."""
    src = spec.source
    if isinstance(src, SyntheticSource):
        return "generated"
    if isinstance(src, LocalSource):
        missing = [s for s, f in src.files.items() if not Path(f).expanduser().is_file()]
        return "files missing: " + ", ".join(missing) if missing else "local files"
    try:
        sha = recorded_revision(spec, store)
    except StoreError:
        return "cache damaged"
    if store is not None and sha is not None:
        key = revision_key(store, src)
        if store.exists(key):
            return f"cached @{sha[:10]}"
    return "not downloaded"

