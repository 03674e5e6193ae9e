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


# -- meta.json is as verifiable as the arrays ---------------------------------------------

def _meta(st: Store, key) -> Path:
    return st.path(key) / "meta.json"


def test_edited_meta_fails_its_digest_and_names_the_fix(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m", "t"], {"v": 10})
    _write(st, key)
    meta = json.loads(_meta(st, key).read_text())
    meta["info"]["note"] = "edited"            # still valid JSON, still a plausible entry
    _meta(st, key).write_text(json.dumps(meta))
    with pytest.raises(CorruptEntryError, match="meta.json fails its digest") as ei:
        st.entry(key)
    assert "--force" in ei.value.hint and f"cache rm {key.relpath.as_posix()}" in ei.value.hint
    with pytest.raises(CorruptEntryError, match="digest"):
        st.entries("probe")                     # a reader never skips it silently


@pytest.mark.parametrize("content", ["", "[]", "{}", "null", '{"format": 1}'])
def test_emptied_or_overwritten_meta_is_damage(tmp_path: Path, content: str) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 11})
    _write(st, key)
    _meta(st, key).write_text(content)
    with pytest.raises(CorruptEntryError, match="meta.json"):
        st.entry(key)
    with pytest.raises(CorruptEntryError, match=str(st.path(key))):
        st.entries()


def test_deleted_meta_is_a_damaged_entry_not_a_missing_one(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 12})
    _write(st, key)
    _meta(st, key).unlink()
    assert not st.exists(key)                   # a probe recomputes it (and replaces it)
    with pytest.raises(CorruptEntryError, match="no meta.json"):
        st.entries("probe")
    rep = st.verify_all()
    assert [f.path for f in rep.damaged] == [key.relpath.as_posix()]
    _write(st, key)                             # recomputing repairs it
    assert st.verify_all().clean


def test_file_list_that_drops_an_array_is_damage(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 13})
    _write(st, key)
    meta = json.loads(_meta(st, key).read_text())
    del meta["files"]["task.safetensors"]
    meta.pop("meta_sha256")
    from gradts_engine.store import entry_digest
    meta["meta_sha256"] = entry_digest(meta)    # even with a consistent digest
    _meta(st, key).write_text(json.dumps(meta))
    with pytest.raises(CorruptEntryError, match="task.safetensors is not one of its files"):
        st.entry(key)


def test_entry_written_before_the_digest_is_still_read(tmp_path: Path) -> None:
    """Decision: a format-1 meta.json without ``meta_sha256`` (written before the digest
    existed) is verified by its file list only: checksums, sizes, no unlisted files."""
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 14})
    _write(st, key, 3.0)
    meta = json.loads(_meta(st, key).read_text())
    del meta["meta_sha256"]
    _meta(st, key).write_text(json.dumps(meta, indent=2))
    e = st.entry(key)
    assert st.load_arrays(e, "task")["m"][0, 0] == 3.0
    assert st.verify_all().clean
    (st.path(key) / "task.safetensors").write_bytes(b"x")
    with pytest.raises(CorruptEntryError, match="task.safetensors"):
        st.entry(key)


def test_future_format_is_named_with_upgrade_hint(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 15})
    _write(st, key)
    meta = json.loads(_meta(st, key).read_text())
    meta["format"] = FORMAT_VERSION + 1
    _meta(st, key).write_text(json.dumps(meta))
    with pytest.raises(CorruptEntryError, match="newer gradts") as ei:
        st.entry(key)
    assert "upgrade gradts" in ei.value.hint
    rep = st.verify_all()
    assert [(f.path, f.what) for f in rep.damaged] == [(key.relpath.as_posix(), "future-format")]
    assert [s.state.value for s in st.scan()] == ["future-format"]


# -- scan, verify_all, remove --------------------------------------------------------------

def test_scan_lists_kind_names_settings_size_created_state(tmp_path: Path) -> None:
    st = Store(tmp_path)
    k1 = st.key("probe", ["m", "cola"], {"settings": {"lr": 1e-4}})
    k2 = st.key("trial", ["m", "rte"], {"x": 1})
    _write(st, k1)
    _write(st, k2)
    (st.path(k2) / "task.safetensors").write_bytes(b"short")
    rows = {s.path: s for s in st.scan()}
    a, b = rows[k1.relpath.as_posix()], rows[k2.relpath.as_posix()]
    assert (a.kind, a.names, dict(a.settings), a.state.value) == ("probe", ("m", "cola"),
                                                                  {"lr": 1e-4}, "ok")
    assert a.size == sum(f.stat().st_size for f in st.path(k1).iterdir())
    assert a.created and a.created.startswith("20")
    assert b.state.value == "damaged" and "task.safetensors" in (b.problem or "")


def test_verify_all_names_everything_it_does_not_recognise(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 16})
    _write(st, key)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "junk" / "deep").mkdir(parents=True)
    (tmp_path / "junk" / "deep" / "x.bin").write_bytes(b"1")
    (st.path(key).parent / "stray.txt").write_text("beside an entry")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / ".tmp" / "0123abcd4567-deadbeef").mkdir()   # left by a killed writer
    rep = st.verify_all()
    assert rep.checked == 1 and rep.damaged == ()
    assert sorted((f.path, f.what) for f in rep.unrecognised) == [
        (".hidden", "foreign file"), ("junk", "foreign folder"), ("notes.txt", "foreign file"),
        (f"{key.relpath.parent.as_posix()}/stray.txt", "foreign file")]
    assert [f.path for f in rep.temporaries] == [".tmp/0123abcd4567-deadbeef"]
    assert not rep.clean
    for f in rep.unrecognised:
        assert f"cache rm {f.path}" in f.hint
        st.remove(f.path)
    assert st.verify_all().clean and st.entry(key)


def test_stray_temporaries_are_removed_by_the_next_write_live_ones_kept(tmp_path: Path) -> None:
    st = Store(tmp_path)
    k_live, k_new = st.key("probe", ["m"], {"v": 17}), st.key("probe", ["m"], {"v": 18})
    (tmp_path / ".tmp").mkdir()
    dead = tmp_path / ".tmp" / "aaaaaaaaaaaa-00000000"
    dead.mkdir()
    (dead / "task.safetensors").write_bytes(b"half")
    with st.writer(k_live) as live:
        live.save_json("a", {})
        _write(st, k_new)                       # the next write cleans the dead one only
        assert not dead.exists() and live.tmp.exists()
        assert st.verify_all().temporaries == ()
    assert st.entry(k_live) and st.entry(k_new)
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert not any(p.name.startswith("tmp-") for p in (tmp_path / ".locks").iterdir())


def _hold_key(root: str, spec: dict, ready: mp.Event, release: mp.Event) -> None:  # type: ignore[valid-type]
    st = Store(root)
    with st.lock(st.key("probe", ["m"], spec)):
        ready.set()
        release.wait(20)


def test_remove_waits_for_the_keys_lock(tmp_path: Path) -> None:
    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 19})
    _write(st, key)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_key, args=(str(tmp_path), {"v": 19}, ready, release))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(StoreError, match="locked"):
            st.remove(key, timeout=0.3)
        assert st.entry(key)                    # untouched while a writer holds the key
    finally:
        release.set()
        p.join(20)
    assert st.remove(key) == [key.relpath.as_posix()]
    assert not st.path(key).exists() and not (tmp_path / "probe").exists()  # empty dirs pruned


def test_remove_refuses_anything_outside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    st = Store(root)
    _write(st, st.key("probe", ["m"], {"v": 20}))
    outside = tmp_path / "precious"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    for bad in [str(outside), "../precious", "probe/../../precious", ".", "", ".locks",
                ".tmp", str(root)]:
        with pytest.raises(StoreError):
            st.remove(bad)
    st.remove("link")                           # a symlink in the store is removed, not followed
    assert outside.exists() and not (root / "link").exists()
    assert len(st.entries()) == 1


def test_home_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for root in (f, f / "sub"):
        with pytest.raises(StoreError, match="not a directory"):
            Store(root).verify_all()
        with pytest.raises(StoreError, match="not a directory"):
            Store(root).entries()


def test_written_files_are_not_world_writable(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        st = Store(tmp_path)
        key = st.key("probe", ["m"], {"v": 21})
        _write(st, key)
    finally:
        os.umask(old)
    for p in [st.path(key), *st.path(key).iterdir(), *(tmp_path / ".locks").iterdir()]:
        assert not p.stat().st_mode & 0o002, f"{p} is world-writable"


@pytest.mark.parametrize("message,expected", [
    ("Error while serializing: I/O error: No space left on device (os error 28)",
     "disk is full"),
    ("Error while serializing: I/O error: Read-only file system (os error 30)", "read-only")])
def test_failed_array_write_is_a_one_line_store_error(tmp_path, monkeypatch, message, expected):
    import safetensors.numpy

    st = Store(tmp_path)
    earlier = st.key("probe", ["m"], {"v": 30})
    _write(st, earlier, 4.0)

    def full(*a, **k):
        raise RuntimeError(message)    # what safetensors' Rust writer raises (SafetensorError)

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    key = st.key("probe", ["m"], {"v": 31})
    with pytest.raises(StoreError, match=expected) as ei, st.lock(key), st.writer(key) as w:
        w.save_arrays("task", {"m": np.zeros(3)})
    assert "\n" not in str(ei.value) and ei.value.hint
    assert not st.path(key).exists() and list((tmp_path / ".tmp").iterdir()) == []
    assert st.load_arrays(st.entry(earlier), "task")["m"][0, 0] == 4.0


def test_failed_json_write_and_rename_are_store_errors(tmp_path, monkeypatch) -> None:
    import errno as _errno
    from pathlib import Path as _P

    st = Store(tmp_path)
    key = st.key("probe", ["m"], {"v": 32})
    real = _P.write_text

    def enospc(self, *a, **k):
        if self.name == "extra.json":
            raise OSError(_errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(_P, "write_text", enospc)
    with pytest.raises(StoreError, match="disk is full"), st.writer(key) as w:
        w.save_json("extra", {})
    monkeypatch.setattr(_P, "write_text", real)
    import gradts_engine.store as S

    real_replace = S.os.replace

    def erofs(src, dst):
        raise OSError(_errno.EROFS, "Read-only file system")

    monkeypatch.setattr(S.os, "replace", erofs)
    with pytest.raises(StoreError, match="read-only"), st.writer(key) as w:
        w.save_json("extra", {})
    monkeypatch.setattr(S.os, "replace", real_replace)
    assert not st.path(key).exists() and list((tmp_path / ".tmp").iterdir()) == []


def test_output_file_errors_name_the_option(tmp_path: Path) -> None:
    from gradts_engine.errors import ConfigError
    from gradts_engine.store import atomic_write_text

    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f" / "out.csv", tmp_path):
        with pytest.raises(ConfigError, match="cannot write --csv"):
            atomic_write_text(target, "a,b\n", what="--csv")
    atomic_write_text(tmp_path / "new" / "out.csv", "a\n", what="--csv")
    assert (tmp_path / "new" / "out.csv").read_text() == "a\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]
