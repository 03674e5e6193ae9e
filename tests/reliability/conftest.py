"""Fixtures of the reliability suite: a session-wide tiny model and task files."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Ctx, make_model, write_tasks


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return make_model(tmp_path_factory.mktemp("rel-model"))


@pytest.fixture(scope="session")
def tasks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("rel-tasks"))


@pytest.fixture
def ctx(tmp_path: Path, tiny_model: Path, tasks_file: Path) -> Ctx:
    for sub in ("home", "cfg", "cwd"):
        (tmp_path / sub).mkdir()
    return Ctx(tmp_path / "home", tmp_path / "cfg", tmp_path / "cwd", tasks_file, tiny_model)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tasks_file: Path):
    """One uninterrupted probe -> trial -> fg through the real CLI (subprocesses); a copy of
    the store after each stage, and each stage's wall time: the reference of the suite."""
    import shutil
    import time

    from .helpers import fg_args, probe_args, trial_args, world

    base = tmp_path_factory.mktemp("pipeline")
    c = world(base / "ref", tiny_model, tasks_file)
    snaps: dict[str, Path] = {}
    times: dict[str, float] = {}
    for name, make in (("probe", probe_args), ("trial", trial_args), ("fg", fg_args)):
        t0 = time.monotonic()
        r = c.run(*make(c))
        times[name] = time.monotonic() - t0
        assert r.returncode == 0, r.stderr[-3000:]
        snaps[name] = base / f"after-{name}"
        shutil.copytree(c.home, snaps[name])
    return c, snaps, times
