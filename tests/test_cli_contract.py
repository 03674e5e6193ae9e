"""The CLI's contract, kept by every command (issue 11): closed-set options validated at parse
time and completed, global options accepted after the command, one-line errors with the right
fix, clean --help, a closed stdout is not an error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gradts_cli import app as app_mod
from gradts_cli.app import hoist_globals, main

ROOT = Path(__file__).resolve().parents[1]
EXE = os.path.join(os.path.dirname(sys.executable), "gradts")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _complete(words: str) -> list[str]:
    env = {**os.environ, "_GRADTS_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    return subprocess.run([EXE], env=env, capture_output=True, text=True,
                          timeout=60).stdout.split()


def _all_commands() -> list[tuple[list[str], object]]:
    root = get_command(app_mod.app)
    out: list[tuple[list[str], object]] = [([], root)]
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [([name, s], sub) for s, sub in subs.items()] if subs else [([name], cmd)]
    return out


# -- closed sets ------------------------------------------------------------------------------
CLOSED = {  # command, flag -> its values
    ("probe", "--measure"): ["gate", "qkv", "legacy"],
    ("probe", "--precision"): ["auto", "fp32", "bf16", "fp16"],
    ("probe", "--estimator"): ["during", "after"],
    ("corr", "--method"): ["kendall", "spearman", "pearson"],
    ("corr", "--estimator"): ["during", "after"],
    ("corr", "--measure"): ["gate", "qkv", "legacy"],
    ("trial", "--precision"): ["auto", "fp32", "bf16", "fp16"],
    ("fg", "--method"): ["kendall", "spearman", "pearson"],
    ("report", "--estimator"): ["during", "after"],
    ("demo", "--precision"): ["auto", "fp32", "bf16", "fp16"],
    ("data add", "--kind"): ["classification", "regression"],
    ("data add", "--format"): ["csv", "tsv", "jsonl"],
}


@pytest.mark.parametrize(("where", "values"), list(CLOSED.items()), ids=" ".join)
def test_closed_set_values_complete(where: tuple[str, str], values: list[str]) -> None:
    command, flag = where
    assert _complete(f"gradts {command} {flag} ") == values


def test_device_completes_and_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert _complete("gradts probe --device c") == ["cpu", "cuda", "cuda:0", "cuda:1"]
    code, _, err = _run(capsys, "probe", "--device", "gpu0", "--task", "neg_movie")
    assert code == 2 and "unknown device 'gpu0'" in _one_error_line(err)


@pytest.mark.parametrize(("args", "expect"), [
    (["probe", "--precision", "banana", "--task", "neg_movie"],
     "unknown precision 'banana'"),
    (["trial", "--precision", "fp8", "--primary", "neg_movie"], "unknown precision 'fp8'"),
    (["corr", "--method", "kendal"], "unknown correlation method 'kendal' — did you mean "
                                     "'kendall'?"),
    (["report", "--estimator", "afer"], "unknown estimator 'afer' — did you mean 'after'?"),
    (["probe", "--measure", "gates", "--task", "neg_movie"],
     "unknown importance measure 'gates' — did you mean 'gate'?"),
    (["data", "add", "x", "--train", "t.csv", "--text", "a", "--label", "b", "--kind", "reg"],
     "unknown kind 'reg'"),
])
def test_closed_set_typos_fail_at_parse_time(capsys: pytest.CaptureFixture[str],
                                             args: list[str], expect: str) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert expect in _one_error_line(err)


def test_help_lists_closed_sets_and_no_python_types() -> None:
    runner = CliRunner()
    for path, _cmd in _all_commands():
        text = runner.invoke(app_mod.app, [*path, "--help"], env={"COLUMNS": "200"}).output
        for bad in ("<bool>", "<str>", "<int>", "<list[", "range>", "[x>="):
            assert bad not in text, f"gradts {' '.join(path)} --help shows {bad}"
    probe = runner.invoke(app_mod.app, ["probe", "--help"], env={"COLUMNS": "200"}).output
    assert "gate|qkv|legacy" in probe and "auto|fp32|bf16|fp16" in probe
    assert "auto|cpu|cuda|cuda:N" in probe and "during|after" in probe
    flat = " ".join(probe.split())
    assert "(default: 3; [probe] epochs)" in flat and "(default: 32; [probe] batch_size)" in flat
    assert "(default: 5e-05; [probe] lr)" in flat
    trial = " ".join(runner.invoke(app_mod.app, ["trial", "--help"],
                                   env={"COLUMNS": "200"}).output.split())
    assert "(default: 7; [trial] epochs)" in trial


def test_top_level_help_is_short_one_line_per_command() -> None:
    text = CliRunner().invoke(app_mod.app, ["--help"], env={"COLUMNS": "100"}).output
    assert len(text.strip().splitlines()) <= 40
    commands = text[text.index("Commands"):]
    for name in app_mod.COMMANDS:
        (line,) = [ln for ln in commands.splitlines() if re.match(rf"│ {name}\s", ln)]
        assert line.rstrip(" │").endswith(".")  # one sentence, on one line


def test_examples_in_help_are_whole_commands() -> None:
    """Each example is one line that starts with ``gradts`` (copy and paste works)."""
    for path, cmd in _all_commands():
        help_text = getattr(cmd, "help", "") or ""
        if "Example" not in help_text:
            continue
        tail = help_text[help_text.index("Example"):].splitlines()[1:]
        for line in (ln.strip() for ln in tail if ln.strip()):
            assert line.startswith(("gradts ", "GRADTS_", "torchrun ", "accelerate launch ")), \
                f"gradts {' '.join(path)}: {line!r}"


def test_environment_typos_and_bad_values_are_errors(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRADTS_RUN_PRECISION", "banana")
    code, _, err = _run(capsys, "config")
    assert code == 2 and "GRADTS_RUN_PRECISION" in err and "unknown precision 'banana'" in err
    monkeypatch.delenv("GRADTS_RUN_PRECISION")
    monkeypatch.setenv("GRADTS_PROBE_EPOCH", "1")
    code, _, err = _run(capsys, "config")
    line = _one_error_line(err)
    assert code == 2 and "GRADTS_PROBE_EPOCH" in line and "GRADTS_PROBE_EPOCHS" in line


def test_config_file_with_an_unknown_value_is_an_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[corr]\nmethod = "kendal"\n')
    code, _, err = _run(capsys, "--config", cfg, "config")
    assert code == 2 and "did you mean 'kendall'?" in _one_error_line(err)


# -- names ------------------------------------------------------------------------------------
def test_task_with_a_comma_says_to_repeat_or_use_tasks(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    code, _, err = _run(capsys, "probe", "--task", "neg_movie,neg_product")
    line = _one_error_line(err)
    assert code == 2 and "--task a --task b" in line and "--tasks a,b" in line
    code, _, err = _run(capsys, "corr", "--model", "m", "--task", "a,b")
    assert code == 2 and "--tasks a,b" in _one_error_line(err)


# -- global options ---------------------------------------------------------------------------
def test_hoist_globals() -> None:
    assert hoist_globals(["report", "--home", "D", "-p", "x"]) == ["--home", "D", "report",
                                                                   "-p", "x"]
    assert hoist_globals(["-q", "probe", "--task", "t", "-q"]) == ["-q", "-q", "probe",
                                                                   "--task", "t"]
    assert hoist_globals(["cache", "list", "--home=D"]) == ["--home=D", "cache", "list"]
    assert hoist_globals(["--home", "D", "data", "list"]) == ["--home", "D", "data", "list"]
    assert hoist_globals(["data", "show", "--", "--home"]) == ["data", "show", "--", "--home"]


def test_global_options_after_the_command(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = _run(capsys, "cache", "list", "--home", tmp_path / "store", "--json")
    assert code == 0 and json.loads(out)["root"] == str(tmp_path / "store")
    cfg = tmp_path / "g.toml"
    cfg.write_text("[probe]\nepochs = 2\n")
    code, out, _ = _run(capsys, "config", "--config", cfg, "--json", "-q")
    rows = {r["key"]: r for r in json.loads(out)["settings"]}
    assert code == 0 and rows["probe.epochs"]["value"] == 2


# -- pipes ------------------------------------------------------------------------------------
def test_a_closed_stdout_is_not_an_error(tmp_path: Path) -> None:
    """``gradts data list | head -0``: the reader is gone before the table is written."""
    r, w = os.pipe()
    os.close(r)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "gradts_cli.app", "data", "list"], stdout=w,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    os.close(w)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "Error" not in p.stderr

