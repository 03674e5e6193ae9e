"""Hugging Face Hub datasets: loading, offline errors and revision pinning (DESIGN.md §4, §6).

A Hub task is ``datasets.load_dataset_builder(path, config, revision)``. The commit it resolved
to is recorded in the store (kind ``hub-revision``) so later runs load the same commit and
fingerprints stay stable (as mteb pins its datasets).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataError, OfflineError, StoreError
from ..store import Store
from ..tasks.spec import HubSource, TaskSpec
from .columns import Raw
from .sources import arrow_columns, cache_dir, quiet_datasets

OFFLINE_HINT = ("connect, or run `gradts data add` with local files; "
                "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE=1 uses only what is cached")


def revision_key(store: Store, src: HubSource) -> Any:
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
    key = revision_key(store, src)
    if not store.exists(key):
        return None
    entry = store.entry(key)
    sha = store.load_json(entry, "revision").get("sha")
    return str(sha) if sha else None


def record_revision(store: Store, src: HubSource, sha: str, splits: Mapping[str, int]) -> None:
    key = revision_key(store, src)
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


def hub_columns(spec: TaskSpec, src: HubSource, splits: Sequence[str],
                 store: Store | None) -> dict[str, Raw]:
    pinned = recorded_revision(spec, store) or src.revision
    hub_splits = {s: src.splits.get(s, s) for s in splits}
    cache_ctx = cache_dir(store) if store is not None else contextlib.nullcontext(None)
    with quiet_datasets() as datasets, cache_ctx as cache:
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
        out: dict[str, Raw] = {}
        for s, hs in hub_splits.items():
            try:
                ds = builder.as_dataset(split=hs)
            except (KeyError, ValueError) as e:
                available = ", ".join(builder.info.splits or {})
                raise DataError(f"{src.path} ({src.config}) has no split {hs!r} (it has: "
                                f"{available})",
                                hint=f"fix the split mapping of task '{spec.name}'") from e
            columns = arrow_columns(ds)
            direct = _is_class_label(ds, spec.label_field)
            out[s] = Raw(columns, f"{src.path} ({src.config}, {hs})", 0, label_ids_direct=direct)
        sha = getattr(builder, "hash", None)
        if store is not None and isinstance(sha, str) and len(sha) == 40:
            record_revision(store, src, sha, {s: len(next(iter(r.columns.values()), []))
                                               for s, r in out.items()})
    return out


def _is_class_label(ds: Any, field: str) -> bool:
    feat = ds.features.get(field) if field in ds.features else None
    return type(feat).__name__ == "ClassLabel"

