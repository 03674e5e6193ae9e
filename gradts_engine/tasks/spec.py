"""Task specifications: what a task is, where its data lives, how it is scored (DESIGN.md §2, §6).

A task is a declaration, not code: a name (a safe identifier, since it becomes a path in the
store), a source (a Hugging Face dataset pinned to a revision, local files, or the built-in
synthetic suite), a split mapping, one or two text fields, a label field, a kind
(classification with label names, or regression), its metrics and the main metric used to
choose epochs and compare trials. ``fingerprint()`` is the part of every cache key that says
"this task, as declared"; the data files' content hash is added by :mod:`gradts_engine.data`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..errors import TaskError

TaskKind = Literal["classification", "regression"]
SPLITS = ("train", "dev", "test")
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman")
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_name(name: str, what: str = "task") -> str:
    """A task name becomes a directory: only ``[a-z][a-z0-9_]*`` is accepted."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TaskError(
            f"invalid {what} name {name!r}: names must start with a lowercase letter and use only "
            "lowercase letters, digits and '_' (at most 64 characters), since they become paths",
            hint="e.g. 'my_task'",
        )
    return name


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face Hub, loaded with ``datasets.load_dataset``.

    ``revision`` pins the dataset commit; ``None`` means the commit is resolved at the first
    download and recorded in the store, so later runs on that machine use the same data.
    ``splits`` maps our split names to the dataset's (e.g. ``{"dev": "validation"}``).
    """

    path: str
    config: str | None = None
    revision: str | None = None
    splits: Mapping[str, str] = field(default_factory=dict)
    type: Literal["hub"] = "hub"


@dataclass(frozen=True)
class LocalSource:
    """Local CSV, TSV or JSON Lines files, one per split, read through ``datasets`` builders.

    ``header=False`` means the file has no header row; columns are then named ``"0"``,
    ``"1"``, ... (index as a string). ``quoting=False`` treats quote characters as text, as the
    original GLUE TSV files need (SST-2, MRPC).
    """

    files: Mapping[str, str]
    format: Literal["csv", "tsv", "jsonl"] = "tsv"
    header: bool = True
    quoting: bool = False
    type: Literal["local"] = "local"


@dataclass(frozen=True)
class SyntheticSource:
    """The built-in demo suite's deterministic generator (:mod:`gradts_engine.tasks.demo`)."""

    suite: str = "demo"
    seed: int = 0
    sizes: Mapping[str, int] = field(default_factory=dict)
    generator_version: int = 1
    type: Literal["synthetic"] = "synthetic"


Source = HubSource | LocalSource | SyntheticSource


@dataclass(frozen=True)
class TaskSpec:
    """One task, as declared (see the module docstring)."""

    name: str
    kind: TaskKind
    text_fields: tuple[str, ...]
    label_field: str
    source: Source
    labels: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    main_metric: str = ""
    version: int = 1
    description: str = ""
    suite: str | None = None
    origin: str = "builtin"  # "builtin" or the TOML file that declared it

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.kind not in ("classification", "regression"):
            raise TaskError(f"task '{self.name}': kind must be 'classification' or 'regression',"
                            f" not {self.kind!r}")
        if not 1 <= len(self.text_fields) <= 2:
            raise TaskError(f"task '{self.name}': give one or two text fields, not "
                            f"{len(self.text_fields)}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise TaskError(f"task '{self.name}': a classification task needs at least two label"
                            " names", hint="set labels = [\"neg\", \"pos\"] in its TOML")
        if self.kind == "regression" and self.labels:
            raise TaskError(f"task '{self.name}': a regression task has no label names")
        metrics = self.metrics or (("accuracy",) if self.kind == "classification"
                                   else REGRESSION_METRICS)
        allowed = CLASSIFICATION_METRICS if self.kind == "classification" else REGRESSION_METRICS
        for m in metrics:
            if m not in allowed:
                raise TaskError(f"task '{self.name}': metric {m!r} does not apply to a {self.kind}"
                                f" task (choose from {', '.join(allowed)})")
        if ("f1" in metrics) and len(self.labels) != 2:
            raise TaskError(f"task '{self.name}': metric 'f1' needs exactly two labels")
        main = self.main_metric or metrics[0]
        if main not in metrics:
            raise TaskError(f"task '{self.name}': main metric {main!r} is not among its metrics"
                            f" ({', '.join(metrics)})")
        object.__setattr__(self, "metrics", tuple(metrics))
        object.__setattr__(self, "main_metric", main)
        object.__setattr__(self, "text_fields", tuple(self.text_fields))
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def num_outputs(self) -> int:
        """Width of the task head: number of labels, or 1 for regression."""
        return len(self.labels) if self.kind == "classification" else 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        src = self.source
        if isinstance(src, HubSource):
            return tuple(src.splits) or ("train", "dev")
        if isinstance(src, LocalSource):
            return tuple(src.files)
        return tuple(src.sizes) or SPLITS

    def fingerprint(self) -> dict[str, Any]:
        """Everything in the declaration that changes the data or its meaning."""
        d = asdict(self)
        d.pop("description", None)
        d.pop("origin", None)
        d.pop("suite", None)
        return d

    def source_label(self) -> str:
        src = self.source
        if isinstance(src, HubSource):
            rev = f"@{src.revision[:10]}" if src.revision else ""
            return f"hub:{src.path}" + (f"/{src.config}" if src.config else "") + rev
        if isinstance(src, LocalSource):
            return f"local:{src.format}"
        return f"synthetic:{src.suite}"
