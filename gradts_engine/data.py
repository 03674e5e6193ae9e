"""Task data: loading splits through ``datasets``, tokenising them, batching (DESIGN.md §3, §4).

A task's split becomes a :class:`Split`: its texts (one tuple per text field, ``texts[0]`` the
first texts, ``texts[1]`` the second texts of a pair task) and label ids (``int64`` for
classification, ``float32`` for regression), with a fingerprint of its content. Three sources:

* **synthetic** -- the built-in demo suite's generator (:mod:`gradts_engine.tasks.demo`);
* **local** -- CSV, TSV or JSON Lines files, read with ``datasets.load_dataset("csv"/"json")``.
  Every value is read as a string (no type inference), quote characters are text unless the
  spec says otherwise (the original GLUE TSV files need that), a header's UTF-8 byte-order mark
  is stripped, and files without a header get columns ``"0"``, ``"1"``, ...; a column is named
  by its header name or by its index;
* **hub** -- a Hugging Face dataset, ``datasets.load_dataset(path, config, revision)``. The
  commit it resolved to is recorded in the store (kind ``hub-revision``) so later runs load
  the same commit and fingerprints stay stable.

Labels: a raw value equal to a declared label name maps to that name's index; otherwise an
integer-like value in range is taken as the id; anything else is a :class:`DataError` naming
the file, the line, the value and the declared labels. Only a ``test`` split may come without
labels (GLUE's test labels are hidden): its labels are then ``-1`` (classification) or ``nan``
(regression) and :attr:`Split.has_labels` is false.

Tokenised splits (:class:`Encoded`) are ragged: every example's token ids concatenated, with
offsets, no padding. They are cached in the store under kind ``tokens``, keyed by the split's
fingerprint and the tokenizer (id, class, a hash of its vocabulary and pipeline) and the
maximum length. :func:`batches` groups examples of similar length (sorted within shuffled
chunks of ``50 * batch_size``) so that :func:`collate`'s dynamic padding stays small.

Heavy libraries (``datasets``, ``torch``) are imported inside functions only, so that the CLI
can import this module for completion without paying for them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import (
    ConfigError,
    DataError,
    OfflineError,
    StoreError,
    TaskError,
    did_you_mean,
)
from .progress import ProgressFn, emit
from .store import Store, atomic_write_text, canonical_json, safe_component, sha256_file
from .tasks.spec import HubSource, LocalSource, SyntheticSource, TaskSpec, check_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AddedTask",
    "Encoded",
    "Split",
    "SplitSummary",
    "TaskSummary",
    "add_local_task",
    "availability",
    "batches",
    "collate",
    "data_fingerprint",
    "encode_split",
    "Fetched",
    "TaskRow",
    "fetch_task",
    "fetch_tasks",
    "list_tasks",
    "label_distribution",
    "load_split",
    "load_task",
    "recorded_revision",
    "summarize_task",
    "tokenizer_fingerprint",
]

MISSING_LABEL = -1          # classification label id of an unlabelled (test) example
TOKENS_FORMAT = 1           # bump when the layout of cached token arrays changes
OFFLINE_HINT = ("connect, or run `gradts data add` with local files; "
                "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE=1 uses only what is cached")


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Split:
    """One split of one task: texts per text field and label ids (see the module docstring)."""

    task: str
    split: str
    texts: tuple[tuple[str, ...], ...]   # (n_fields,) tuples of N texts
    labels: np.ndarray                   # (N,) int64 ids, or float32 values for regression
    fingerprint: str                     # 16 hex: split content + the task's spec

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_regression(self) -> bool:
        return self.labels.dtype.kind == "f"

    @property
    def has_labels(self) -> bool:
        """False when any example has no label (only ever the case in a ``test`` split)."""
        if len(self) == 0:
            return False
        if self.is_regression:
            return bool(np.isfinite(self.labels).all())
        return bool((self.labels >= 0).all())

    def example(self, i: int) -> tuple[str, ...]:
        """Example ``i``'s texts, one per text field."""
        return tuple(field[i] for field in self.texts)


def _split_fingerprint(spec: TaskSpec, split: str, texts: Sequence[Sequence[str]],
                       labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(canonical_json({"spec": spec.fingerprint(), "split": split}).encode())
    for field in texts:
        h.update(b"\x1e")
        for t in field:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
    h.update(str(labels.dtype).encode())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:16]


def _check_split_name(spec: TaskSpec, split: str) -> None:
    if split not in spec.splits:
        hint = did_you_mean(split, spec.splits)
        raise DataError(
            f"task '{spec.name}' has no '{split}' split (it has: {', '.join(spec.splits)})",
            hint=hint or (f"declare one: gradts data add {spec.name} --{split} FILE ... --force"
                          if isinstance(spec.source, LocalSource) else None),
            task=spec.name, split=split,
        )


def load_split(spec: TaskSpec, split: str, *, store: Store | None = None,
               max_examples: int | None = None) -> Split:
    """Load one split of ``spec``; ``max_examples`` keeps its first rows (a fixed prefix)."""
    return load_task(spec, store=store, splits=(split,), max_examples=max_examples)[split]


def load_task(spec: TaskSpec, *, store: Store | None = None,
              splits: Sequence[str] = ("train", "dev"),
              max_examples: int | None = None) -> dict[str, Split]:
    """Load several splits of one task (a Hub dataset is prepared once for all of them)."""
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"max examples must be at least 1, not {max_examples}")
    for s in splits:
        _check_split_name(spec, s)
    src = spec.source
    if isinstance(src, SyntheticSource):
        raw = {s: _synthetic_columns(spec, src, s, max_examples) for s in splits}
    elif isinstance(src, LocalSource):
        raw = {s: _local_columns(spec, src, s, store) for s in splits}
    elif isinstance(src, HubSource):
        raw = _hub_columns(spec, src, splits, store)
    else:  # pragma: no cover - the spec's constructor only allows the three sources
        raise TaskError(f"task '{spec.name}': unknown source {src!r}")
    return {s: _build_split(spec, s, raw[s], max_examples) for s in splits}


@dataclass
class _Raw:
    """A split's columns as read, before labels are mapped (``where`` names the file)."""

    columns: dict[str, list[Any]]
    where: str
    first_line: int = 1          # file line of row 0 (for messages)
    label_ids_direct: bool = False  # Hub ClassLabel ints / generator ints: ids already


def _build_split(spec: TaskSpec, split: str, raw: _Raw, max_examples: int | None) -> Split:
    n_rows = len(next(iter(raw.columns.values()))) if raw.columns else 0
    if n_rows == 0:
        raise DataError(
            f"{raw.where} has no rows (split '{split}' of task '{spec.name}')",
            hint="check that the file is the right one and not empty", task=spec.name,
        )
    n = n_rows if max_examples is None else min(n_rows, max_examples)
    names = list(raw.columns)
    text_cols = [_resolve_column(c, names, raw.where, "text") for c in spec.text_fields]
    texts = tuple(tuple("" if v is None else str(v) for v in raw.columns[c][:n])
                  for c in text_cols)
    label_col = _find_column(spec.label_field, names)
    if label_col is None:
        if split != "test":
            _resolve_column(spec.label_field, names, raw.where, "label")  # raises
        labels = (np.full(n, np.nan, dtype=np.float32) if spec.kind == "regression"
                  else np.full(n, MISSING_LABEL, dtype=np.int64))
    else:
        labels = _map_labels(spec, split, raw.columns[label_col][:n], raw)
    return Split(spec.name, split, texts, labels, _split_fingerprint(spec, split, texts, labels))


def _find_column(field: str, names: Sequence[str]) -> str | None:
    if field in names:
        return field
    if field.isdigit() and int(field) < len(names):
        return names[int(field)]
    return None


def _resolve_column(field: str, names: Sequence[str], where: str, role: str) -> str:
    col = _find_column(field, names)
    if col is None:
        hint = did_you_mean(field, names)
        shown = ", ".join(repr(c) for c in names)
        raise DataError(
            f"{where}: no {role} column {field!r} (columns: {shown})",
            hint=(hint + " " if hint else "")
            + "name a column by its header or by its index (0, 1, ...)",
            column=field,
        )
    return col


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def _is_minus_one(v: Any) -> bool:
    try:
        return float(v) == -1.0
    except (TypeError, ValueError):
        return False


def _map_labels(spec: TaskSpec, split: str, values: Sequence[Any], raw: _Raw) -> np.ndarray:
    test = split == "test"
    if spec.kind == "regression":
        if test and all(_is_missing(v) or _is_minus_one(v) for v in values):
            return np.full(len(values), np.nan, dtype=np.float32)  # hidden test labels
        out = np.empty(len(values), dtype=np.float32)
        for i, v in enumerate(values):
            if _is_missing(v) and test:
                out[i] = np.nan
                continue
            try:
                x = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError):
                x = math.nan
            if not math.isfinite(x):
                raise DataError(
                    f"{raw.where} line {raw.first_line + i}: label {v!r} is not a number "
                    f"(task '{spec.name}' is a regression task)",
                    hint="fix the value, or declare the task with --kind classification",
                    value=v,
                )
            out[i] = x
        return out
    by_name = {name: i for i, name in enumerate(spec.labels)}
    memo: dict[Any, int] = {}
    out_ids = np.empty(len(values), dtype=np.int64)
    k = len(spec.labels)
    for i, v in enumerate(values):
        try:
            out_ids[i] = memo[v]
            continue
        except (KeyError, TypeError):
            pass
        lid = _label_id(v, by_name, k, raw.label_ids_direct)
        if lid is None and test and (_is_missing(v) or _is_minus_one(v)):
            lid = MISSING_LABEL
        if lid is None:
            declared = ", ".join(spec.labels)
            what = "is empty" if _is_missing(v) else "is not one of the declared labels"
            raise DataError(
                f"{raw.where} line {raw.first_line + i}: label {v!r} {what} ({declared})",
                hint=(f"fix the row, or redeclare the task's labels: gradts data add {spec.name}"
                      " ... --labels a,b --force"),
                value=v,
            )
        with contextlib.suppress(TypeError):
            memo[v] = lid
        out_ids[i] = lid
    return out_ids


def _label_id(v: Any, by_name: Mapping[str, int], k: int, direct: bool) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v) if 0 <= v < k else None
    if isinstance(v, float):
        return int(v) if v.is_integer() and 0 <= v < k else None
    if direct:
        return None
    s = str(v).strip()
    if s in by_name:
        return by_name[s]
    if str(v) in by_name:
        return by_name[str(v)]
    try:
        x = int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            return None
        if not (math.isfinite(f) and f.is_integer()):
            return None
        x = int(f)
    return x if 0 <= x < k else None


# -- synthetic ---------------------------------------------------------------------------------
def _synthetic_columns(spec: TaskSpec, src: SyntheticSource, split: str,
                       max_examples: int | None) -> _Raw:
    from .tasks import demo

    n = src.sizes.get(split)
    if max_examples is not None:
        n = min(n, max_examples) if n is not None else min(demo.DEFAULT_SIZES.get(split, 0),
                                                           max_examples)
    try:
        rows = demo.generate(spec.name, split, n=n, seed=src.seed)
    except (KeyError, ValueError) as e:
        raise DataError(f"demo task '{spec.name}' split '{split}': {e}") from e
    names = [*spec.text_fields, spec.label_field]
    columns = {c: [r.get(c) for r in rows] for c in names}
    return _Raw(columns, f"demo task '{spec.name}' ({split})", 0, label_ids_direct=True)


# -- datasets plumbing -------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_datasets() -> Iterator[Any]:
    """Import ``datasets`` with its progress bars and log messages off (the engine never prints)."""
    import datasets
    from datasets.utils import logging as dlog
    from huggingface_hub.utils import logging as hlog

    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    level, hub_level = dlog.get_verbosity(), hlog.get_verbosity()
    datasets.disable_progress_bars()
    dlog.set_verbosity(dlog.CRITICAL)
    hlog.set_verbosity(hlog.CRITICAL)  # e.g. "Retrying in 1s" while the Hub is unreachable
    try:
        yield datasets
    finally:
        dlog.set_verbosity(level)
        hlog.set_verbosity(hub_level)
        if bars_were_on:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def _cache_dir(store: Store | None) -> Iterator[str]:
    """``<store>/datasets`` when there is a store, else a temporary directory removed after use."""
    if store is not None:
        path = store.root / ".datasets"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {path}: {e.strerror}",
                             hint="pass a writable directory with --home or GRADTS_HOME") from e
        yield str(path)
    else:
        with tempfile.TemporaryDirectory(prefix="gradts-datasets-") as tmp:
            yield tmp


def _arrow_columns(ds: Any) -> dict[str, list[Any]]:
    """Columns as Python lists (plain columns straight from Arrow; others, e.g. the ``Json``
    feature of a JSON Lines column with mixed types, decoded by ``datasets``)."""
    table = ds.data
    out: dict[str, list[Any]] = {}
    for name in ds.column_names:
        if type(ds.features[name]).__name__ in ("Value", "ClassLabel"):
            out[name] = table.column(name).to_pylist()
        else:
            out[name] = list(ds[name])
    return out


# -- local files -------------------------------------------------------------------------------
def _local_file(spec: TaskSpec, src: LocalSource, split: str) -> Path:
    path = Path(src.files[split]).expanduser()
    fix = (f"fix the path in {spec.origin}" if spec.origin.endswith(".toml")
           else "check the path")
    if not path.exists():
        raise DataError(f"{split} file of task '{spec.name}' does not exist: {path}", hint=fix,
                        path=str(path))
    if not path.is_file():
        raise DataError(f"{split} file of task '{spec.name}' is not a file: {path}", hint=fix,
                        path=str(path))
    if not os.access(path, os.R_OK):
        raise DataError(f"{split} file of task '{spec.name}' cannot be read: {path}",
                        hint="check its permissions", path=str(path))
    return path


def _delimited_header(path: Path, src: LocalSource) -> list[str]:
    """Column names of a CSV/TSV file: its header (BOM stripped) or ``"0"``, ``"1"``, ..."""
    delimiter = "\t" if src.format == "tsv" else ","
    quoting: Any = csv.QUOTE_MINIMAL if src.quoting else csv.QUOTE_NONE
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            first = next(reader, None)
            second = next(reader, None) if src.header else first
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})",
                        hint="save the file as UTF-8", path=str(path)) from e
    except (OSError, csv.Error) as e:
        raise DataError(f"{path} cannot be read: {e}", path=str(path)) from e
    if first is None:
        return []
    if second is None:
        raise DataError(f"{path} has a header but no rows", hint="check that the file is the "
                        "right one (or pass --no-header if its first line is data)", path=str(path))
    if not src.header:
        return [str(i) for i in range(len(first))]
    names: list[str] = []
    seen: Counter[str] = Counter()
    for i, raw_name in enumerate(first):
        name = raw_name.lstrip("\ufeff").strip() or str(i)
        if seen[name]:
            name = f"{name}.{seen[name]}"
        seen[name] += 1
        names.append(name)
    return names


def _local_columns(spec: TaskSpec, src: LocalSource, split: str, store: Store | None) -> _Raw:
    path = _local_file(spec, src, split)
    digest = sha256_file(path)
    if src.format == "jsonl":
        return _read_jsonl(path, digest, store)
    names = _delimited_header(path, src)
    if not names:
        raise DataError(f"{path} is empty (split '{split}' of task '{spec.name}')",
                        hint="check that the file is the right one", path=str(path))
    with _quiet_datasets() as datasets, _cache_dir(store) as cache:
        features = datasets.Features({n: datasets.Value("string") for n in names})
        try:
            ds = datasets.load_dataset(
                "csv",
                # the content hash in the config name: an edited file never reuses a stale cache
                name=f"gradts-{digest[:16]}",
                data_files={"train": str(path)},
                split="train",
                delimiter="\t" if src.format == "tsv" else ",",
                quoting=csv.QUOTE_MINIMAL if src.quoting else csv.QUOTE_NONE,
                header=0 if src.header else None,
                column_names=names,
                features=features,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8-sig",
                cache_dir=cache,
            )
        except Exception as e:  # pandas / arrow / datasets raise many types
            raise _read_error(path, e) from e
        columns = _arrow_columns(ds)
    return _Raw(columns, str(path), 2 if src.header else 1)


def _read_jsonl(path: Path, digest: str, store: Store | None) -> _Raw:
    try:
        with open(path, "rb") as f:
            has_rows = any(line.strip() for line in f)
    except OSError as e:
        raise DataError(f"{path} cannot be read: {e.strerror}", path=str(path)) from e
    if not has_rows:
        raise DataError(f"{path} is empty", hint="check that the file is the right one",
                        path=str(path))
    with _quiet_datasets() as datasets, _cache_dir(store) as cache:
        try:
            ds = datasets.load_dataset("json", name=f"gradts-{digest[:16]}",
                                       data_files={"train": str(path)}, split="train",
                                       cache_dir=cache)
        except Exception as e:
            raise _read_error(path, e) from e
        columns = _arrow_columns(ds)
    return _Raw(columns, str(path), 1)


def _read_error(path: Path, e: BaseException) -> DataError:
    cause: BaseException = e
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        assert nxt is not None
        cause = nxt
    if isinstance(cause, UnicodeDecodeError):
        return DataError(f"{path} is not UTF-8 text ({cause.reason})",
                         hint="save the file as UTF-8", path=str(path))
    msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    msg = msg.replace("Error tokenizing data. C error: ", "")
    return DataError(f"{path} cannot be parsed: {msg}",
                     hint="check the format (--format csv|tsv|jsonl), the header and the "
                          "quoting (quote characters are text unless quoting = true)",
                     path=str(path))


# -- the Hub -----------------------------------------------------------------------------------
def _revision_key(store: Store, src: HubSource) -> Any:
    return store.key("hub-revision", [src.path, src.config or "default"],
                     {"path": src.path, "config": src.config, "revision": src.revision})


def recorded_revision(spec: TaskSpec, store: Store | None) -> str | None:
    """The Hub commit a task's data resolved to (its pinned revision, or the one recorded)."""
    src = spec.source
    if not isinstance(src, HubSource):
        return None
    if src.revision and len(src.revision) == 40:
        return src.revision
    if store is None:
        return src.revision
    key = _revision_key(store, src)
    if not store.exists(key):
        return None
    entry = store.entry(key)
    sha = store.load_json(entry, "revision").get("sha")
    return str(sha) if sha else None


def _record_revision(store: Store, src: HubSource, sha: str, splits: Mapping[str, int]) -> None:
    key = _revision_key(store, src)
    with store.lock(key, timeout=60):
        if store.exists(key):
            try:
                entry = store.entry(key)
                if store.load_json(entry, "revision").get("sha") == sha:
                    return
            except StoreError:
                pass
        with store.writer(key, info={"sha": sha}) as w:
            w.save_json("revision", {"path": src.path, "config": src.config,
                                     "requested": src.revision, "sha": sha,
                                     "rows": dict(splits)})


def _offline_error(src: HubSource, e: BaseException) -> OfflineError:
    what = src.path + (f" ({src.config})" if src.config else "")
    return OfflineError(f"cannot download {what}: the Hub is not reachable", hint=OFFLINE_HINT,
                        path=src.path, cause=str(e))


def _is_offline_error(e: BaseException) -> bool:
    names = {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
             "ConnectTimeout", "TimeoutException", "ReadTimeout", "NetworkError"}
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return True
        if any(c.__name__ in names for c in type(cur).__mro__):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _hub_columns(spec: TaskSpec, src: HubSource, splits: Sequence[str],
                 store: Store | None) -> dict[str, _Raw]:
    pinned = recorded_revision(spec, store) or src.revision
    hub_splits = {s: src.splits.get(s, s) for s in splits}
    cache_ctx = _cache_dir(store) if store is not None else contextlib.nullcontext(None)
    with _quiet_datasets() as datasets, cache_ctx as cache:
        try:
            builder = datasets.load_dataset_builder(src.path, src.config, revision=pinned,
                                                    cache_dir=cache)
            builder.download_and_prepare()
        except Exception as e:
            if _is_offline_error(e):
                raise _offline_error(src, e) from e
            what = src.path + (f" ({src.config})" if src.config else "")
            if type(e).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError",
                                    "RevisionNotFoundError"):
                raise DataError(f"cannot load {what}: {e}",
                                hint=f"check the dataset id and revision of task '{spec.name}'",
                                path=src.path) from e
            raise DataError(f"cannot load {what}: {type(e).__name__}: {e}", path=src.path) from e
        out: dict[str, _Raw] = {}
        for s, hs in hub_splits.items():
            try:
                ds = builder.as_dataset(split=hs)
            except (KeyError, ValueError) as e:
                available = ", ".join(builder.info.splits or {})
                raise DataError(f"{src.path} ({src.config}) has no split {hs!r} (it has: "
                                f"{available})",
                                hint=f"fix the split mapping of task '{spec.name}'") from e
            columns = _arrow_columns(ds)
            direct = _is_class_label(ds, spec.label_field)
            out[s] = _Raw(columns, f"{src.path} ({src.config}, {hs})", 0, label_ids_direct=direct)
        sha = getattr(builder, "hash", None)
        if store is not None and isinstance(sha, str) and len(sha) == 40:
            _record_revision(store, src, sha, {s: len(next(iter(r.columns.values()), []))
                                               for s, r in out.items()})
    return out


def _is_class_label(ds: Any, field: str) -> bool:
    feat = ds.features.get(field) if field in ds.features else None
    return type(feat).__name__ == "ClassLabel"


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
        emit(progress, "data", task=spec.name, done=i, total=len(specs),
             message=f"loading {spec.source_label()}")
        sizes = fetch_task(spec, store=store)
        out.append(Fetched(spec.name, spec.source_label(), sizes,
                           recorded_revision(spec, store), data_fingerprint(spec, store=store)))
        emit(progress, "data", task=spec.name, done=i + 1, total=len(specs), message="ready")
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


# -- fingerprints ------------------------------------------------------------------------------
def data_fingerprint(spec: TaskSpec, *, store: Store | None = None) -> str:
    """A task's data identity (16 hex) for cache keys: its spec plus what its data is.

    Local files: their content hashes. Synthetic: the generator version, seed and sizes (all
    in the spec) plus the generator version in the code. Hub: path, config and the resolved
    revision (pinned in the spec, or recorded in the store by the first download; before that
    the fingerprint says ``unresolved`` and changes once the data has been downloaded).
    """
    src = spec.source
    payload: dict[str, Any] = {"spec": spec.fingerprint()}
    if isinstance(src, LocalSource):
        payload["files"] = {s: sha256_file(_local_file(spec, src, s)) for s in sorted(src.files)}
    elif isinstance(src, SyntheticSource):
        from .tasks import demo

        payload["generator"] = demo.GENERATOR_VERSION
    elif isinstance(src, HubSource):
        payload["revision"] = recorded_revision(spec, store) or "unresolved"
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


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
        key = _revision_key(store, src)
        if store.exists(key):
            return f"cached @{sha[:10]}"
    return "not downloaded"


# ---------------------------------------------------------------------------------------------
# Adding a local task (``gradts data add``)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddedTask:
    spec: TaskSpec
    path: Path                       # the TOML file written
    sizes: Mapping[str, int]
    replaced: bool


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in items) + "]"


def task_toml(spec: TaskSpec) -> str:
    """A TOML ``[task]`` table that the registry reads back into ``spec``."""
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
    label left out). Refuses a built-in task's name, and an existing user task unless ``force``.
    """
    from .tasks import registry as reg_mod

    check_name(name)
    if "train" not in files:
        raise ConfigError(f"task '{name}': a train file is required", hint="pass --train FILE")
    tasks_dir = tasks_dir or reg_mod.user_tasks_dir()
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
    resolved: dict[str, str] = {}
    for split, f in files.items():
        p = Path(f).expanduser()
        resolved[split] = str(p.resolve())
    fmt = format or reg_mod._guess_format(resolved["train"])
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ConfigError(f"format {fmt!r} is not one of csv, tsv, jsonl")
    if kind not in ("classification", "regression"):
        raise ConfigError(f"kind {kind!r} is not one of classification, regression")
    text = tuple(t.strip() for t in text if t.strip())
    source = LocalSource(resolved, fmt, header, quoting)  # type: ignore[arg-type]
    if kind == "classification" and not labels:
        labels = _infer_labels(name, source, text, label, store)
    if kind == "regression" and labels:
        raise ConfigError("--labels applies to classification tasks only")
    try:
        spec = TaskSpec(name=name, kind=kind, text_fields=text, label_field=label,  # type: ignore[arg-type]
                        source=source, labels=tuple(labels or ()),
                        metrics=tuple(metrics or ()), description=description,
                        origin=str(target))
    except TaskError as e:
        raise ConfigError(e.message, hint=e.hint) from e
    loaded = load_task(spec, store=store, splits=tuple(resolved))
    text_toml = task_toml(spec)
    # read it back through the registry's parser before writing: what is written must load
    back = reg_mod.parse_task_table(reg_mod.tomllib.loads(text_toml)["task"], str(target),
                                    tasks_dir, str(target))
    if back.fingerprint() != spec.fingerprint():  # pragma: no cover - a bug in task_toml
        raise TaskError(f"internal: the TOML written for task '{name}' does not read back")
    try:
        atomic_write_text(target, text_toml)
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}",
                          hint="check GRADTS_CONFIG_DIR and its permissions") from e
    return AddedTask(spec, target, {s: len(v) for s, v in loaded.items()}, replaced)


def _infer_labels(name: str, source: LocalSource, text: Sequence[str], label: str,
                  store: Store | None) -> tuple[str, ...]:
    values: set[str] = set()
    for split in source.files:
        probe = TaskSpec(name=name, kind="regression", text_fields=tuple(text) or ("0",),
                         label_field=label, source=source)
        raw = _local_columns(probe, source, split, store)
        names = list(raw.columns)
        col = _find_column(label, names)
        if col is None:
            if split == "test":
                continue
            _resolve_column(label, names, raw.where, "label")
        for v in raw.columns[col]:  # type: ignore[index]
            if _is_missing(v) or (split == "test" and _is_minus_one(v)):
                continue  # unlabelled test rows; an empty train/dev label fails validation
            values.add(str(v).strip())
    if len(values) < 2:
        shown = ", ".join(repr(v) for v in sorted(values)) or "none"
        raise DataError(f"task '{name}': the label column {label!r} has fewer than two distinct "
                        f"values ({shown})",
                        hint="check --label, or give the names with --labels a,b")
    return _sort_label_values(values)


# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Encoded:
    """A tokenised split, ragged: example i's ids are ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray               # (total_tokens,) int32
    token_type_ids: np.ndarray | None   # (total_tokens,) int32, or None
    offsets: np.ndarray                 # (N+1,) int64
    labels: np.ndarray                  # (N,) int64 or float32
    task: str = ""
    split: str = ""
    fingerprint: str = ""               # the tokens cache key's digest

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)     # (N,)


_TOKENIZER_FP: dict[int, tuple[Any, str]] = {}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's output: class, vocabulary and pipeline (16 hex).

    Fast tokenizers hash their ``tokenizer.json`` (normaliser, pre-tokeniser, model, post-
    processor, added tokens) without the call-time truncation and padding state; others hash
    their vocabulary and special tokens.
    """
    cached = _TOKENIZER_FP.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        doc = json.loads(backend.to_str())
        doc.pop("truncation", None)
        doc.pop("padding", None)
        h.update(canonical_json(doc).encode())
    else:
        h.update(canonical_json(sorted(tokenizer.get_vocab().items())).encode())
        h.update(canonical_json(getattr(tokenizer, "special_tokens_map", {})).encode())
    h.update(canonical_json(list(getattr(tokenizer, "model_input_names", []))).encode())
    fp = h.hexdigest()[:16]
    _TOKENIZER_FP[id(tokenizer)] = (tokenizer, fp)
    return fp


def _tokens_key(store: Store, split: Split, tokenizer: Any, tokenizer_id: str,
                max_length: int) -> Any:
    return store.key("tokens", [split.task, split.split, safe_component(tokenizer_id),
                                f"len{max_length}"],
                     {"split": split.fingerprint, "tokenizer": tokenizer_id,
                      "tokenizer_class": type(tokenizer).__name__,
                      "tokenizer_hash": tokenizer_fingerprint(tokenizer),
                      "max_length": max_length, "format": TOKENS_FORMAT})


def encode_split(split: Split, tokenizer: Any, *, tokenizer_id: str, max_length: int,
                 store: Store | None = None, force: bool = False,
                 chunk_size: int = 4096) -> Encoded:
    """Tokenise a split (pairs truncated ``longest_first``), cached in the store (kind ``tokens``).

    ``force`` recomputes and replaces a cached entry (e.g. one reported as corrupted).
    """
    n_special = tokenizer.num_special_tokens_to_add(pair=len(split.texts) == 2)
    if max_length < n_special + len(split.texts):
        raise ConfigError(f"max length {max_length} is too small: the tokenizer adds {n_special} "
                          "special tokens", hint="use --max-length 32 or more")
    if store is None:
        return _encode(split, tokenizer, max_length, chunk_size, "")
    key = _tokens_key(store, split, tokenizer, tokenizer_id, max_length)
    with store.lock(key, timeout=600):
        if store.exists(key) and not force:
            entry = store.entry(key)  # verifies checksums: a damaged entry is reported
            arrays = store.load_arrays(entry, "tokens")
            return Encoded(arrays["input_ids"], arrays.get("token_type_ids"), arrays["offsets"],
                           arrays["labels"], split.task, split.split, key.digest)
        enc = _encode(split, tokenizer, max_length, chunk_size, key.digest)
        arrays = {"input_ids": enc.input_ids, "offsets": enc.offsets, "labels": enc.labels}
        if enc.token_type_ids is not None:
            arrays["token_type_ids"] = enc.token_type_ids
        info = {"task": split.task, "split": split.split, "examples": len(enc),
                "tokens": int(enc.input_ids.size),
                "truncated_max": int(enc.lengths().max()) if len(enc) else 0}
        with store.writer(key, info=info) as w:
            w.save_arrays("tokens", arrays)
        return enc


def _encode(split: Split, tokenizer: Any, max_length: int, chunk_size: int,
            fingerprint: str) -> Encoded:
    use_tt = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    pair = len(split.texts) == 2
    ids_parts: list[np.ndarray] = []
    tt_parts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    n = len(split)
    for start in range(0, n, chunk_size):
        a = list(split.texts[0][start:start + chunk_size])
        b = list(split.texts[1][start:start + chunk_size]) if pair else None
        out = tokenizer(a, b, truncation="longest_first" if pair else True,
                        max_length=max_length, padding=False, return_attention_mask=False,
                        return_token_type_ids=use_tt)
        ids = out["input_ids"]
        lengths.append(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))
        ids_parts.append(np.fromiter((t for x in ids for t in x), dtype=np.int32))
        if use_tt:
            tt_parts.append(np.fromiter((t for x in out["token_type_ids"] for t in x),
                                        dtype=np.int32))
    lens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    input_ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
    token_type_ids = (np.concatenate(tt_parts) if tt_parts else np.zeros(0, np.int32)) \
        if use_tt else None
    return Encoded(input_ids, token_type_ids, offsets, split.labels.copy(), split.task,
                   split.split, fingerprint)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------
def batches(encoded: Encoded, batch_size: int, *, shuffle: bool, seed: int,
            group_by_length: bool = True) -> list[np.ndarray]:
    """Index arrays, one per batch, deterministic in ``seed``.

    ``shuffle`` with ``group_by_length``: shuffle, cut into mega-chunks of ``50 * batch_size``,
    sort each chunk by length (longest first), cut into batches, shuffle the batch order.
    Without ``shuffle``: ``group_by_length`` sorts the whole split longest first (evaluation:
    least padding, and the biggest batch comes first so memory errors show at once); otherwise
    the split's order.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    n = len(encoded)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if group_by_length and n:
        lengths = encoded.lengths()
        if shuffle:
            chunk = 50 * batch_size
            order = np.concatenate([
                c[np.argsort(-lengths[c], kind="stable")]
                for c in (order[s:s + chunk] for s in range(0, n, chunk))
            ])
        else:
            order = np.argsort(-lengths, kind="stable")
    out = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if shuffle and group_by_length:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


def collate(encoded: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples ``idx`` to the batch's longest: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (when the tokenizer has them), ``labels`` (long, or float for regression)."""
    import torch

    if pad_id is None:
        raise ConfigError("the tokenizer has no padding token",
                          hint="set tokenizer.pad_token before training")
    idx = np.asarray(idx, dtype=np.int64)
    starts = encoded.offsets[idx]                        # (B,)
    lens = encoded.offsets[idx + 1] - starts             # (B,)
    t_max = int(lens.max()) if idx.size else 0
    mask = np.arange(t_max)[None, :] < lens[:, None]     # (B, T)
    # positions of every kept token in the flat arrays, row by row
    flat = (starts[:, None] + np.arange(t_max)[None, :])[mask]
    ids = np.full((idx.size, t_max), pad_id, dtype=np.int64)
    ids[mask] = encoded.input_ids[flat]
    batch = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
    }
    if encoded.token_type_ids is not None:
        tt = np.zeros((idx.size, t_max), dtype=np.int64)
        tt[mask] = encoded.token_type_ids[flat]
        batch["token_type_ids"] = torch.from_numpy(tt)
    y = encoded.labels[idx]
    batch["labels"] = (torch.from_numpy(y.astype(np.float32)) if y.dtype.kind == "f"
                       else torch.from_numpy(y.astype(np.int64)))
    return batch
