"""CLI conventions every command relies on: exit codes, one-line errors, fast import, completion."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gradts_cli import app as app_mod
from gradts_engine import errors as E

EXPECTED = {
    E.UsageError: 2, E.ConfigError: 2, E.UnknownTaskError: 3, E.DuplicateTaskError: 3,
    E.TaskError: 3, E.DataError: 4, E.OfflineError: 5, E.UnsupportedArchitectureError: 6,
    E.ModelError: 6, E.DeviceError: 7, E.TrainingError: 8, E.MissingResultError: 9,
    E.IncompatibleResultsError: 9, E.CorruptEntryError: 10, E.StoreError: 10, E.GradtsError: 1,
    E.MissingDependencyError: 1,
}


def test_every_error_class_has_its_exit_code() -> None:
    classes = {c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.GradtsError)}
    assert classes == set(EXPECTED), "a new error class needs a row in EXIT_CODES and here"
    for cls, code in EXPECTED.items():
        assert app_mod.exit_code_for(cls("x")) == code, cls.__name__


@pytest.mark.parametrize("cls", list(EXPECTED))
def test_known_errors_print_one_line_without_traceback(cls, monkeypatch, capsys) -> None:
    def boom(*_a, **_k):
        raise cls("something named is wrong", hint="run gradts fix")

    monkeypatch.setattr("gradts_engine.config.resolve", boom)
    code = app_mod.main(["config"])
    err = capsys.readouterr().err
    assert code == EXPECTED[cls]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: something named is wrong")
    assert "run gradts fix" in lines[0]


def test_debug_env_shows_traceback(monkeypatch) -> None:
    def boom(*_a, **_k):
        raise E.DataError("bad")

    monkeypatch.setattr("gradts_engine.config.resolve", boom)
    monkeypatch.setenv("GRADTS_DEBUG", "1")
    with pytest.raises(E.DataError):
        app_mod.main(["config"])


def test_usage_errors_exit_2(capsys) -> None:
    assert app_mod.main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_version(capsys) -> None:
    from gradts_engine import __version__

    assert app_mod.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_importing_the_cli_does_not_import_heavy_libraries() -> None:
    code = ("import sys, gradts_cli.app; "
            "print(','.join(m for m in ('torch','transformers','datasets','scipy','sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_of_every_command_ends_with_examples() -> None:
    from typer.main import get_command

    root = get_command(app_mod.app)
    assert "Examples" in (root.help or "")
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        for sub in (subs.values() if subs else [cmd]):
            assert "Example" in (sub.help or ""), f"gradts {name} {sub.name}: no examples in help"


def _complete(words: str, env_extra: dict[str, str] | None = None) -> list[str]:
    env = {**os.environ, "_GRADTS_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
           **(env_extra or {})}
    exe = os.path.join(os.path.dirname(sys.executable), "gradts")
    out = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def test_command_names_complete() -> None:
    assert "cache" in _complete("gradts ca")
    assert "config" in _complete("gradts co")


def test_bracketed_words_in_help_survive_rich_markup() -> None:
    """Help texts mention [run], [corr], gradts[demo]: unescaped, Rich would swallow them."""
    import re

    from typer.main import get_command
    from typer.testing import CliRunner

    styles = {"dim", "bold", "italic", "green", "red", "cyan", "yellow", "b", "i", "u"}
    root = get_command(app_mod.app)
    todo = [(root, [])]
    while todo:
        cmd, path = todo.pop()
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            for word in re.findall(r"(?<!\\)\[([a-z_][a-z0-9_-]*)\]", text):
                assert word in styles, f"gradts {' '.join(path)}: unescaped [{word}] in help"
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            todo.append((sub, [*path, name]))
    res = CliRunner().invoke(app_mod.app, ["probe", "--help"], env={"COLUMNS": "200"})
    assert "[run] model" in res.output


def test_task_and_suite_names_complete_from_the_registry_without_torch() -> None:
    assert _complete("gradts probe --task neg_") == ["neg_movie", "neg_product"]
    assert _complete("gradts corr --tasks neg_movie,agree") == ["neg_movie,agree_pp",
                                                                 "neg_movie,agree_rc"]
    assert _complete("gradts data show match") == ["match_person", "match_city"]
    assert "demo" in _complete("gradts probe --suite d")
    assert _complete("gradts compare --selectors gradts,r") == ["gradts,random"]
    assert _complete("gradts compare --selectors gradts,") == [     # each selector once
        "gradts," + n for n in ("size", "random", "embed", "tag", "grad-cos")]
    probe = ("import sys, os; os.environ.update(_GRADTS_COMPLETE='complete_bash', "
             "COMP_WORDS='gradts probe --task neg_', COMP_CWORD='3'); "
             "from gradts_cli.app import main\n"
             "try:\n    main([])\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', [m for m in ('torch', 'transformers', 'datasets') "
             "if m in sys.modules],"
             " file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert out.stdout.split() == ["neg_movie", "neg_product"]  # completion really ran
    assert "HEAVY []" in out.stderr, out.stderr[-500:]


def test_cli_choices_match_the_engine() -> None:
    from gradts_cli.options import ESTIMATORS, METHODS
    from gradts_engine.correlate import METHODS as ENGINE_METHODS
    from gradts_engine.results import ESTIMATORS as ENGINE_ESTIMATORS

    assert ESTIMATORS == ENGINE_ESTIMATORS
    assert METHODS == ENGINE_METHODS
