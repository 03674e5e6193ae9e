"""The store's promises (DESIGN.md §4): keys, atomic entries, locks, checksums, no pickle."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradts_engine.errors import CorruptEntryError, StoreError
from gradts_engine.store import FORMAT_VERSION, Store, resolve_root, safe_component


def _write(store: Store, key, value: float = 1.0) -> None:
    with store.lock(key), store.writer(key, {"note": "x"}) as w:
        w.save_arrays("task", {"m": np.full((2, 3), value, dtype=np.float32)})
        w.save_json("extra", {"a": 1})


def test_key_changes_with_every_part_of_the_spec(tmp_path: Path) -> None:
    st = Store(tmp_path)
    base = {"model": "m@1", "settings": {"lr": 1e-4, "epochs": 1}}
    k = st.key("probe", ["m", "cola"], base)
    assert k.digest == st.key("probe", ["m", "cola"], json.loads(json.dumps(base))).digest
    assert k.digest != st.key("probe", ["m", "cola"], {**base, "model": "m@2"}).digest
    assert k.digest != st.key("probe", ["m", "cola"],
                              {**base, "settings": {"lr": 2e-4, "epochs": 1}}).digest
    assert k.digest != st.key("trial", ["m", "cola"], base).digest
    assert str(k.relpath).startswith("probe/m/cola/")


def test_entry_roundtrip_meta_and_checksums(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m", "t"], {"x": 1})
    assert not st.exists(key)
    _write(st, key, 2.0)
    assert st.exists(key)
    e = st.entry(key)
    assert e.meta["format"] == FORMAT_VERSION
    assert e.meta["info"] == {"note": "x"}
    assert set(e.meta["files"]) == {"task.safetensors", "extra.json"}
    assert "gradts" in e.meta["versions"]
    np.testing.assert_array_equal(st.load_arrays(e, "task")["m"], np.full((2, 3), 2.0))
    assert st.load_json(e, "extra") == {"a": 1}
    assert [x.key_path for x in st.entries("probe")] == [str(key)]


def test_arrays_are_safetensors_never_pickle(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {})
    _write(st, key)
    for f in st.path(key).iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head[:1] != b"\x80", f"{f.name} looks like a pickle"


def test_truncated_or_altered_file_is_detected_and_named(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 1})
    _write(st, key)
    f = st.path(key) / "task.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-4])
    with pytest.raises(CorruptEntryError, match="task.safetensors.*truncated"):
        st.entry(key)
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(CorruptEntryError, match="task.safetensors.*checksum"):
        st.entry(key)
    (st.path(key) / "meta.json").write_text("{not json")
    with pytest.raises(CorruptEntryError, match="meta.json"):
        st.entry(key)


def test_failed_write_leaves_nothing_visible(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 2})
    with pytest.raises(RuntimeError), st.writer(key) as w:
        w.save_arrays("task", {"m": np.zeros(3)})
        raise RuntimeError("boom")
    assert not st.exists(key)
    assert not st.path(key).exists()
    assert list((tmp_path / ".tmp").iterdir()) == []


_KILLED_WRITER = r"""
import os, signal, sys, numpy as np
from gradts_engine.store import Store
st = Store(sys.argv[1])
key = st.key("probe", ["m"], {"v": 3})
with st.writer(key) as w:
    w.save_arrays("part1", {"m": np.zeros((1000, 100))})
    os.kill(os.getpid(), signal.SIGKILL)   # killed half-way through the entry
"""


def test_writer_killed_half_way_leaves_no_entry(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)])
    assert proc.returncode == -signal.SIGKILL
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 3})
    assert not st.exists(key)
    assert st.entries() == []
    _write(st, key)  # the same key can be written afterwards
    assert st.entry(key)


def _hold_lock(root: str, ready: mp.Event, release: mp.Event) -> None:  # type: ignore[valid-type]
    st = Store(root)
    with st.lock(st.key("probe", ["m"], {"v": 4})):
        ready.set()
        release.wait(10)


def test_lock_excludes_a_second_process(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    p.start()
    try:
        assert ready.wait(30)
        st = Store(tmp_path)
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="locked"), st.lock(st.key("probe", ["m"], {"v": 4}),
                                                                timeout=0.3):
            pass
        assert time.monotonic() - t0 < 5
        with st.lock(st.key("probe", ["m"], {"v": 5}), timeout=0.3):  # other keys are free
            pass
    finally:
        release.set()
        p.join(10)
    with st.lock(st.key("probe", ["m"], {"v": 4}), timeout=5):
        pass


def test_force_rewrite_replaces_entry_atomically(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 6})
    _write(st, key, 1.0)
    _write(st, key, 5.0)
    e = st.entry(key)
    assert st.load_arrays(e, "task")["m"][0, 0] == 5.0
    assert len(st.entries("probe")) == 1


def test_root_resolution_flag_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADTS_HOME", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("GRADTS_HOME")
    assert "gradts" in str(resolve_root(None))


def test_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    st = Store(blocker / "sub")
    with pytest.raises(StoreError, match="cannot create the store"), st.writer(
            st.key("probe", ["m"], {})):
        pass


@pytest.mark.parametrize("name,expected", [("bert-base-cased", "bert-base-cased"),
                                           ("org/model", "org--model"),
                                           ("../../etc", "etc"), ("a b", "a_b")])
def test_safe_component_never_escapes(name: str, expected: str) -> None:
    out = safe_component(name)
    assert out == expected
    assert "/" not in out and not out.startswith(".")


def test_invalid_file_names_rejected(tmp_path: Path) -> None:
    st = Store(tmp_path)
    with pytest.raises(StoreError), st.writer(st.key("k", ["a"], {})) as w:
        w.save_json("../escape", {})
    assert os.listdir(tmp_path / ".tmp") == []
