"""Corruption (issue 12): damaged entries are named by ``cache verify`` and refused, with the
fix, by every command that reads the store; never used silently, never a traceback.

The store is a copy of the reference pipeline's (probe -> trial -> fg of the tiny model); each
case damages one thing, then runs verify, corr, trial, fg and report through ``main()``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradts_engine.store import FORMAT_VERSION, entry_digest

from .helpers import FAST, in_process, world

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.slow


def _probe_entry(home: Path, task: str) -> Path:
    [meta] = list((home / "probe").glob(f"*/{task}/gate/*/meta.json"))
    return meta.parent


def _meta_edit(entry: Path, fn, redigest: bool = False) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    fn(meta)
    if redigest:
        meta["meta_sha256"] = entry_digest(meta)
    (entry / "meta.json").write_text(json.dumps(meta))


def _flip(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:-7])


DAMAGE = {
    "array-truncated": lambda e: _truncate(e / "task.safetensors"),
    "array-bitflip": lambda e: _flip(e / "task.safetensors"),
    "instances-truncated": lambda e: _truncate(e / "instances-00000.safetensors"),
    "meta-deleted": lambda e: (e / "meta.json").unlink(),
    "meta-emptied": lambda e: (e / "meta.json").write_text(""),
    "meta-list": lambda e: (e / "meta.json").write_text("[]"),
    "meta-edited": lambda e: _meta_edit(e, lambda m: m["info"].update(num_instances=3)),
    "meta-bitflip": lambda e: _flip(e / "meta.json"),
    "meta-drops-array": lambda e: _meta_edit(
        e, lambda m: m["files"].pop("instances-00000.safetensors"), redigest=True),
    "future-format": lambda e: _meta_edit(e, lambda m: m.update(format=FORMAT_VERSION + 1),
                                          redigest=True),
    "foreign-file-in-entry": lambda e: (e / "notes.txt").write_text("mine"),
}


def _commands(c) -> dict[str, list[str]]:
    m = str(c.model)
    return {
        "corr": ["corr", "--model", m, "--tasks", "prim,auxa,auxb"],
        "trial": ["trial", "--model", m, "--primary", "prim", "--candidates", "auxa,auxb",
                  *FAST],
        "fg": ["fg", "--model", m, "--primary", "prim", "--aux", "auxa,auxb",
               "--keep-fraction", "0.5", *FAST],
        "report": ["report", "--model", m, "--primary", "prim"],
    }


@pytest.fixture
def damaged_world(pipeline, tmp_path, monkeypatch):
    ref, snaps, _ = pipeline
    c = world(tmp_path / "w", ref.model, ref.tasks, start=snaps["fg"])
    monkeypatch.chdir(c.cwd)
    return c


def _run(capsys, c, *args: str) -> tuple[int, str]:
    code, _out, err = in_process(capsys, ["--home", str(c.home), "--tasks-file", str(c.tasks),
                                          *args])
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return code, lines[-1] if lines else ""


@pytest.mark.parametrize("case", list(DAMAGE))
@pytest.mark.parametrize("task", ["prim", "auxa"])
def test_damaged_probe_entry_is_named_and_refused(case, task, damaged_world, capsys):
    c = damaged_world
    entry = _probe_entry(c.home, task)
    rel = entry.relative_to(c.home).as_posix()
    DAMAGE[case](entry)
    code, line = _run(capsys, c, "cache", "verify")
    assert code == 10 and rel in line, line
    for name, argv in _commands(c).items():
        code, line = _run(capsys, c, *argv)
        assert code == 10, f"{name} after {case}: exit {code}: {line}"
        assert rel in line or str(entry) in line, f"{name} does not name the entry: {line}"
        assert "--force" in line or f"cache rm {rel}" in line, f"{name} gives no fix: {line}"


@pytest.mark.parametrize("what", ["file", "folder", "hidden"])
def test_foreign_things_in_the_store_are_named_but_harmless(what, damaged_world, capsys):
    c = damaged_world
    name = {"file": "notes.txt", "folder": "mine", "hidden": ".stuff"}[what]
    if what == "folder":
        (c.home / name).mkdir()
        (c.home / name / "x.bin").write_bytes(b"\0" * 10)
    else:
        (c.home / name).write_text("not an entry")
    code, line = _run(capsys, c, "cache", "verify")
    assert code == 10 and name in line and "cache rm" in line, line
    code, _ = _run(capsys, c, *_commands(c)["corr"])
    assert code == 0                       # a foreign file does not stop readers
    code, _ = _run(capsys, c, "cache", "rm", name)
    assert code == 0
    code, line = _run(capsys, c, "cache", "verify")
    assert code == 0, line


@pytest.mark.parametrize("kind,command", [("trial-run", "trial"), ("trial", "report"),
                                          ("fg-selection", "fg"), ("fg", "report")])
def test_damaged_selection_entries_are_refused(kind, command, damaged_world, capsys):
    c = damaged_world
    metas = sorted((c.home / kind).rglob("meta.json"))
    assert metas, f"no {kind} entry in the reference store"
    entry = metas[0].parent
    data_files = [f for f in entry.iterdir() if f.name != "meta.json"]
    _flip(data_files[0] if data_files else entry / "meta.json")
    code, line = _run(capsys, c, *_commands(c)[command])
    assert code == 10, f"{command} used a damaged {kind} entry: exit {code}: {line}"
    assert "--force" in line or "cache rm" in line, line


def test_force_recomputes_a_damaged_entry(damaged_world, capsys):
    c = damaged_world
    entry = _probe_entry(c.home, "prim")
    _flip(entry / "task.safetensors")
    toks = sorted((c.home / "tokens" / "prim").rglob("*.safetensors"))
    assert toks
    _flip(toks[0])                         # its tokens-cache entry too
    code, line = _run(capsys, c, "probe", "--model", str(c.model), "--task", "prim", *FAST,
                      "--force")
    assert code == 0, line
    code, line = _run(capsys, c, "cache", "verify")
    assert code == 0, line                 # both entries were recomputed
    code, line = _run(capsys, c, *_commands(c)["corr"])
    assert code == 0, line
