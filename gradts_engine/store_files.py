"""File-level primitives of the store (DESIGN.md §4): the root, safe path components,
canonical JSON and SHA-256 for keys and checksums, atomic writes, folder and file modes that are
never group- or world-writable, the one-line error for a failed write (full disk, read-only
store), and the ``flock`` of a lock file. :mod:`gradts_engine.store` builds entries on them and
re-exports the names other modules use.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreError

META_DIGEST = "meta_sha256"
DIR_MODE = 0o755
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


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


def fsync_dir(path: Path) -> None:
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
        fsync_dir(path.parent)
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


def acquire(fd: int, timeout: float | None, key: Any) -> None:
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


def release(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
