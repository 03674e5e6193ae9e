"""Shared fixtures: every test runs with its own store and config directory (no user state)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("gradts_home")
    cfg = tmp_path_factory.mktemp("gradts_config")
    monkeypatch.setenv("GRADTS_HOME", str(home))
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(cfg))
    for var in list(os.environ):
        if var.startswith("GRADTS_") and var not in ("GRADTS_HOME", "GRADTS_CONFIG_DIR"):
            monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT that knows the demo suite's words (built from a config, saved, loaded
    back by path; one per test module). Modules that need another tiny model define their own."""
    pytest.importorskip("torch")
    from gradts_engine import models
    from gradts_engine.tasks import demo

    return str(models.make_tiny_model(tmp_path_factory.mktemp("tiny"),
                                      words=demo.vocabulary({"train": 40})))


@pytest.fixture
def store_root() -> Path:
    return Path(os.environ["GRADTS_HOME"])


@pytest.fixture
def model_dir(tmp_path: Path) -> str:
    """A model directory for tests whose trainer is faked: only a config.json (the store keys
    need a resolvable model; nothing is loaded from it). CLI tests that build a real tiny model
    define their own ``model_dir``."""
    d = tmp_path / "fake-model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return str(d)
