"""Declaring a task from local files (``gradts data add``).

:func:`add_local_task` loads every split to check it (columns, labels), infers the label names
when they are not given, and writes ``<user tasks dir>/<name>.toml`` with the writer in
:mod:`gradts_engine.tasks.toml`, after reading the text back through the same module's reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, TaskError
from ..store import Store, atomic_write_text
from ..tasks import registry as reg_mod
from ..tasks.spec import LocalSource, TaskSpec, check_name
from ..tasks.toml import FORMATS, guess_format, parse_task_text, task_toml
from .checks import check_first_row, check_header_cell, check_numeric_labels
from .columns import find_column, is_minus_one, is_missing, resolve_column
from .sources import local_columns
from .splits import load_task


@dataclass(frozen=True)
class AddedTask:
    spec: TaskSpec
    path: Path                       # the TOML file written
    sizes: Mapping[str, int]
    replaced: bool


def _sort_label_values(values: set[str]) -> tuple[str, ...]:
    def numeric(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None

    nums = {v: numeric(v) for v in values}
    if all(x is not None for x in nums.values()):
        return tuple(sorted(values, key=lambda v: (nums[v], v)))
    return tuple(sorted(values))


def _target(name: str, tasks_dir: Path, force: bool) -> tuple[Path, bool]:
    """The TOML file to write, and whether it replaces one; refuses names in use elsewhere."""
    target = tasks_dir / f"{name}.toml"
    builtin = {t.name for t in [*reg_mod.glue_tasks(), *reg_mod.demo_tasks()]}
    if name in builtin:
        raise TaskError(f"'{name}' is a built-in task; choose another name",
                        hint=f"e.g. gradts data add my_{name} ...")
    replaced = target.exists()
    if replaced and not force:
        raise TaskError(f"task '{name}' already exists ({target})",
                        hint="pass --force to replace it, or choose another name")
    try:
        registry = reg_mod.build_registry()
    except (TaskError, ConfigError):
        registry = None  # a broken user file elsewhere must not block adding this one
    if registry is not None and name in registry:
        origin = registry.get(name).origin
        if Path(origin).resolve() != target.resolve():  # --force replaces only our own file
            raise TaskError(f"task '{name}' is already declared in {origin}",
                            hint="choose another name, or edit that file")
    return target, replaced


def _source(files: Mapping[str, str | os.PathLike[str]], format: str | None, header: bool,
            quoting: bool) -> LocalSource:
    resolved = {split: str(Path(f).expanduser().resolve()) for split, f in files.items()}
    fmt = format or guess_format(resolved["train"])
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of csv, tsv, jsonl")
    return LocalSource(resolved, fmt, header, quoting)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _LabelColumn:
    where: str                # the file
    header: str | None        # the label column's header cell (None without a header)
    values: list[str]         # the column's values, as read


def _label_columns(name: str, source: LocalSource, text: Sequence[str], label: str,
                   store: Store | None) -> dict[str, _LabelColumn]:
    """Each split's label column as strings (a test split may have none)."""
    out: dict[str, _LabelColumn] = {}
    probe = TaskSpec(name=name, kind="regression", text_fields=tuple(text) or ("0",),
                     label_field=label, source=source)
    for split in source.files:
        raw = local_columns(probe, source, split, store)
        names = list(raw.columns)
        col = find_column(label, names)
        if col is None:
            if split == "test":
                continue
            col = resolve_column(label, names, raw.where, "label")  # raises
        out[split] = _LabelColumn(raw.where, col if source.header else None,
                                  ["" if v is None else str(v) for v in raw.columns[col]])
    return out


def _check_declaration(source: LocalSource, kind: str, labels: Sequence[str],
                       columns: Mapping[str, _LabelColumn]) -> None:
    """The header setting the wrong way round (see :mod:`.checks`); JSON Lines have none."""
    if source.format == "jsonl":
        return
    for split, c in columns.items():
        values = [v for v in c.values if not is_missing(v)
                  and not (split == "test" and is_minus_one(v))]
        if c.header is not None:
            check_header_cell(c.where, c.header, kind, labels, {v.strip() for v in values})
        elif c.values and not is_missing(c.values[0]):
            check_first_row(c.where, c.values[0], c.values[1:], kind, labels)


def add_local_task(name: str, files: Mapping[str, str | os.PathLike[str]], *,
                   text: Sequence[str], label: str, kind: str = "classification",
                   labels: Sequence[str] | None = None, header: bool = True,
                   format: str | None = None, quoting: bool = False,
                   metrics: Sequence[str] | None = None, description: str = "",
                   force: bool = False, tasks_dir: Path | None = None,
                   store: Store | None = None) -> AddedTask:
    """Validate local files by loading every split, then write ``<tasks dir>/<name>.toml``.

    Label names are inferred from the data when not given (the sorted distinct values of the
    label column over every split, numerically when they are all numbers, test rows without a
    label left out). Refuses a built-in task's name, an existing user task unless ``force``,
    and likely-broken declarations (:mod:`.checks`: numbers as classes, a header setting the
    wrong way round).
    """
    check_name(name)
    if "train" not in files:
        raise ConfigError(f"task '{name}': a train file is required", hint="pass --train FILE")
    target, replaced = _target(name, tasks_dir or reg_mod.user_tasks_dir(), force)
    source = _source(files, format, header, quoting)
    if kind not in ("classification", "regression"):
        raise ConfigError(f"kind {kind!r} is not one of classification, regression")
    if kind == "regression" and labels:
        raise ConfigError("--labels applies to classification tasks only")
    text = tuple(t.strip() for t in text if t.strip())
    columns = _label_columns(name, source, text, label, store)
    _check_declaration(source, kind, tuple(labels or ()), columns)
    if kind == "classification" and not labels:
        labels = _infer_labels(name, label, columns)
    try:
        spec = TaskSpec(name=name, kind=kind, text_fields=text, label_field=label,  # type: ignore[arg-type]
                        source=source, labels=tuple(labels or ()),
                        metrics=tuple(metrics or ()), description=description,
                        origin=str(target))
    except TaskError as e:
        raise ConfigError(e.message, hint=e.hint) from e
    loaded = load_task(spec, store=store, splits=tuple(source.files))
    text_toml = task_toml(spec)
    # read it back through the reader before writing: what is written must load
    (back,) = parse_task_text(text_toml, target)
    if back.fingerprint() != spec.fingerprint():  # pragma: no cover - a bug in task_toml
        raise TaskError(f"internal: the TOML written for task '{name}' does not read back")
    try:
        atomic_write_text(target, text_toml)
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}",
                          hint="check GRADTS_CONFIG_DIR and its permissions") from e
    return AddedTask(spec, target, {s: len(v) for s, v in loaded.items()}, replaced)


def _infer_labels(name: str, label: str,
                  columns: Mapping[str, _LabelColumn]) -> tuple[str, ...]:
    values: set[str] = set()
    for split, c in columns.items():
        for v in c.values:
            if is_missing(v) or (split == "test" and is_minus_one(v)):
                continue  # unlabelled test rows; an empty train/dev label fails validation
            values.add(v.strip())
    if len(values) < 2:
        shown = ", ".join(repr(v) for v in sorted(values)) or "none"
        raise DataError(f"task '{name}': the label column {label!r} has fewer than two distinct "
                        f"values ({shown})",
                        hint="check --label, or give the names with --labels a,b")
    check_numeric_labels(name, label, values)
    return _sort_label_values(values)


@dataclass(frozen=True)
class RemovedTask:
    name: str
    path: Path                       # the TOML file removed
    cached: tuple[str, ...]          # store entries that still name the task (key paths)


def cached_entries(store: Store | None, name: str) -> tuple[str, ...]:
    """Key paths of the store entries computed for task ``name`` (its probes, token caches,
    trials and selections with it as the primary): what ``gradts cache rm`` would take."""
    if store is None:
        return ()
    out = []
    for e in store.entries():
        info = e.info
        if (name in e.key_path.split("/")[1:-1] or name in (info.get("task_name"), info.get("task"),
                                                            info.get("primary"))):
            out.append(e.key_path)
    return tuple(out)


def remove_local_task(name: str, *, tasks_dir: Path | None = None, store: Store | None = None,
                      task_files: Sequence[str | os.PathLike[str]] = ()) -> RemovedTask:
    """Remove the declaration ``<tasks dir>/<name>.toml`` written by :func:`add_local_task`.

    Cached results are left in the store (they are listed, for ``gradts cache rm``); a task
    declared elsewhere (a built-in, a ``--tasks-file``, a file with several tasks) is refused
    with the file to edit.
    """
    check_name(name)
    if name in {t.name for t in [*reg_mod.glue_tasks(), *reg_mod.demo_tasks()]}:
        raise TaskError(f"'{name}' is a built-in task; it cannot be removed",
                        hint="gradts data rm removes tasks added with gradts data add")
    target = (tasks_dir or reg_mod.user_tasks_dir()) / f"{name}.toml"
    if target.is_file():
        try:
            declared = [s.name for s in reg_mod.load_task_file(target)]
        except ConfigError:
            declared = [name]  # a damaged file named after the task: removing it is the fix
        if declared != [name]:
            raise TaskError(f"{target} declares several tasks ({', '.join(declared)})",
                            hint=f"edit that file to remove '{name}'")
        try:
            target.unlink()
        except OSError as e:
            raise ConfigError(f"cannot remove {target}: {e.strerror}",
                              hint="check its permissions") from e
        return RemovedTask(name, target, cached_entries(store, name))
    registry = reg_mod.build_registry(task_files)
    spec = registry.get(name)  # an unknown name: UnknownTaskError with did-you-mean
    raise TaskError(f"task '{name}' is declared in {spec.origin}, not by gradts data add",
                    hint="edit or remove that file")
