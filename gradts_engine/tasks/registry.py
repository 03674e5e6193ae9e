"""The task registry: built-in GLUE and demo tasks plus user tasks declared in TOML (DESIGN.md §6).

One registry per invocation, built cheaply (no torch, transformers or datasets import), so the
CLI can complete task names. It rejects duplicate names. User task files live in
``<user config dir>/tasks/*.toml`` (``gradts data add`` writes them there) or are named with
``--tasks-file``; :mod:`.toml` reads and writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DuplicateTaskError, UnknownTaskError, did_you_mean
from . import demo as _demo
from .spec import HubSource, SyntheticSource, TaskSpec
from .toml import load_task_file, parse_task_table  # noqa: F401  (the reader, re-exported)

GLUE_PATH = "nyu-mll/glue"
# The dataset commit is not pinned in the code (it could not be verified when this was
# written); the first download resolves it and records it in the store (see data/hub.py).
GLUE_REVISION: str | None = None


def _glue(name: str, config: str, text: tuple[str, ...], labels: tuple[str, ...],
          metrics: tuple[str, ...], description: str, extra_splits: Mapping[str, str] | None = None,
          dev: str = "validation") -> TaskSpec:
    splits = {"train": "train", "dev": dev, "test": "test", **(extra_splits or {})}
    return TaskSpec(
        name=name,
        kind="regression" if not labels else "classification",
        text_fields=text,
        label_field="label",
        labels=labels,
        metrics=metrics,
        source=HubSource(GLUE_PATH, config, GLUE_REVISION, splits),
        description=description,
        suite="glue",
    )


def glue_tasks() -> list[TaskSpec]:
    """The GLUE tasks, from the Hub's ``nyu-mll/glue`` (labels as in its ClassLabel features)."""
    return [
        _glue("cola", "cola", ("sentence",), ("unacceptable", "acceptable"),
              ("matthews", "accuracy"), "CoLA: grammatical acceptability"),
        _glue("sst2", "sst2", ("sentence",), ("negative", "positive"), ("accuracy",),
              "SST-2: sentence sentiment"),
        _glue("mrpc", "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
              ("f1", "accuracy"), "MRPC: paraphrase"),
        _glue("qqp", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
              ("f1", "accuracy"), "QQP: duplicate questions"),
        _glue("stsb", "stsb", ("sentence1", "sentence2"), (), ("pearson", "spearman"),
              "STS-B: semantic similarity (0-5)"),
        _glue("mnli", "mnli", ("premise", "hypothesis"),
              ("entailment", "neutral", "contradiction"), ("accuracy",),
              "MNLI: natural language inference (dev = matched)",
              extra_splits={"dev_mismatched": "validation_mismatched",
                            "test": "test_matched", "test_mismatched": "test_mismatched"},
              dev="validation_matched"),
        _glue("qnli", "qnli", ("question", "sentence"), ("entailment", "not_entailment"),
              ("accuracy",), "QNLI: question answering as inference"),
        _glue("rte", "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
              ("accuracy",), "RTE: textual entailment"),
        _glue("wnli", "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
              ("accuracy",), "WNLI: Winograd inference"),
    ]


def demo_tasks(seed: int = 0, sizes: Mapping[str, int] | None = None) -> list[TaskSpec]:
    """The built-in synthetic demo suite (:mod:`gradts_engine.tasks.demo`)."""
    sizes = dict(sizes or _demo.DEFAULT_SIZES)
    out = []
    for name in _demo.DEMO_TASKS:
        info = _demo.TASK_INFO[name]
        out.append(TaskSpec(
            name=name,
            kind="classification",
            text_fields=tuple(info.text_fields),
            label_field="label",
            labels=tuple(info.labels),
            metrics=("accuracy",),
            source=SyntheticSource(_demo.DEMO_SUITE, seed, sizes, _demo.GENERATOR_VERSION),
            description=info.description,
            suite=_demo.DEMO_SUITE,
        ))
    return out


def user_config_dir() -> Path:
    """``GRADTS_CONFIG_DIR`` if set, else the platform's user config directory."""
    env = os.environ.get("GRADTS_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("gradts"))


def user_tasks_dir() -> Path:
    return user_config_dir() / "tasks"


@dataclass
class Registry:
    """Task and suite names -> specs; rejects duplicates; unknown names get "did you mean"."""

    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    suites: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def register(self, spec: TaskSpec) -> None:
        if spec.name in self.tasks:
            other = self.tasks[spec.name]
            raise DuplicateTaskError(
                f"task '{spec.name}' is declared twice ({other.origin} and {spec.origin})",
                hint="rename one of them",
            )
        self.tasks[spec.name] = spec
        if spec.suite:
            self.suites[spec.suite] = (*self.suites.get(spec.suite, ()), spec.name)

    def __contains__(self, name: object) -> bool:
        return name in self.tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self.tasks.values())

    def names(self) -> list[str]:
        return list(self.tasks)

    def get(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            hint = did_you_mean(name, [*self.tasks, *self.suites])
            raise UnknownTaskError(
                f"unknown task '{name}'",
                hint=(hint + " " if hint else "") + "see `gradts data list`",
                name=name,
            ) from None

    def suite(self, name: str) -> list[TaskSpec]:
        if name not in self.suites:
            hint = did_you_mean(name, self.suites)
            raise UnknownTaskError(
                f"unknown suite '{name}' (suites: {', '.join(sorted(self.suites))})",
                hint=hint or "see `gradts data list`", name=name,
            )
        return [self.tasks[n] for n in self.suites[name]]

    def resolve(self, tasks: Iterable[str] = (), suite: str | None = None) -> list[TaskSpec]:
        """Tasks named one by one and/or a suite's tasks, in order, without repeats."""
        out: list[TaskSpec] = []
        seen: set[str] = set()
        for spec in [*(self.suite(suite) if suite else []), *(self.get(t) for t in tasks)]:
            if spec.name not in seen:
                seen.add(spec.name)
                out.append(spec)
        return out


def build_registry(task_files: Iterable[str | os.PathLike[str]] = (), *,
                   include_user: bool = True, demo_seed: int = 0,
                   demo_sizes: Mapping[str, int] | None = None) -> Registry:
    """Built-in tasks, then the user's task files, then files named explicitly."""
    reg = Registry()
    for spec in [*glue_tasks(), *demo_tasks(demo_seed, demo_sizes)]:
        reg.register(spec)
    files: list[Path] = []
    if include_user:
        d = user_tasks_dir()
        if d.is_dir():
            files.extend(sorted(d.glob("*.toml")))
    files.extend(Path(f) for f in task_files)
    for f in files:
        for spec in load_task_file(f):
            reg.register(spec)
    return reg
