"""The task registry: built-in GLUE and demo tasks plus user tasks declared in TOML (DESIGN.md §6).

One registry per invocation, built cheaply (no torch, transformers or datasets import), so the
CLI can complete task names. It rejects duplicate names. User task files live in
``<user config dir>/tasks/*.toml`` (``gradts data add`` writes them there) or are named with
``--tasks-file``. A file holds one ``[task]`` table or several ``[[task]]`` tables::

    [[task]]
    name = "my_cola"
    kind = "classification"            # or "regression"
    text = ["sentence"]                # one or two columns (names, or indices as strings)
    label = "label"
    labels = ["unacceptable", "acceptable"]
    metrics = ["matthews", "accuracy"] # optional; the first is the main metric unless main_metric
    [task.source]
    type = "local"                     # "local" or "hub"
    format = "tsv"                     # csv | tsv | jsonl
    header = false
    files = { train = "train.tsv", dev = "dev.tsv" }   # relative to this TOML file
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DuplicateTaskError, TaskError, UnknownTaskError, did_you_mean
from . import demo as _demo
from .spec import HubSource, LocalSource, SyntheticSource, TaskSpec, check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GLUE_PATH = "nyu-mll/glue"
# The dataset commit is not pinned in the code (it could not be verified when this was
# written); the first download resolves it and records it in the store (see data.py).
GLUE_REVISION: str | None = None

_TASK_KEYS = {"name", "kind", "text", "label", "labels", "metrics", "main_metric", "version",
              "description", "source"}
_SOURCE_KEYS = {
    "local": {"type", "files", "format", "header", "quoting"},
    "hub": {"type", "path", "config", "revision", "splits"},
}


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


def _parse_source(raw: Any, where: str, base: Path) -> LocalSource | HubSource:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'source' must be a table", hint="see `gradts data add --help`")
    typ = raw.get("type", "local")
    if typ not in _SOURCE_KEYS:
        raise ConfigError(f"{where}: source type {typ!r} is not one of 'local', 'hub'")
    unknown = set(raw) - _SOURCE_KEYS[typ]
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, _SOURCE_KEYS[typ])
        raise ConfigError(f"{where}: unknown key 'source.{key}'", hint=hint)
    if typ == "hub":
        if not isinstance(raw.get("path"), str):
            raise ConfigError(f"{where}: a hub source needs path = \"owner/dataset\"")
        return HubSource(raw["path"], raw.get("config"), raw.get("revision"),
                         dict(raw.get("splits") or {"train": "train", "dev": "validation"}))
    files = raw.get("files")
    if not isinstance(files, dict) or "train" not in files:
        raise ConfigError(f"{where}: a local source needs files = "
                          "{ train = \"...\", dev = \"...\" }")
    resolved = {}
    for split, f in files.items():
        if not isinstance(f, str):
            raise ConfigError(f"{where}: source.files.{split} must be a path string")
        p = Path(f).expanduser()
        resolved[str(split)] = str(p if p.is_absolute() else (base / p).resolve())
    fmt = raw.get("format") or _guess_format(next(iter(resolved.values())))
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ConfigError(f"{where}: source.format {fmt!r} is not one of csv, tsv, jsonl")
    for flag in ("header", "quoting"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise ConfigError(f"{where}: source.{flag} must be true or false")
    return LocalSource(resolved, fmt, bool(raw.get("header", True)),  # type: ignore[arg-type]
                       bool(raw.get("quoting", False)))


def _guess_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "tsv")


def parse_task_table(raw: Mapping[str, Any], where: str, base: Path, origin: str) -> TaskSpec:
    """Build a :class:`TaskSpec` from one TOML ``[task]`` table; errors name file and key."""
    unknown = set(raw) - _TASK_KEYS
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, _TASK_KEYS)
        raise ConfigError(f"{where}: unknown key '{key}'", hint=hint)
    for req in ("name", "text", "label", "source"):
        if req not in raw:
            raise ConfigError(f"{where}: missing key '{req}'")
    text = raw["text"]
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, list) or not all(isinstance(t, (str, int)) for t in text):
        raise ConfigError(f"{where}: 'text' must be a column name or a list of one or two")
    labels = raw.get("labels", [])
    if not isinstance(labels, list):
        raise ConfigError(f"{where}: 'labels' must be a list of label names")
    metrics = raw.get("metrics", [])
    if isinstance(metrics, str):
        metrics = [metrics]
    kind = raw.get("kind", "classification" if labels else "regression")
    try:
        return TaskSpec(
            name=check_name(str(raw["name"])),
            kind=kind,
            text_fields=tuple(str(t) for t in text),
            label_field=str(raw["label"]),
            labels=tuple(str(x) for x in labels),
            metrics=tuple(str(m) for m in metrics),
            main_metric=str(raw.get("main_metric", "")),
            version=int(raw.get("version", 1)),
            description=str(raw.get("description", "")),
            source=_parse_source(raw["source"], where, base),
            origin=origin,
        )
    except TaskError as e:
        raise ConfigError(f"{where}: {e.message}", hint=e.hint) from e


def load_task_file(path: str | os.PathLike[str]) -> list[TaskSpec]:
    """Read one TOML task file (``[task]`` or ``[[task]]``)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"task file {p} does not exist", hint="check the path") from e
    except OSError as e:
        raise ConfigError(f"task file {p} cannot be read: {e.strerror}") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"task file {p} is not valid TOML: {e}", hint="fix the line named") from e
    tables = doc.get("task")
    extra = set(doc) - {"task"}
    if extra:
        raise ConfigError(f"{p}: unknown top-level key '{sorted(extra)[0]}'",
                          hint="declare tasks in [task] or [[task]] tables")
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{p}: no [task] table found")
    return [parse_task_table(t, f"{p} (task {i + 1})", p.parent.resolve(), str(p))
            for i, t in enumerate(tables)]


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
