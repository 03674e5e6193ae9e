"""Shared pieces of the reliability suite (issue 12): a tiny model, small local tasks, the
real CLI in a subprocess, and a checksum of everything in a store.

Everything is offline and seeded. The tasks are CSV files declared in a task TOML (the path a
user's own data takes), so the subprocesses need no test hook to shrink a suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORDS = ["good", "bad", "great", "awful", "fine", "poor", "movie", "film", "phone", "book",
         "the", "a", "is", "was", "not", "very", "plot", "screen", "story", "battery"]
TASKS = ("prim", "auxa", "auxb")
FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "16", "--device", "cpu",
        "--seed", "7"]


def write_tasks(folder: Path, n_train: int = 32, n_dev: int = 16) -> Path:
    """Three binary tasks as CSV files, and the TOML that declares them."""
    rng = random.Random(12)
    folder.mkdir(parents=True, exist_ok=True)
    blocks = []
    for t, name in enumerate(TASKS):
        for split, n in (("train", n_train), ("dev", n_dev)):
            rows = ["text,label"]
            for i in range(n):
                label = (i + t) % 2
                words = [rng.choice(WORDS) for _ in range(5)]
                words.insert(0, "good" if label else "bad")
                rows.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
            (folder / f"{name}-{split}.csv").write_text("\n".join(rows) + "\n")
        blocks.append(f"""[[task]]
name = "{name}"
text = "text"
label = "label"
labels = ["neg", "pos"]
metrics = ["accuracy"]
source = {{ type = "local", files = {{ train = "{name}-train.csv", dev = "{name}-dev.csv" }} }}
""")
    path = folder / "tasks.toml"
    path.write_text("\n".join(blocks))
    return path


def make_model(folder: Path) -> Path:
    from gradts_engine.models import make_tiny_model

    return make_tiny_model(folder, words=WORDS, layers=2, heads=2, hidden=16)


def env(home: Path, cfg: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GRADTS_")}
    e.update(GRADTS_HOME=str(home), GRADTS_CONFIG_DIR=str(cfg), PYTHONPATH=str(REPO),
             OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
             HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             PYTHONHASHSEED="0", COLUMNS="200")
    e.pop("GRADTS_DEBUG", None)
    e.update(extra)
    return e


CLI = [sys.executable, "-m", "gradts_cli.app"]


@dataclass
class Ctx:
    """One isolated world: a store, a config dir, a working dir, the tasks and the model."""

    home: Path
    cfg: Path
    cwd: Path
    tasks: Path
    model: Path

    def env(self, **extra: str) -> dict[str, str]:
        return env(self.home, self.cfg, **extra)

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [*CLI, "--tasks-file", str(self.tasks), *map(str, args)]

    def run(self, *args: str | os.PathLike[str], timeout: float = 300,
            extra_env: dict[str, str] | None = None, stdin: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.cwd, env=self.env(**(extra_env or {})),
                              capture_output=True, text=True, timeout=timeout,
                              input=None if stdin is None else stdin.decode())

    def popen(self, *args: str | os.PathLike[str], extra_env: dict[str, str] | None = None,
              pre: list[str] | None = None) -> subprocess.Popen[str]:
        argv = self.argv(*args) if pre is None else [*pre, *self.argv(*args)[len(CLI):]]
        return subprocess.Popen(argv, cwd=self.cwd, env=self.env(**(extra_env or {})),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def probe_args(ctx: Ctx, *tasks: str) -> list[str]:
    out = ["probe", "--model", str(ctx.model)]
    for t in tasks or TASKS:
        out += ["--task", t]
    return out + FAST


def trial_args(ctx: Ctx) -> list[str]:
    return ["trial", "--model", str(ctx.model), "--primary", "prim", "--candidates",
            "auxa,auxb", *FAST]


def fg_args(ctx: Ctx) -> list[str]:
    return ["fg", "--model", str(ctx.model), "--primary", "prim", "--aux", "auxa,auxb",
            "--keep-fraction", "0.5", *FAST]


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (lock files excluded: they are empty markers)."""
    out = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and ".locks" not in p.parts:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def entry_arrays(root: Path, kind: str) -> dict[str, str]:
    """Digest of every stored array file of ``kind``, keyed by entry path and file name:
    what "bitwise equal results" compares (meta.json holds times, so it is left out)."""
    out = {}
    base = root / kind
    if base.exists():
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.name != "meta.json":
                data = p.read_bytes()
                if p.suffix == ".json":
                    data = json.dumps(_strip_times(json.loads(data)), sort_keys=True).encode()
                out[p.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


# What differs between an interrupted-then-resumed run and an uninterrupted one by design:
# wall times, creation stamps, and which runs this invocation trained or found cached.
VOLATILE = {"seconds", "created", "cached", "selection_cached", "trained", "timings"}


def _strip_times(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items()
                if k not in VOLATILE and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def stripped_json(path: Path) -> object:
    return _strip_times(json.loads(path.read_text()))


def one_line_error(stderr: str) -> str:
    """The error line of a failed command; asserts there is no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "no error message at all"
    return lines[-1]


def world(root: Path, model: Path, tasks: Path, start: Path | None = None) -> Ctx:
    """A fresh store, config dir and working dir under ``root`` (the store copied from
    ``start`` when given)."""
    import shutil

    for sub in ("cfg", "cwd"):
        (root / sub).mkdir(parents=True)
    if start is not None:
        shutil.copytree(start, root / "home")
    else:
        (root / "home").mkdir()
    return Ctx(root / "home", root / "cfg", root / "cwd", tasks, model)


def in_process(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``gradts ARGS`` through the real ``main()`` in this process (fast; no signals)."""
    from gradts_cli.app import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err
