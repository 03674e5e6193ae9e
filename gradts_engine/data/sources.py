"""Reading a split's columns: the synthetic demo generator and local CSV/TSV/JSONL files.

Local files are read with ``datasets.load_dataset("csv"/"json")``: every value as a string (no
type inference), quote characters as text unless the spec says otherwise (the original GLUE
TSV files need that), a header's UTF-8 byte-order mark stripped, and files without a header
get columns ``"0"``, ``"1"``, .... ``datasets`` is imported inside functions only, with its
progress bars and logging off (the engine never prints).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError, StoreError
from ..store import Store, sha256_file
from ..tasks.spec import LocalSource, SyntheticSource, TaskSpec
from .columns import Raw


# -- synthetic ---------------------------------------------------------------------------------
def synthetic_columns(spec: TaskSpec, src: SyntheticSource, split: str,
                       max_examples: int | None) -> Raw:
    from ..tasks import demo

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
    return Raw(columns, f"demo task '{spec.name}' ({split})", 0, label_ids_direct=True)



# -- datasets plumbing -------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_datasets() -> Iterator[Any]:
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
def cache_dir(store: Store | None) -> Iterator[str]:
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


def arrow_columns(ds: Any) -> dict[str, list[Any]]:
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
def local_file(spec: TaskSpec, src: LocalSource, split: str) -> Path:
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
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long rows are data, not errors
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


def local_columns(spec: TaskSpec, src: LocalSource, split: str, store: Store | None) -> Raw:
    path = local_file(spec, src, split)
    digest = sha256_file(path)
    if src.format == "jsonl":
        return _read_jsonl(path, digest, store)
    names = _delimited_header(path, src)
    if not names:
        raise DataError(f"{path} is empty (split '{split}' of task '{spec.name}')",
                        hint="check that the file is the right one", path=str(path))
    with quiet_datasets() as datasets, cache_dir(store) as cache:
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
        columns = arrow_columns(ds)
    return Raw(columns, str(path), 2 if src.header else 1)


def _read_jsonl(path: Path, digest: str, store: Store | None) -> Raw:
    try:
        has_rows = _check_jsonl(path)
    except OSError as e:
        raise DataError(f"{path} cannot be read: {e.strerror}", path=str(path)) from e
    if not has_rows:
        raise DataError(f"{path} is empty", hint="check that the file is the right one",
                        path=str(path))
    with quiet_datasets() as datasets, cache_dir(store) as cache:
        try:
            ds = datasets.load_dataset("json", name=f"gradts-{digest[:16]}",
                                       data_files={"train": str(path)}, split="train",
                                       cache_dir=cache)
        except Exception as e:
            raise _read_error(path, e) from e
        columns = arrow_columns(ds)
    return Raw(columns, str(path), 1)


def _check_jsonl(path: Path) -> bool:
    """Every non-blank line must be one JSON object; True when there is at least one.

    Checked here because ``datasets``' JSON reader crashes the process (a segmentation fault
    in its Arrow reader) on a file whose only line is ``null``."""
    has_rows = False
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except UnicodeDecodeError as e:
                raise DataError(f"{path} is not UTF-8 text (line {n}: {e.reason})",
                                hint="save the file as UTF-8", path=str(path)) from e
            except ValueError as e:
                raise DataError(f"{path} line {n} is not valid JSON ({e})",
                                hint="one JSON object per line", path=str(path)) from e
            if not isinstance(row, dict):
                raise DataError(f"{path} line {n} is a JSON {type(row).__name__}, not an object",
                                hint="one JSON object per line, e.g. "
                                     '{"text": "...", "label": "..."}', path=str(path))
            has_rows = True
    return has_rows


def _read_error(path: Path, e: BaseException) -> DataError | StoreError:
    cause: BaseException = e
    chain = [e]
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        assert nxt is not None
        cause = nxt
        chain.append(cause)
    for c in chain:  # the datasets cache lives in the store: a full or read-only disk is its
        if getattr(c, "errno", None) in (errno.ENOSPC, errno.EROFS) or \
                "Not enough disk space" in str(c):
            full = getattr(c, "errno", None) != errno.EROFS
            return StoreError(f"cannot cache {path.name} in the store's datasets cache: "
                              + ("the disk is full" if full else "the file system is read-only"),
                              hint="free some space, or pass another --home" if full else
                              "pass a writable directory with --home")
    if isinstance(cause, UnicodeDecodeError):
        return DataError(f"{path} is not UTF-8 text ({cause.reason})",
                         hint="save the file as UTF-8", path=str(path))
    msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    msg = msg.replace("Error tokenizing data. C error: ", "")
    return DataError(f"{path} cannot be parsed: {msg}",
                     hint="check the format (--format csv|tsv|jsonl), the header and the "
                          "quoting (quote characters are text unless quoting = true)",
                     path=str(path))

