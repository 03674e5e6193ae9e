"""`gradts cache list / verify / rm` and `gradts config` through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gradts_cli.app import main
from gradts_engine.store import Store


def _entry(root: Path) -> Path:
    st = Store(root)
    key = st.key("probe", ["m", "t"], {"x": 1})
    with st.writer(key) as w:
        w.save_arrays("task", {"m": np.ones((2, 2), np.float32)})
    return st.path(key)


def test_list_verify_rm(capsys) -> None:
    root = Path(os.environ["GRADTS_HOME"])
    path = _entry(root)
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in listed["entries"]] == [path.relative_to(root).as_posix()]
    assert main(["cache", "list"]) == 0  # the table view, not only --json
    assert "1 entry" in capsys.readouterr().out
    assert main(["cache", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"checked": 1, "damaged": [],
                                                   "unrecognised": [], "stray_temporaries": []}
    (path / "task.safetensors").write_bytes(b"garbage")
    assert main(["cache", "verify"]) == 10
    err = capsys.readouterr().err
    assert "task.safetensors" in err and "1 damaged" in err
    assert main(["cache", "rm", str(path.relative_to(root))]) == 0
    assert not path.exists()


def test_rm_refuses_paths_outside_the_store(tmp_path: Path, capsys) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    assert main(["cache", "rm", str(outside)]) == 10
    assert outside.exists()
    assert "not inside the store" in capsys.readouterr().err


def test_config_shows_sources(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text("[probe]\nepochs = 2\n")
    monkeypatch.setenv("GRADTS_TRIAL_PATIENCE", "3")
    assert main(["--config", str(cfg), "config", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["probe.epochs"] == {"key": "probe.epochs", "value": 2, "source": str(cfg)}
    assert rows["trial.patience"]["source"] == "env GRADTS_TRIAL_PATIENCE"
    assert rows["corr.method"]["source"] == "default"


def test_rm_completes_entry_paths(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "store"
    path = _entry(root)
    rel = path.relative_to(root).as_posix()
    env = {**os.environ, "_GRADTS_COMPLETE": "complete_bash",
           "COMP_WORDS": f"gradts --home {root} cache rm pro", "COMP_CWORD": "5"}
    exe = os.path.join(os.path.dirname(sys.executable), "gradts")
    out = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [rel]
    env.update(COMP_WORDS=f"gradts --home {root} cache rm zzz")
    out = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == []


def test_list_table_shows_each_entry_with_its_state(capsys) -> None:
    root = Path(os.environ["GRADTS_HOME"])
    path = _entry(root)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "probe/m/t/" in out and "ok" in out and "1 entry" in out
    (path / "meta.json").write_text("{}")
    assert main(["cache", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["entries"]
    assert row["state"] == "damaged" and "meta.json" in row["problem"]
    assert main(["cache", "list"]) == 0
    assert "damaged" in capsys.readouterr().out


def test_verify_names_foreign_files_and_rm_removes_them(capsys) -> None:
    root = Path(os.environ["GRADTS_HOME"])
    _entry(root)
    (root / "stray.bin").write_bytes(b"x")
    assert main(["cache", "verify", "--json"]) == 10
    doc = json.loads(capsys.readouterr().out)
    assert doc["unrecognised"][0]["path"] == "stray.bin"
    assert main(["cache", "rm", "stray.bin"]) == 0
    assert main(["cache", "verify"]) == 0
