"""The cache of computed artefacts (DESIGN.md §4).

Layout under the root::

    <root>/<kind>/<readable/name/parts>/<hash12>/meta.json      metadata, versions, checksums
                                                 /*.safetensors  arrays (never pickle)
                                                 /*.json         other structured results
    <root>/.tmp/       entries being written (invisible until renamed into place)
    <root>/.locks/     one lock file per key

An entry's *key* holds everything that changes it (the ``spec`` dictionary: model id and
revision, task spec and data fingerprint, settings) plus :data:`FORMAT_VERSION`; its hash is
the last path component, the readable parts in front of it are for humans. An entry is written
into a temporary directory, every file fsynced, ``meta.json`` (with a SHA-256 of every file)
written last, and the directory renamed into place: a reader sees either nothing or a
complete entry. :meth:`Store.verify` recomputes the checksums and names the file that does not
match; :meth:`Store.read_meta` rejects an entry whose ``meta.json`` is missing or unreadable.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CorruptEntryError, StoreError

FORMAT_VERSION = 1
META = "meta.json"
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
_STALE_TMP_SECONDS = 24 * 3600


def default_root() -> Path:
    """The store root when neither ``--home`` nor ``GRADTS_HOME`` is given."""
    import platformdirs

    return Path(platformdirs.user_data_dir("gradts"))


def resolve_root(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` (when given) < ``GRADTS_HOME`` < the platform's user data directory.

    The flag wins over the environment variable, as every other setting does (DESIGN.md §4
    lists the environment first; the CLI's precedence rule, flags over environment, is the
    one applied here).
    """
    if home is not None and str(home) != "":
        return Path(home).expanduser()
    env = os.environ.get("GRADTS_HOME")
    if env:
        return Path(env).expanduser()
    return default_root()


def safe_component(text: str) -> str:
    """Turn any string (a model id, a task name) into one safe path component."""
    text = text.replace("/", "--").replace("\\", "--")
    text = _SAFE.sub("_", text).strip("._-")
    return text[:80] or "_"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON used for hashing keys (sorted keys, no whitespace)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass(frozen=True)
class Key:
    """Where an entry lives: ``kind/names.../hash``; ``spec`` is what the hash covers."""

    kind: str
    names: tuple[str, ...]
    spec: Mapping[str, Any]

    @property
    def digest(self) -> str:
        payload = canonical_json({"format": FORMAT_VERSION, "kind": self.kind, "spec": self.spec})
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def relpath(self) -> Path:
        return Path(safe_component(self.kind), *map(safe_component, self.names), self.digest)

    def __str__(self) -> str:
        return self.relpath.as_posix()


@dataclass(frozen=True)
class Entry:
    """A complete entry in the store, as listed or read."""

    key_path: str
    path: Path
    kind: str
    meta: Mapping[str, Any]

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.meta.get("spec", {})

    @property
    def info(self) -> Mapping[str, Any]:
        return self.meta.get("info", {})


def _versions() -> dict[str, str]:
    """Versions of the libraries that produced an entry (only those already imported)."""
    import sys

    from . import __version__

    out = {"gradts": __version__, "python": sys.version.split()[0]}
    for name in ("torch", "transformers", "datasets", "numpy"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


class EntryWriter:
    """Collects an entry's files in a private temporary directory; commit renames it in."""

    def __init__(self, store: Store, key: Key) -> None:
        self.store = store
        self.key = key
        self.tmp = store.root / ".tmp" / f"{key.digest}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True, exist_ok=False)
        self.files: list[str] = []
        self.started = time.time()

    def _path(self, name: str) -> Path:
        if "/" in name or "\\" in name or name.startswith(".") or name == META:
            raise StoreError(f"invalid file name '{name}' for a store entry")
        return self.tmp / name

    def _done(self, path: Path) -> None:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        if path.name not in self.files:
            self.files.append(path.name)

    def save_arrays(self, name: str, arrays: Mapping[str, Any]) -> None:
        """Save numpy arrays (or torch tensors, converted on the CPU) as one safetensors file."""
        import numpy as np
        from safetensors.numpy import save_file

        plain: dict[str, np.ndarray] = {}
        for k, v in arrays.items():
            if hasattr(v, "detach"):
                v = v.detach().to("cpu")
                v = v.float().numpy() if v.is_floating_point() else v.numpy()
            plain[k] = np.ascontiguousarray(v)
        path = self._path(name if name.endswith(".safetensors") else f"{name}.safetensors")
        save_file(plain, str(path))
        self._done(path)

    def save_json(self, name: str, obj: Any) -> None:
        path = self._path(name if name.endswith(".json") else f"{name}.json")
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")
        self._done(path)

    def commit(self, info: Mapping[str, Any] | None = None) -> Entry:
        """Write ``meta.json`` with checksums and move the entry into place atomically."""
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.key.kind,
            "key": str(self.key),
            "names": list(self.key.names),
            "spec": self.key.spec,
            "info": dict(info or {}),
            "versions": _versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
            "write_seconds": round(time.time() - self.started, 3),
            "files": {n: {"sha256": sha256_file(self.tmp / n),
                          "bytes": (self.tmp / n).stat().st_size} for n in sorted(self.files)},
        }
        meta_path = self.tmp / META
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        self._done(meta_path)
        _fsync_dir(self.tmp)
        final = self.store.root / self.key.relpath
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # replaced under the key's lock (a --force rerun)
            trash = self.store.root / ".tmp" / f"old-{self.key.digest}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(self.tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, final)
        _fsync_dir(final.parent)
        return Entry(str(self.key), final, self.key.kind, meta)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class Store:
    """The artefact cache rooted at ``root`` (see module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- keys and paths -------------------------------------------------------------------
    def key(self, kind: str, names: Sequence[str], spec: Mapping[str, Any]) -> Key:
        return Key(kind, tuple(names), json.loads(canonical_json(spec)))

    def path(self, key: Key) -> Path:
        return self.root / key.relpath

    def exists(self, key: Key) -> bool:
        return (self.path(key) / META).is_file()

    # -- writing --------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        try:
            (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
            (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the store at {self.root}: {e.strerror}",
                hint="pass a writable directory with --home or GRADTS_HOME",
            ) from e
        self._clean_stale_tmp()

    def _clean_stale_tmp(self) -> None:
        now = time.time()
        for p in (self.root / ".tmp").iterdir():
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(p, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, key: Key, timeout: float | None = None) -> Iterator[None]:
        """An exclusive inter-process lock for one key (``fcntl.flock``; released on exit)."""
        self._ensure_root()
        path = self.root / ".locks" / f"{key.digest}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, timeout, key)
            yield
        finally:
            _release(fd)
            os.close(fd)

    @contextlib.contextmanager
    def writer(self, key: Key, info: Mapping[str, Any] | None = None) -> Iterator[EntryWriter]:
        """Write one entry: ``with store.writer(key) as w: w.save_arrays(...)``.

        The entry becomes visible only when the block ends without an exception; the caller
        should hold :meth:`lock` for the whole computation so two processes never race.
        Additional ``info`` may be set on ``w.info`` inside the block.
        """
        self._ensure_root()
        w = EntryWriter(self, key)
        w.info = dict(info or {})  # type: ignore[attr-defined]
        try:
            yield w
        except BaseException:
            w.abort()
            raise
        w.commit(w.info)  # type: ignore[attr-defined]

    def remove(self, key: Key) -> bool:
        path = self.path(key)
        if not path.exists():
            return False
        trash = self.root / ".tmp" / f"rm-{key.digest}-{uuid.uuid4().hex[:8]}"
        self._ensure_root()
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # -- reading --------------------------------------------------------------------------
    def read_meta(self, key_or_path: Key | Path) -> dict[str, Any]:
        path = self.path(key_or_path) if isinstance(key_or_path, Key) else key_or_path
        meta_path = path / META
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise CorruptEntryError(
                f"cache entry {path} has no meta.json (half-written or damaged)",
                hint=f"delete it: gradts cache rm {path}",
                path=str(path),
            ) from e
        except (OSError, ValueError) as e:
            raise CorruptEntryError(
                f"cache entry {path}: meta.json is unreadable ({e})",
                hint=f"delete it: gradts cache rm {path}",
                path=str(path),
            ) from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise CorruptEntryError(
                f"cache entry {path} has format "
                f"{meta.get('format') if isinstance(meta, dict) else '?'},"
                f" this gradts reads format {FORMAT_VERSION}",
                hint="recompute it with --force",
                path=str(path),
            )
        return meta

    def entry(self, key: Key, verify: bool = True) -> Entry:
        path = self.path(key)
        if not path.exists():
            raise CorruptEntryError(f"no cache entry at {path}", path=str(path))
        meta = self.read_meta(path)
        if verify:
            self.verify_path(path, meta)
        return Entry(str(key), path, key.kind, meta)

    def verify_path(self, path: Path, meta: Mapping[str, Any] | None = None) -> None:
        """Recompute every file's checksum; raise :class:`CorruptEntryError` naming the file."""
        meta = meta if meta is not None else self.read_meta(path)
        for name, rec in meta.get("files", {}).items():
            f = path / name
            if not f.is_file():
                raise CorruptEntryError(
                    f"cache entry {path}: file {name} is missing",
                    hint="recompute it with --force", path=str(f),
                )
            if f.stat().st_size != rec.get("bytes"):
                raise CorruptEntryError(
                    f"cache entry {path}: file {name} is truncated or altered "
                    f"({f.stat().st_size} bytes, expected {rec.get('bytes')})",
                    hint="recompute it with --force", path=str(f),
                )
            if sha256_file(f) != rec.get("sha256"):
                raise CorruptEntryError(
                    f"cache entry {path}: file {name} fails its checksum (altered or corrupted)",
                    hint="recompute it with --force", path=str(f),
                )

    def load_arrays(self, entry: Entry, name: str) -> dict[str, Any]:
        from safetensors.numpy import load_file

        fname = name if name.endswith(".safetensors") else f"{name}.safetensors"
        if fname not in entry.meta.get("files", {}):
            raise CorruptEntryError(f"cache entry {entry.path} has no {fname}",
                                    path=str(entry.path))
        try:
            return load_file(str(entry.path / fname))
        except Exception as e:  # safetensors raises its own error types
            raise CorruptEntryError(
                f"cache entry {entry.path}: {fname} cannot be read ({e})",
                hint="recompute it with --force", path=str(entry.path / fname),
            ) from e

    def load_json(self, entry: Entry, name: str) -> Any:
        fname = name if name.endswith(".json") else f"{name}.json"
        try:
            return json.loads((entry.path / fname).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptEntryError(
                f"cache entry {entry.path}: {fname} cannot be read ({e})",
                hint="recompute it with --force", path=str(entry.path / fname),
            ) from e

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every complete entry (optionally of one kind), sorted by path.

        Directories without a ``meta.json`` are not entries (a crash can leave nothing else
        behind, since entries are renamed into place whole).
        """
        out: list[Entry] = []
        if not self.root.is_dir():
            return out
        kinds = [kind] if kind else [p.name for p in self.root.iterdir()
                                     if p.is_dir() and not p.name.startswith(".")]
        for k in kinds:
            base = self.root / safe_component(k)
            if not base.is_dir():
                continue
            for meta_path in sorted(base.rglob(META)):
                path = meta_path.parent
                try:
                    meta = self.read_meta(path)
                except CorruptEntryError:
                    continue
                out.append(Entry(str(path.relative_to(self.root).as_posix()), path, k, meta))
        return out


def _acquire(fd: int, timeout: float | None, key: Key) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: best effort, no inter-process lock
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if deadline is not None and time.monotonic() > deadline:
            raise StoreError(
                f"cache entry {key} is locked by another gradts process",
                hint="wait for it to finish, or run again later",
            )
        time.sleep(0.1)


def _release(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
