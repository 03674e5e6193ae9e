"""Exports of stored results for use outside gradts (issue 15).

- **Task matrices** ``I_T`` (L, H) of each probed task, both estimators (DESIGN.md §2:
  ``during = layer_l1(sum_steps |dL/dxi|)``, ``after = minmax(layer_l1(mean_i R_i))``) and
  their raw sums/means: one ``<task>.<estimator>.npy`` (L, H) float32 per matrix, or one long
  CSV ``task_matrices.csv`` (task, estimator, layer, head, value; layers and heads 0-based).
- **Instance matrices** ``R_i`` (N, L, H), raw as stored by the probe's ``after`` pass:
  ``<task>.instances.npy`` (N, L, H) float32 with ``<task>.index.npy`` (N,) int64 (each row's
  position in the task's train split), or ``<task>.instances.csv`` with one row per instance
  (index, then ``l<layer>h<head>`` columns), streamed chunk by chunk.
- **GradTS-fg's kept instances** (§1 step 4): the rows of each auxiliary task's train split
  that a cut kept, as a TSV or JSONL subset of the original rows (task, index, the task's text
  fields by name, the label name, and the instance's tau), so that users can train with their
  own trainer.
- :func:`fg_instance_taus`: the instance taus ``tau_i = tau_b(vec(I_P), vec(layer_l1(R_i)))``
  of an fg result, recomputed from exactly the probe entries its selection was keyed by
  (:func:`gradts_engine.selection.cuts.instance_taus`); for the histogram figure and the
  kept-row export.

Every file is written atomically (a temporary file renamed into place). Nothing is pickled
(``np.save(..., allow_pickle=False)``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import MissingResultError, UsageError, did_you_mean
from .store import atomic_write_bytes, atomic_write_text, safe_component

if TYPE_CHECKING:
    from .results import ImportanceResult
    from .selection.records import FgResult, FgRow
    from .store import Entry, Store
    from .tasks.spec import TaskSpec

MATRIX_FORMATS = ("npy", "csv")
ROW_FORMATS = ("tsv", "jsonl")
TASK_ARRAYS = ("during", "after", "during_raw", "after_raw")

__all__ = ["ExportResult", "export_instance_matrices", "export_kept_instances",
           "export_task_matrices", "fg_instance_taus"]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the files and, per task, the number of rows or matrices."""

    files: tuple[Path, ...]
    counts: Mapping[str, int]


def _check(fmt: str, choices: Sequence[str], what: str) -> None:
    if fmt not in choices:
        raise UsageError(f"unknown {what} format '{fmt}'",
                         hint=f"choose one of {', '.join(choices)}")


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file handle whose content appears at ``path`` only when the block ends cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8",
                  newline=None if "b" in mode else "") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# matrices


def export_task_matrices(results: Sequence[ImportanceResult], out_dir: Path,
                         fmt: str = "npy") -> ExportResult:
    """Every task matrix of ``results`` (both estimators and their raw forms) to ``out_dir``."""
    _check(fmt, MATRIX_FORMATS, "matrix")
    files: list[Path] = []
    counts: dict[str, int] = {}
    rows: list[list[Any]] = []
    for r in results:
        arrays = r.store.load_arrays(r.entry, "task")
        names = [k for k in TASK_ARRAYS if k in arrays]
        counts[r.task] = len(names)
        for k in names:
            m = np.asarray(arrays[k], dtype=np.float32)  # (L, H)
            if fmt == "npy":
                p = out_dir / f"{safe_component(r.task)}.{k}.npy"
                atomic_write_bytes(p, _npy_bytes(m), what="the export")
                files.append(p)
            else:
                rows.extend([r.task, k, li, hi, repr(float(m[li, hi]))]
                            for li in range(m.shape[0]) for hi in range(m.shape[1]))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["task", "estimator", "layer", "head", "value"])
        w.writerows(rows)
        p = out_dir / "task_matrices.csv"
        atomic_write_text(p, buf.getvalue(), what="the export")
        files.append(p)
    return ExportResult(tuple(files), counts)


def export_instance_matrices(result: ImportanceResult, out_dir: Path,
                             fmt: str = "npy") -> ExportResult:
    """The raw instance matrices ``R_i`` of one probe with their train-split indices."""
    _check(fmt, MATRIX_FORMATS, "matrix")
    stem = safe_component(result.task)
    chunks = result.iter_instances()  # raises at once for a probe run with --no-instances
    if fmt == "npy":
        index, R = result.instances()  # (N,), (N, L, H)
        pi, pr = out_dir / f"{stem}.index.npy", out_dir / f"{stem}.instances.npy"
        atomic_write_bytes(pi, _npy_bytes(np.asarray(index, dtype=np.int64)), "the export")
        atomic_write_bytes(pr, _npy_bytes(np.asarray(R, dtype=np.float32)), "the export")
        return ExportResult((pi, pr), {result.task: int(index.shape[0])})
    L, H = result.num_layers, result.num_heads
    p = out_dir / f"{stem}.instances.csv"
    n = 0
    with _atomic_file(p) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["index", *(f"l{li}h{hi}" for li in range(L) for hi in range(H))])
        for idx, R in chunks:
            flat = np.asarray(R, dtype=np.float32).reshape(R.shape[0], -1)  # (n, L*H)
            for i, row in zip(np.asarray(idx).tolist(), flat.tolist(), strict=True):
                w.writerow([i, *(repr(v) for v in row)])
                n += 1
    return ExportResult((p,), {result.task: n})


# ---------------------------------------------------------------------------------------------
# GradTS-fg


def _entry_at(store: Store, key_path: str) -> Entry:
    from .store import Entry

    path = store.root / key_path
    if not (path / "meta.json").exists():
        raise MissingResultError(f"the store has no entry {key_path} (it was removed)",
                                 hint="rerun the command that made it (gradts fg ...)")
    meta = store.read_meta(path)
    store.verify_path(path, meta)
    return Entry(key_path, path, key_path.split("/", 1)[0], meta)


def _row(fg: FgResult, cut: str | None) -> FgRow:
    if not fg.rows:
        raise MissingResultError(f"the GradTS-fg result of '{fg.primary}' has no cut")
    if cut is None:
        best = fg.best
        return best if best is not None else fg.rows[0]
    labels = {r.cut.label: r for r in fg.rows}
    labels.update({f"{r.cut.kind}={r.cut.value:g}": r for r in fg.rows})
    if cut in labels:
        return labels[cut]
    hint = did_you_mean(cut, labels)
    raise UsageError(f"the GradTS-fg result of '{fg.primary}' has no cut '{cut}'"
                     + (f" ({hint})" if hint else ""),
                     hint="choose one of " + ", ".join(f"'{r.cut.label}'" for r in fg.rows))


def fg_instance_taus(store: Store, fg: FgResult, row: FgRow | None = None
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per auxiliary task, ``(index (N,), tau (N,))`` against the primary's task matrix.

    Recomputed from the probe entries that ``row``'s (default: the best row's) selection was
    keyed by, with the fg result's estimator and method: the same numbers fg cut on.
    """
    from .results import read_result
    from .selection.cuts import instance_taus

    row = row if row is not None else _row(fg, None)
    sel = _entry_at(store, row.selection_key)
    spec = sel.spec
    p_res = read_result(store, _entry_at(store, spec["primary"]["probe"]["entry"]),
                        verify=False)
    x = np.asarray(p_res.matrix(fg.estimator), dtype=np.float64).ravel()  # (D,) vec(I_P)
    out = {}
    for a in spec.get("aux", []):
        a_res = read_result(store, _entry_at(store, a["probe"]["entry"]), verify=False)
        out[a["task"]] = instance_taus(x, a_res, fg.method)
    return out


def export_kept_instances(store: Store, fg: FgResult, specs: Mapping[str, TaskSpec],
                          out: Path, fmt: str | None = None, cut: str | None = None
                          ) -> ExportResult:
    """The rows of the auxiliary tasks' train splits that one cut kept, as TSV or JSONL.

    ``cut``: a cut label (``"tau ≥ 0.62"``, ``"top 25%"``) or ``kind=value``; default the best
    row. ``fmt`` defaults to the suffix of ``out``. Columns: task, index, the task's text
    fields, label, tau.
    """
    from .data import data_fingerprint, load_split
    from .selection.cuts import load_selection

    fmt = fmt or out.suffix.lower().lstrip(".")
    _check(fmt, ROW_FORMATS, "row")
    row = _row(fg, cut)
    sel = _entry_at(store, row.selection_key)
    kept = load_selection(store, sel)
    taus = fg_instance_taus(store, fg, row)
    missing = [t for t in kept if t not in specs]
    if missing:
        raise MissingResultError(f"task(s) {', '.join(missing)} are not declared any more",
                                 hint="declare them again (gradts data add ...)")
    records: list[dict[str, Any]] = []
    for a in sel.spec.get("aux", []):
        task = a["task"]
        spec = specs[task]
        probe = _entry_at(store, a["probe"]["entry"])
        if probe.spec.get("data") != data_fingerprint(spec, store=store):
            raise MissingResultError(
                f"task '{task}' has other data than when it was probed, so the kept indices "
                "do not fit its rows", hint=f"rerun: gradts probe --task {task} --force, then "
                f"gradts fg --primary {fg.primary} --force")
        split = load_split(spec, "train", store=store)
        index, tau = taus[task]
        tau_of = dict(zip(index.tolist(), tau.tolist(), strict=True))
        for i in kept.get(task, np.zeros(0, np.int64)).tolist():
            rec: dict[str, Any] = {"task": task, "index": int(i)}
            rec.update(zip(spec.text_fields, split.example(int(i)), strict=True))
            y = split.labels[int(i)]
            rec["label"] = float(y) if spec.kind == "regression" else spec.labels[int(y)]
            rec["tau"] = tau_of.get(int(i))
            records.append(rec)
    _write_rows(out, fmt, records)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["task"]] = counts.get(rec["task"], 0) + 1
    return ExportResult((out,), counts)


def _write_rows(out: Path, fmt: str, records: Sequence[Mapping[str, Any]]) -> None:
    if fmt == "jsonl":
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                       for r in records), what="the export")
        return
    cols: list[str] = []
    for r in records:
        cols.extend(k for k in r if k not in cols)
    cols = cols or ["task", "index", "label", "tau"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, delimiter="\t", lineterminator="\n",
                       quoting=csv.QUOTE_MINIMAL)
    w.writeheader()
    w.writerows(records)
    atomic_write_text(out, buf.getvalue(), what="the export")


# ---------------------------------------------------------------------------------------------
# provenance (for reports)


@dataclass(frozen=True)
class EntryProvenance:
    """Where one stored result came from: its key, model, data fingerprint and versions."""

    key: str
    kind: str
    task: str | None
    model: str | None            # cache id: hub id@commit, or a resolved local path
    data: str | None             # the task's data fingerprint (probe entries)
    created: str | None
    versions: Mapping[str, str]
    settings: Mapping[str, Any]


def provenance(store: Store, key_paths: Sequence[str]) -> tuple[EntryProvenance, ...]:
    """The provenance of the entries at ``key_paths`` (entries that vanished are skipped)."""
    out = []
    for k in key_paths:
        path = store.root / k
        if not (path / "meta.json").exists():
            continue
        meta = store.read_meta(path)
        spec, info = meta.get("spec", {}), meta.get("info", {})
        out.append(EntryProvenance(
            key=k, kind=str(meta.get("kind", "")),
            task=info.get("task_name") or info.get("primary"), model=spec.get("model"),
            data=spec.get("data"), created=meta.get("created"),
            versions=dict(meta.get("versions", {})), settings=dict(spec.get("settings", {}))))
    return tuple(out)

