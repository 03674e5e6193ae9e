"""Security (issue 12): no code runs on load, names never leave the store.

A scan of the package source (AST, not grep: comments and strings do not count) for pickle,
``torch.load`` without ``weights_only=True``, ``eval``/``exec``, ``yaml.load``, ``shell=True``,
``os.system``, and ``trust_remote_code`` set by anything but the user's setting; then the
behaviours: a project file cannot switch on remote code, task and model names never produce a
path outside the store, ``cache rm`` refuses anything outside it, written files are not
world-writable.
"""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradts_engine.store import Store, safe_component

from .helpers import REPO, in_process

PACKAGES = ("gradts_engine", "gradts_cli")


def _package_files() -> list[Path]:
    return [f for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py"))]


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return "?"


def _findings(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        where = f.name
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                for m in mods:
                    if m.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve",
                                           "joblib", "yaml"):
                        bad.append(f"{where}:{node.lineno}: imports {m}")
            if not isinstance(node, ast.Call):
                continue
            fn = _name(node.func)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if fn in ("eval", "exec", "compile", "os.system", "os.popen", "__import__"):
                bad.append(f"{where}:{node.lineno}: calls {fn}")
            if fn.endswith("torch.load") or fn == "load" and "weights_only" in kw:
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    bad.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            if "shell" in kw and not (isinstance(kw["shell"], ast.Constant)
                                      and kw["shell"].value is False):
                bad.append(f"{where}:{node.lineno}: shell=...")
            if "trust_remote_code" in kw:
                v = kw["trust_remote_code"]
                if not (isinstance(v, ast.Attribute) and v.attr == "trust_remote_code"
                        or isinstance(v, ast.Name) and v.id == "trust_remote_code"
                        or isinstance(v, ast.Constant) and v.value is False):
                    bad.append(f"{where}:{node.lineno}: trust_remote_code={ast.unparse(v)}")
    return bad


def test_source_scan_finds_no_unsafe_call() -> None:
    files = _package_files()
    assert len(files) > 20
    assert _findings(files) == []


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    """The scanner itself, on a planted file (a scan that cannot fail proves nothing)."""
    planted = tmp_path / "planted.py"
    planted.write_text("import pickle\nimport torch\nimport subprocess\n"
                       "torch.load('x')\neval('1')\nsubprocess.run('ls', shell=True)\n"
                       "f(trust_remote_code=True)\n")
    found = "\n".join(_findings([planted]))
    for what in ("imports pickle", "torch.load without", "calls eval", "shell=",
                 "trust_remote_code=True"):
        assert what in found, what


def test_a_project_file_cannot_switch_on_remote_code(tmp_path: Path, monkeypatch, capsys):
    """Running gradts in a cloned folder must not run that folder's model code."""
    (tmp_path / "gradts.toml").write_text("[run]\ntrust_remote_code = true\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(capsys, ["config", "--json"])
    if code == 0:
        rows = {r["key"]: r for r in json.loads(out)["settings"]}
        assert rows.get("run.trust_remote_code", {}).get("value") in (False, None), rows
    else:
        assert code == 2 and "trust_remote_code" in err and "Traceback" not in err
    monkeypatch.setenv("GRADTS_RUN_TRUST_REMOTE_CODE", "1")
    code, out, err = in_process(capsys, ["config", "--json"])
    if code == 0:
        rows = {r["key"]: r for r in json.loads(out)["settings"]}
        assert rows.get("run.trust_remote_code", {}).get("value") in (False, None), rows
    else:
        assert code == 2 and "Traceback" not in err


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_safe_component_never_escapes(name: str) -> None:
    out = safe_component(name)
    assert out and "/" not in out and "\\" not in out and "\0" not in out
    assert out not in (".", "..") and not out.startswith(".") and len(out) <= 80


@settings(max_examples=150, deadline=None)
@given(kind=st.text(max_size=30), names=st.lists(st.text(max_size=40), max_size=4))
def test_keys_never_leave_the_store(tmp_path_factory, kind: str, names: list[str]) -> None:
    root = tmp_path_factory.getbasetemp() / "keys-store"
    s = Store(root)
    p = s.path(s.key(kind or "k", names, {"n": names})).resolve()
    assert root.resolve() in p.parents
    assert p.relative_to(root.resolve()).parts[0] not in (".tmp", ".locks", ".datasets")


def test_cache_rm_refuses_paths_outside(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    s = Store(home)
    key = s.key("probe", ["m"], {"a": 1})
    with s.writer(key) as w:
        w.save_json("x", {})
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (home / "escape").symlink_to(victim)
    for target in (str(victim), "../victim", "escape/keep.txt", "probe/../../victim", "/",
                   str(home), ".locks"):
        code, _, err = in_process(capsys, ["--home", str(home), "cache", "rm", target])
        assert code == 10, (target, err)
        assert "Traceback" not in err
    assert (victim / "keep.txt").read_text() == "precious" and s.entry(key)


@pytest.mark.slow
def test_written_files_are_not_world_writable(pipeline) -> None:
    _, snaps, _ = pipeline
    home = snaps["fg"]
    loose = [p for p in home.rglob("*") if ".datasets" not in p.parts
             and not p.is_symlink() and p.stat().st_mode & stat.S_IWOTH]
    assert loose == []


def test_store_files_are_not_world_writable_even_with_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        s = Store(tmp_path)
        key = s.key("probe", ["m"], {"u": 0})
        with s.lock(key), s.writer(key) as w:
            w.save_arrays("a", {"x": __import__("numpy").zeros(2)})
            w.save_json("b", {})
    finally:
        os.umask(old)
    for p in tmp_path.rglob("*"):
        assert not p.stat().st_mode & stat.S_IWOTH, p


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", "CON", "x" * 300, "a\0b"])
def test_path_like_task_names_are_refused_by_the_registry(name: str) -> None:
    from gradts_engine.errors import GradtsError
    from gradts_engine.tasks.spec import check_name

    with pytest.raises(GradtsError):
        check_name(name)
