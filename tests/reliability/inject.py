"""Run the gradts CLI with a fault injected at one store moment (tests only, never imported
by the package): ``python inject.py MODE N gradts-args...`` kills the process with SIGKILL at
the N-th occurrence of MODE:

- ``commit``: an entry's files and meta.json are written, the rename into place is next;
- ``arrays``: an array file is half written;
- ``meta``: meta.json is half written;
- ``remove``: ``cache rm`` renamed the entry away, the delete is next.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    mode, n = sys.argv[1], int(sys.argv[2])
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == n

    from gradts_engine import store as S

    if mode in ("commit", "remove"):
        real_replace = os.replace

        def replace(src, dst, *a, **k):  # type: ignore[no-untyped-def]
            s, d = str(src), str(dst)
            if mode == "commit" and "/.tmp/" in s and "/.tmp/" not in d and hit():
                _die()
            real_replace(src, dst, *a, **k)
            if mode == "remove" and "/.tmp/rm-" in d and hit():
                _die()

        os.replace = replace  # type: ignore[assignment]
    else:
        real_done = S.EntryWriter._done

        def done(self, path: Path) -> None:  # type: ignore[no-untyped-def]
            is_meta = path.name == S.META
            if (mode == "meta") == is_meta and hit():
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 2])
                _die()
            real_done(self, path)

        S.EntryWriter._done = done  # type: ignore[method-assign]
    from gradts_cli.app import main as cli

    return cli(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
