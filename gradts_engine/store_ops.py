"""Cache operations over the whole store (DESIGN.md §4): scan, verify everything, remove.

What the store holds, as :func:`walk` classifies it:

- an **entry**: a directory holding ``meta.json``, or a leaf directory named like a key's hash
  (12 hex digits) that lost its ``meta.json`` (a damaged entry, never a missing one);
- the store's own folders: ``.tmp/`` (entries being written), ``.locks/``, ``.datasets/``
  (the Hugging Face datasets cache);
- a **temporary** in ``.tmp/``: live while its writer holds ``.locks/tmp-<name>.lock``, stray
  (left by a killed process) once that lock is free; stray ones are removed by the next write;
- anything else is **unrecognised** (a foreign file or folder): :func:`verify_all` names it.

:func:`remove` takes each entry's key lock (``.locks/<hash>.lock``, the lock that a probe or
trial computing that key holds), so an entry is never removed under a running writer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CorruptEntryError, StoreError

if TYPE_CHECKING:
    from .store import Store

OWN_DIRS = (".tmp", ".locks", ".datasets")
HASH_DIR = re.compile(r"^[0-9a-f]{12}$")


class EntryState(str, Enum):
    OK = "ok"
    DAMAGED = "damaged"
    FUTURE = "future-format"


@dataclass(frozen=True)
class EntryStatus:
    """One entry as :func:`scan` sees it (sizes and metadata; checksums are verify's job)."""

    path: str                      # relative to the root, e.g. probe/minilm/cola/gate/0123abcd4567
    kind: str
    names: tuple[str, ...]
    settings: Mapping[str, Any]
    size: int                      # bytes on disk, meta.json included
    created: str | None
    state: EntryState
    problem: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class Finding:
    """Something wrong or unknown in the store, with the way to fix it."""

    path: str                      # relative to the root
    what: str                      # damaged | future-format | foreign file | foreign folder |
    message: str                   # stray temporary
    hint: str


@dataclass(frozen=True)
class VerifyReport:
    root: str
    checked: int
    damaged: tuple[Finding, ...] = ()
    unrecognised: tuple[Finding, ...] = ()
    temporaries: tuple[Finding, ...] = field(default=())  # stray, removed by the next write

    @property
    def clean(self) -> bool:
        return not self.damaged and not self.unrecognised


@dataclass
class _Walk:
    entries: list[tuple[Path, str]] = field(default_factory=list)   # (entry dir, kind)
    foreign: list[Path] = field(default_factory=list)


def _is_entry_dir(d: Path) -> bool:
    if (d / "meta.json").exists():
        return True
    return bool(HASH_DIR.match(d.name)) and not any(c.is_dir() for c in d.iterdir())


def _walk_tree(d: Path, kind: str, out: _Walk) -> bool:
    """Collect entries and foreign things under ``d``; True when ``d`` holds an entry."""
    found = False
    foreign: list[Path] = []
    for child in sorted(d.iterdir()):
        if child.is_symlink() or not child.is_dir():
            foreign.append(child)
        elif _is_entry_dir(child):
            out.entries.append((child, kind))
            found = True
        else:
            sub = _Walk()
            if _walk_tree(child, kind, sub):
                out.entries += sub.entries
                out.foreign += sub.foreign
                found = True
            elif _has_files(child):
                foreign.append(child)           # a folder with no entry in it: one finding
    out.foreign += foreign
    return found


def _has_files(d: Path) -> bool:
    """Whether a folder holds any file (empty folder chains, as an interrupted write or a
    removal can leave above an entry, are harmless and not reported)."""
    return any(p.is_file() or p.is_symlink() for p in d.rglob("*"))


def walk(store: Store, kind: str | None = None) -> _Walk:
    out = _Walk()
    root = store.root
    store.check_root()
    if not root.is_dir():
        return out
    for top in sorted(root.iterdir()):
        if top.name in OWN_DIRS and top.is_dir() and not top.is_symlink():
            continue
        if kind is not None and top.name != kind:
            continue
        if top.is_symlink() or not top.is_dir() or top.name.startswith("."):
            out.foreign.append(top)
        elif not _walk_tree(top, top.name, out) and _has_files(top):
            out.foreign = [p for p in out.foreign if top not in p.parents] + [top]
    return out


def entry_dirs(store: Store, kind: str | None = None) -> list[tuple[Path, str]]:
    """``(path, kind)`` of every entry directory, damaged ones included, sorted by path."""
    from .store import safe_component

    return sorted(walk(store, safe_component(kind) if kind else None).entries)


def _size(path: Path) -> int:
    total = 0
    for p in path.iterdir():
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def scan(store: Store) -> list[EntryStatus]:
    """Every entry, its state from ``meta.json`` and the files' presence and sizes."""
    out = []
    for path, kind in entry_dirs(store):
        rel = path.relative_to(store.root).as_posix()
        names = tuple(rel.split("/")[1:-1])
        try:
            meta = store.read_meta(path)
            _check_sizes(store, path, meta)
        except CorruptEntryError as e:
            state = EntryState.FUTURE if e.details.get("state") == "future-format" \
                else EntryState.DAMAGED
            out.append(EntryStatus(rel, kind, names, {}, _size(path), None, state,
                                   e.message, e.hint))
            continue
        spec = meta.get("spec", {})
        settings = spec.get("settings", spec) if isinstance(spec, dict) else {}
        out.append(EntryStatus(rel, kind, tuple(meta.get("names", names)), settings,
                               _size(path), meta.get("created"), EntryState.OK))
    return out


def _check_sizes(store: Store, path: Path, meta: Mapping[str, Any]) -> None:
    for name, rec in meta["files"].items():
        f = path / name
        size = f.stat().st_size if f.is_file() else None
        if size is None or not isinstance(rec, dict) or size != rec.get("bytes"):
            raise CorruptEntryError(f"cache entry {path}: file {name} is missing or truncated",
                                    hint=store.fix_hint(path), path=str(f))


def verify_all(store: Store) -> VerifyReport:
    """Recompute every checksum; name each damaged entry and file, and everything that the
    store does not recognise (foreign files and folders, stray temporaries, future formats)."""
    w = walk(store)
    damaged = []
    for path, _kind in sorted(w.entries):
        rel = path.relative_to(store.root).as_posix()
        try:
            store.verify_path(path)
        except CorruptEntryError as e:
            what = "future-format" if e.details.get("state") == "future-format" else "damaged"
            damaged.append(Finding(rel, what, e.message, e.hint or store.fix_hint(path)))
    root = store.root.resolve() if store.root.exists() else store.root
    foreign = [Finding(p.relative_to(store.root).as_posix(),
                       "foreign folder" if p.is_dir() and not p.is_symlink() else "foreign file",
                       f"{p} is not a gradts cache entry",
                       f"move it out of the store, or remove it: gradts --home {root} cache rm "
                       f"{p.relative_to(store.root).as_posix()}") for p in w.foreign]
    stray = [Finding(p.relative_to(store.root).as_posix(), "stray temporary",
                     f"{p} was left by an interrupted write",
                     "harmless; the next write to the store removes it")
             for p in _temporaries(store) if not _writer_alive(store, p)]
    return VerifyReport(str(store.root), len(w.entries), tuple(damaged), tuple(foreign),
                        tuple(stray))


def _temporaries(store: Store) -> list[Path]:
    tmp = store.root / ".tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def _writer_alive(store: Store, tmp: Path) -> bool:
    """Whether the writer of ``.tmp/<name>`` still holds its lock (trash folders: never)."""
    if tmp.name.startswith(("old-", "rm-")):
        return False
    lock = store.root / ".locks" / f"tmp-{tmp.name}.lock"
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no way to tell, keep it
        return True
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def clean_temporaries(store: Store) -> list[str]:
    """Remove the temporaries of dead writers (and their lock files); names of those removed."""
    removed = []
    for p in _temporaries(store):
        if _writer_alive(store, p):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            (store.root / ".locks" / f"tmp-{p.name}.lock").unlink()
        if not p.exists():
            removed.append(p.name)
    return removed


def _inside(store: Store, target: Path) -> Path:
    root = store.root.resolve()
    path = (target if target.is_absolute() else store.root / target)
    # resolve the parent only: a symlink named in the store is removed, never followed
    resolved = path.parent.resolve() / path.name
    if resolved == root or root not in resolved.parents or path.name in ("", ".", ".."):
        raise StoreError(f"{target} is not inside the store {root}",
                         hint="give a path from `gradts cache list` or `gradts cache verify`")
    rel = resolved.relative_to(root)
    if rel.parts[0] == ".locks" or (rel.parts[0] in OWN_DIRS and len(rel.parts) == 1):
        raise StoreError(f"{target} is the store's own folder, not an entry",
                         hint="give a path from `gradts cache list` or `gradts cache verify`")
    if not os.path.lexists(resolved):
        raise StoreError(f"no cache entry at {resolved}", hint="see `gradts cache list`")
    return resolved


def remove(store: Store, target: Path, timeout: float | None) -> list[str]:
    """Remove an entry under its key's lock; a folder: every entry in it, each under its lock,
    then what remains (foreign files); a foreign file or stray temporary: just it."""
    path = _inside(store, target)
    root = store.root.resolve()
    removed: list[str] = []
    try:
        if path.parent == root / ".tmp" and path.is_dir() and not path.is_symlink():
            _rename_away(store, path)                       # a stray temporary
            removed.append(path.relative_to(root).as_posix())
        elif path.is_dir() and not path.is_symlink():
            for e in sorted(p for p, _ in walk_under(store, path)):
                with store.lock_digest(e.name, timeout, e.relative_to(root).as_posix()):
                    _rename_away(store, e)
                removed.append(e.relative_to(root).as_posix())
            if path.exists():
                _rename_away(store, path)
                removed.append(path.relative_to(root).as_posix())
        else:
            path.unlink()
            removed.append(path.relative_to(root).as_posix())
    except OSError as e:
        from .store import write_failure

        raise write_failure(e, "remove", path) from e
    _prune_empty(path.parent, root)
    return sorted(set(removed))


def walk_under(store: Store, folder: Path) -> list[tuple[Path, str]]:
    out = _Walk()
    if _is_entry_dir(folder):
        return [(folder, "")]
    _walk_tree(folder, "", out)
    return out.entries


def _rename_away(store: Store, path: Path) -> None:
    """Rename into ``.tmp`` first (readers see the entry whole or not at all), then delete."""
    from .store import make_dirs

    make_dirs(store.root / ".tmp")
    trash = store.root / ".tmp" / f"rm-{path.name}-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _prune_empty(d: Path, root: Path) -> None:
    """Remove the empty readable-name folders left above a removed entry."""
    while d != root and root in d.parents and d.name not in OWN_DIRS:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent
