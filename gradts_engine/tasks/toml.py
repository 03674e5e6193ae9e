"""Task declarations in TOML: the reader and the writer, side by side (DESIGN.md §6).

A file holds one ``[task]`` table or several ``[[task]]`` tables::

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

:func:`load_task_file` reads a file, :func:`parse_task_text` a file's text; every problem (bad
TOML, bytes that are not UTF-8, an unknown key, a value of the wrong type) is one
:class:`ConfigError` naming the file and the key. :func:`task_toml` writes a local task back
as a ``[task]`` table that :func:`parse_task_text` reads into the same spec.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ..errors import ConfigError, TaskError, did_you_mean
from .spec import HubSource, LocalSource, TaskSpec, check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TASK_KEYS = frozenset({"name", "kind", "text", "label", "labels", "metrics", "main_metric",
                       "version", "description", "source"})
SOURCE_KEYS = {
    "local": frozenset({"type", "files", "format", "header", "quoting"}),
    "hub": frozenset({"type", "path", "config", "revision", "splits"}),
}
FORMATS = ("csv", "tsv", "jsonl")
# "name" or "owner/name" as the Hub spells them (never a path: no leading "/", ".", "~")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def guess_format(path: str) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from a file's extension (``tsv`` when unknown)."""
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "tsv")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _str_map(value: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: '{key}' must be a table of strings, e.g. "
                          f"{key} = {{ train = \"...\", dev = \"...\" }}")
    return {str(k): v for k, v in value.items()}


def _opt_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: 'source.{key}' must be a string")
    return value


def _parse_hub(raw: Mapping[str, Any], where: str) -> HubSource:
    if not isinstance(raw.get("path"), str):
        raise ConfigError(f"{where}: a hub source needs path = \"owner/dataset\"")
    if not HUB_ID_RE.match(raw["path"]) or ".." in raw["path"]:
        raise ConfigError(f"{where}: source.path {raw['path']!r} is not a Hub dataset id",
                          hint="use \"owner/dataset\" (a local file is type = \"local\")")
    splits = (_str_map(raw["splits"], where, "source.splits") if "splits" in raw
              else {"train": "train", "dev": "validation"})
    return HubSource(raw["path"], _opt_str(raw, "config", where), _opt_str(raw, "revision", where),
                     splits or {"train": "train", "dev": "validation"})


def _parse_local(raw: Mapping[str, Any], where: str, base: Path) -> LocalSource:
    files = raw.get("files")
    if not isinstance(files, dict) or "train" not in files:
        raise ConfigError(f"{where}: a local source needs files = "
                          "{ train = \"...\", dev = \"...\" }")
    resolved = {}
    for split, f in _str_map(files, where, "source.files").items():
        p = Path(f).expanduser()
        resolved[split] = str(p if p.is_absolute() else (base / p).resolve())
    fmt = raw.get("format") or guess_format(next(iter(resolved.values())))
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: source.format {fmt!r} is not one of csv, tsv, jsonl")
    for flag in ("header", "quoting"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise ConfigError(f"{where}: source.{flag} must be true or false")
    return LocalSource(resolved, cast(Any, fmt), bool(raw.get("header", True)),
                       bool(raw.get("quoting", False)))


def _parse_source(raw: Any, where: str, base: Path) -> LocalSource | HubSource:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'source' must be a table", hint="see `gradts data add --help`")
    typ = raw.get("type", "local")
    if typ not in SOURCE_KEYS:
        raise ConfigError(f"{where}: source type {typ!r} is not one of 'local', 'hub'")
    unknown = set(raw) - SOURCE_KEYS[typ]
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, SOURCE_KEYS[typ])
        raise ConfigError(f"{where}: unknown key 'source.{key}'", hint=hint)
    return _parse_hub(raw, where) if typ == "hub" else _parse_local(raw, where, base)


def _str_list(raw: Mapping[str, Any], key: str, where: str, what: str) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, (str, int)) and
                                              not isinstance(x, bool) for x in value):
        raise ConfigError(f"{where}: '{key}' must be {what}")
    return [str(x) for x in value]


def _scalar(raw: Mapping[str, Any], key: str, where: str, typ: type, default: Any) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be {'an integer' if typ is int else 'a string'}"
                          f", not {value!r}")
    return value


def parse_task_table(raw: Any, where: str, base: Path, origin: str) -> TaskSpec:
    """Build a :class:`TaskSpec` from one TOML ``[task]`` table; errors name file and key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a task must be a table ([task] or [[task]])")
    unknown = set(raw) - TASK_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where}: unknown key '{key}'", hint=did_you_mean(key, TASK_KEYS))
    for req in ("name", "text", "label", "source"):
        if req not in raw:
            raise ConfigError(f"{where}: missing key '{req}'")
    text = _str_list(raw, "text", where, "a column name or a list of one or two")
    labels = _str_list(raw, "labels", where, "a list of label names")
    metrics = _str_list(raw, "metrics", where, "a list of metric names")
    label = raw["label"]
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        raise ConfigError(f"{where}: 'label' must be a column name or index")
    try:
        return TaskSpec(
            name=check_name(_scalar(raw, "name", where, str, "")),
            kind=_scalar(raw, "kind", where, str,
                         "classification" if labels else "regression"),
            text_fields=tuple(text),
            label_field=str(label),
            labels=tuple(labels),
            metrics=tuple(metrics),
            main_metric=_scalar(raw, "main_metric", where, str, ""),
            version=_scalar(raw, "version", where, int, 1),
            description=_scalar(raw, "description", where, str, ""),
            source=_parse_source(raw["source"], where, base),
            origin=origin,
        )
    except TaskError as e:
        raise ConfigError(f"{where}: {e.message}", hint=e.hint) from e


def parse_task_text(text: str, path: Path) -> list[TaskSpec]:
    """The tasks of one TOML file's text (``[task]`` or ``[[task]]``); ``path`` names it."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"task file {path} is not valid TOML: {e}",
                          hint="fix the line named") from e
    extra = set(doc) - {"task"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key '{sorted(extra)[0]}'",
                          hint="declare tasks in [task] or [[task]] tables")
    tables = doc.get("task")
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [task] table found",
                          hint="declare tasks in [task] or [[task]] tables")
    base = path.parent.resolve()
    return [parse_task_table(t, f"{path} (task {i + 1})", base, str(path))
            for i, t in enumerate(tables)]


def load_task_file(path: str | os.PathLike[str]) -> list[TaskSpec]:
    """Read one TOML task file (``[task]`` or ``[[task]]``)."""
    p = Path(path).expanduser()
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"task file {p} does not exist", hint="check the path") from e
    except IsADirectoryError as e:
        raise ConfigError(f"task file {p} is a directory", hint="name a .toml file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"task file {p} is not UTF-8 text ({e.reason} at byte {e.start})",
                          hint="save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"task file {p} cannot be read: {e.strerror}") from e
    return parse_task_text(text, p)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in items) + "]"


def task_toml(spec: TaskSpec) -> str:
    """A TOML ``[task]`` table that :func:`parse_task_text` reads back into ``spec``."""
    src = spec.source
    if not isinstance(src, LocalSource):
        raise TaskError(f"task '{spec.name}': only local tasks are written as TOML")
    lines = [
        "# written by `gradts data add`; edit freely (see `gradts data add --help`)",
        "[task]",
        f"name = {_toml_str(spec.name)}",
        f"kind = {_toml_str(spec.kind)}",
        f"text = {_toml_list(spec.text_fields)}",
        f"label = {_toml_str(spec.label_field)}",
    ]
    if spec.labels:
        lines.append(f"labels = {_toml_list(spec.labels)}")
    lines.append(f"metrics = {_toml_list(spec.metrics)}")
    lines.append(f"main_metric = {_toml_str(spec.main_metric)}")
    if spec.version != 1:
        lines.append(f"version = {int(spec.version)}")
    if spec.description:
        lines.append(f"description = {_toml_str(spec.description)}")
    lines += [
        "",
        "[task.source]",
        'type = "local"',
        f"format = {_toml_str(src.format)}",
        f"header = {'true' if src.header else 'false'}",
        f"quoting = {'true' if src.quoting else 'false'}",
        "",
        "[task.source.files]",
    ]
    lines += [f"{s} = {_toml_str(p)}" for s, p in src.files.items()]
    return "\n".join(lines) + "\n"
