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
complete entry. ``meta.json`` carries its own digest (``meta_sha256``, the SHA-256 of its
canonical JSON without that field), checked on every read, so an edited, emptied or deleted
``meta.json`` is a :class:`CorruptEntryError` naming the entry and the fix, like a damaged array.
Entries written before the digest existed (same format version, no ``meta_sha256``) stay
readable: they are verified by their file list (checksums, sizes, no unlisted files).
:meth:`Store.verify_path` recomputes the checksums and names the file that does not match.
Cache operations (scan, verify everything, remove under the key's lock) are in
:mod:`gradts_engine.store_ops` and exposed as :meth:`Store.scan`, :meth:`Store.verify_all` and
:meth:`Store.remove`. A write that fails for lack of space or permission (ENOSPC, a read-only
store) is a :class:`StoreError` one-liner; the temporary directory is removed and earlier entries
are untouched. Written files and folders are never group- or world-writable, whatever the umask.
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

from .errors import ConfigError, CorruptEntryError, StoreError

FORMAT_VERSION = 1
META = "meta.json"
META_DIGEST = "meta_sha256"
FILE_MODE = 0o644
DIR_MODE = 0o755
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


def write_failure(e: BaseException, what: str, path: Path) -> StoreError:
    """A one-line :class:`StoreError` for an ``OSError`` (or a safetensors I/O error) met while
    writing ``path``: a full disk, a read-only store, a missing permission."""
    text = str(e)
    code = getattr(e, "errno", None)
    if code == errno.ENOSPC or "No space left" in text:
        why, hint = "the disk is full", "free some space, or pass another --home"
    elif code == errno.EROFS or "Read-only file system" in text:
        why, hint = "the file system is read-only", "pass a writable directory with --home"
    elif code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        why, hint = "permission denied", "pass a writable directory with --home"
    else:
        why = getattr(e, "strerror", None) or (text.splitlines()[0] if text else type(e).__name__)
        hint = "check the store directory, or pass another --home"
    return StoreError(f"cannot {what} {path}: {why}", hint=hint, path=str(path))


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with mode 0755 for every folder created (``Path.mkdir(parents=True)``
    gives the parents the umask's default, world-writable under umask 0)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)


def not_world_writable(path: Path | int) -> None:
    """Take the group and world write bits off a written file (whatever the umask)."""
    mode = os.stat(path).st_mode & 0o7777
    if mode & 0o022:
        if isinstance(path, int):
            os.fchmod(path, mode & ~0o022)
        else:
            os.chmod(path, mode & ~0o022)


def entry_digest(meta: Mapping[str, Any]) -> str:
    """The digest ``meta.json`` carries of itself: SHA-256 of its canonical JSON without it."""
    body = {k: v for k, v in meta.items() if k != META_DIGEST}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes, what: str | None = None) -> None:
    """Write a file so that readers see the old content or the new one, never a part.

    ``what`` names a user's output file (``"--csv"``): a path that cannot be written (under a
    regular file, onto a directory, read-only, full) is then a one-line :class:`ConfigError`
    naming the option, instead of an ``OSError``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        make_dirs(path.parent)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a directory", str(path))
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        not_world_writable(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if what is None:
            raise
        raise ConfigError(f"cannot write {what} {path}: {e.strerror or e}",
                          hint="give a file path in a writable folder") from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str, what: str | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


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
    """Collects an entry's files in a private temporary directory; commit renames it in.

    While it lives, the writer holds an exclusive lock on ``.locks/tmp-<name>.lock``: a
    temporary directory whose lock is free belongs to a dead process (``kill -9``, a power cut)
    and is removed by the next write (:func:`gradts_engine.store_ops.clean_temporaries`).
    """

    def __init__(self, store: Store, key: Key) -> None:
        self.store = store
        self.key = key
        name = f"{key.digest}-{uuid.uuid4().hex[:8]}"
        self.tmp = store.root / ".tmp" / name
        self.files: list[str] = []
        self.started = time.time()
        self.info: dict[str, Any] = {}
        self._lock_path = store.root / ".locks" / f"tmp-{name}.lock"
        try:
            self._lock_fd: int | None = os.open(self._lock_path, os.O_RDWR | os.O_CREAT,
                                                FILE_MODE)
            _acquire(self._lock_fd, 0, key)
            self.tmp.mkdir(mode=DIR_MODE, parents=False, exist_ok=False)
        except OSError as e:
            self._unlock()
            raise write_failure(e, "write to the store at", store.root) from e

    def _unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                self._lock_path.unlink()
            os.close(fd)
            self._lock_fd = None

    def _path(self, name: str) -> Path:
        if "/" in name or "\\" in name or name.startswith(".") or name == META:
            raise StoreError(f"invalid file name '{name}' for a store entry")
        return self.tmp / name

    def _done(self, path: Path) -> None:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        not_world_writable(path)
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
        try:
            save_file(plain, str(path))
            self._done(path)
        except Exception as e:  # safetensors reports I/O errors as its own SafetensorError
            if isinstance(e, OSError) or "I/O error" in str(e) or "os error" in str(e):
                raise write_failure(e, "write", path) from e
            raise

    def save_json(self, name: str, obj: Any) -> None:
        path = self._path(name if name.endswith(".json") else f"{name}.json")
        try:
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str),
                            encoding="utf-8")
            self._done(path)
        except OSError as e:
            raise write_failure(e, "write", path) from e

    def commit(self, info: Mapping[str, Any] | None = None) -> Entry:
        """Write ``meta.json`` (checksums and its own digest) and move the entry into place."""
        try:
            meta = self._meta(info)
            meta_path = self.tmp / META
            meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
            self._done(meta_path)
            _fsync_dir(self.tmp)
            final = self.store.root / self.key.relpath
            make_dirs(final.parent)
            if final.exists():  # replaced under the key's lock (a --force rerun)
                trash = self.store.root / ".tmp" / f"old-{self.key.digest}-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                os.replace(self.tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(self.tmp, final)
            _fsync_dir(final.parent)
        except OSError as e:
            raise write_failure(e, "write the cache entry", self.store.root / self.key.relpath
                                ) from e
        finally:
            self._unlock()
        return Entry(str(self.key), final, self.key.kind, meta)

    def _meta(self, info: Mapping[str, Any] | None) -> dict[str, Any]:
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
        meta = json.loads(json.dumps(meta, default=str))  # exactly what a reader will see
        meta[META_DIGEST] = entry_digest(meta)
        return meta

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._unlock()


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

    def fix_hint(self, path: Path) -> str:
        """How to repair a damaged entry: recompute it, or the exact ``gradts cache rm``."""
        try:
            rel = path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = str(path)
        return (f"recompute it with --force, or remove it: "
                f"gradts --home {self.root.resolve()} cache rm {rel}")

    # -- writing --------------------------------------------------------------------------
    def check_root(self, verb: str = "use") -> None:
        """``--home`` must be a directory (or not exist yet), not a file or a path under one."""
        p = self.root
        while not (p.exists() or p.is_symlink()) and p.parent != p:
            p = p.parent
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            where = "it is a file" if p == self.root else f"it is under the file {p}"
            raise StoreError(f"cannot {verb} the store at {self.root}: {where}, not a directory",
                             hint="pass a directory with --home or GRADTS_HOME")

    def _ensure_root(self) -> None:
        self.check_root("create")
        try:
            for sub in (".tmp", ".locks"):
                make_dirs(self.root / sub)
        except OSError as e:
            raise StoreError(
                f"cannot create the store at {self.root}: {e.strerror}",
                hint="pass a writable directory with --home or GRADTS_HOME",
            ) from e
        from .store_ops import clean_temporaries

        clean_temporaries(self)

    @contextlib.contextmanager
    def lock(self, key: Key, timeout: float | None = None) -> Iterator[None]:
        """An exclusive inter-process lock for one key (``fcntl.flock``; released on exit)."""
        self._ensure_root()
        with self.lock_digest(key.digest, timeout, str(key)):
            yield

    @contextlib.contextmanager
    def lock_digest(self, digest: str, timeout: float | None = None,
                    what: str | None = None) -> Iterator[None]:
        """The lock of the key whose hash is ``digest`` (an entry directory's name)."""
        path = self.root / ".locks" / f"{digest}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise write_failure(e, "lock", path) from e
        try:
            _acquire(fd, timeout, what or digest)
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
        w.info = dict(info or {})
        try:
            yield w
        except BaseException:
            w.abort()
            raise
        try:
            w.commit(w.info)
        except BaseException:
            w.abort()
            raise

    # -- cache operations (gradts cache) --------------------------------------------------
    def scan(self) -> list[Any]:
        """Every entry with its kind, key summary, settings, size, creation time and state."""
        from .store_ops import scan

        return scan(self)

    def verify_all(self) -> Any:
        """Recompute every checksum; name damaged entries and everything not recognised."""
        from .store_ops import verify_all

        return verify_all(self)

    def remove(self, target: Key | Entry | str | os.PathLike[str],
               timeout: float | None = 30.0) -> list[str]:
        """Remove an entry (or every entry under a folder, or a foreign file) under the key's
        lock; returns the removed paths relative to the root. Paths outside the store are a
        :class:`StoreError`."""
        from .store_ops import remove

        if isinstance(target, Key):
            target = self.path(target)
        elif isinstance(target, Entry):
            target = target.path
        return remove(self, Path(target), timeout)

    # -- reading --------------------------------------------------------------------------
    def read_meta(self, key_or_path: Key | Path) -> dict[str, Any]:
        """``meta.json`` of an entry, checked against its own digest (module docstring)."""
        path = self.path(key_or_path) if isinstance(key_or_path, Key) else key_or_path
        meta_path = path / META
        fix = self.fix_hint(path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise CorruptEntryError(f"cache entry {path} has no meta.json (damaged)",
                                    hint=fix, path=str(path)) from e
        except (OSError, ValueError) as e:
            raise CorruptEntryError(f"cache entry {path}: meta.json is unreadable "
                                    f"({str(e).splitlines()[0] if str(e) else 'empty'})",
                                    hint=fix, path=str(path)) from e
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise CorruptEntryError(f"cache entry {path}: meta.json is not an entry's metadata"
                                    " (emptied or overwritten)", hint=fix, path=str(path))
        fmt = meta.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION:
            raise CorruptEntryError(
                f"cache entry {path} has format {fmt}, written by a newer gradts "
                f"({meta.get('versions', {}).get('gradts', '?')}); this gradts reads format "
                f"{FORMAT_VERSION}", hint="upgrade gradts, or " + fix, path=str(path),
                state="future-format")
        if fmt != FORMAT_VERSION:
            raise CorruptEntryError(f"cache entry {path} has format {fmt!r}, this gradts reads "
                                    f"format {FORMAT_VERSION}", hint=fix, path=str(path))
        if META_DIGEST in meta and meta[META_DIGEST] != entry_digest(meta):
            raise CorruptEntryError(f"cache entry {path}: meta.json fails its digest (edited "
                                    "or corrupted)", hint=fix, path=str(path))
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
        """Recompute every file's checksum and check that no file was added or dropped;
        raise :class:`CorruptEntryError` naming the file."""
        meta = meta if meta is not None else self.read_meta(path)
        files = meta.get("files", {})
        fix = self.fix_hint(path)
        for name, rec in files.items():
            f = path / name
            rec = rec if isinstance(rec, dict) else {}
            if not f.is_file():
                raise CorruptEntryError(f"cache entry {path}: file {name} is missing",
                                        hint=fix, path=str(f))
            if f.stat().st_size != rec.get("bytes"):
                raise CorruptEntryError(
                    f"cache entry {path}: file {name} is truncated or altered "
                    f"({f.stat().st_size} bytes, expected {rec.get('bytes')})",
                    hint=fix, path=str(f))
            if sha256_file(f) != rec.get("sha256"):
                raise CorruptEntryError(
                    f"cache entry {path}: file {name} fails its checksum (altered or corrupted)",
                    hint=fix, path=str(f))
        extra = sorted(p.name for p in path.iterdir() if p.name != META and p.name not in files)
        if extra:
            raise CorruptEntryError(
                f"cache entry {path}: {extra[0]} is not one of its files (added, or dropped "
                "from meta.json's file list)", hint=fix, path=str(path / extra[0]))

    def load_arrays(self, entry: Entry, name: str) -> dict[str, Any]:
        from safetensors.numpy import load_file

        fname = name if name.endswith(".safetensors") else f"{name}.safetensors"
        if fname not in entry.meta.get("files", {}):
            raise CorruptEntryError(f"cache entry {entry.path} has no {fname}",
                                    hint=self.fix_hint(entry.path), path=str(entry.path))
        try:
            return load_file(str(entry.path / fname))
        except Exception as e:  # safetensors raises its own error types
            raise CorruptEntryError(
                f"cache entry {entry.path}: {fname} cannot be read ({e})",
                hint=self.fix_hint(entry.path), path=str(entry.path / fname),
            ) from e

    def load_json(self, entry: Entry, name: str) -> Any:
        fname = name if name.endswith(".json") else f"{name}.json"
        try:
            return json.loads((entry.path / fname).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptEntryError(
                f"cache entry {entry.path}: {fname} cannot be read ({e})",
                hint=self.fix_hint(entry.path), path=str(entry.path / fname),
            ) from e

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry (optionally of one kind), sorted by path.

        A damaged entry (no ``meta.json``, a ``meta.json`` that fails its digest, a future
        format) is a :class:`CorruptEntryError` naming it and the fix: a reader never takes
        a damaged entry for a missing one. Arrays are checked when they are read.
        """
        from .store_ops import entry_dirs

        out: list[Entry] = []
        for path, k in entry_dirs(self, kind):
            meta = self.read_meta(path)
            out.append(Entry(path.relative_to(self.root).as_posix(), path, k, meta))
        return out


def _acquire(fd: int, timeout: float | None, key: Any) -> None:
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
        if deadline is not None and time.monotonic() >= deadline:
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
