"""``gradts probe`` on the command line: JSON, tables, the cache, and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: threads only contend on a shared 2-core machine

from gradts_cli.app import main  # noqa: E402
from gradts_engine import models  # noqa: E402

FAST = ["--epochs", "1", "--batch-size", "16", "--max-length", "64",
        "--max-train-examples", "24", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GRADTS_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # no project gradts.toml


def gradts(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_then_cached(tiny, tmp_path, capsys):
    home = tmp_path / "home"
    args = ["--home", home, "probe", "--model", tiny, "--task", "neg_movie", "--tasks",
            "match_city", *FAST, "--json"]
    code, out, err = gradts(capsys, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == tiny and doc["measure"] == "gate"
    assert [t["task"] for t in doc["tasks"]] == ["neg_movie", "match_city"]
    for t in doc["tasks"]:
        assert t["cached"] is False and t["num_instances"] == 24
        assert set(t["matrices"]) == {"during", "after"}
        assert [len(row) for row in t["matrices"]["during"]] == [4, 4]
        assert t["settings"]["max_train_examples"] == 24
        assert Path(t["path"], "meta.json").is_file()
        assert str(home) in t["path"]

    code, out, err = gradts(capsys, *args)
    assert code == 0
    assert [t["cached"] for t in json.loads(out)["tasks"]] == [True, True]
    assert "neg_movie: cached" in err and "fine-tune" not in err


def test_table_and_heatmap(tiny, tmp_path, capsys):
    code, out, err = gradts(capsys, "--home", tmp_path / "h", "probe", "--model", tiny,
                            "--task", "topic_home", *FAST, "--estimator", "after")
    assert code == 0, err
    assert "topic_home" in out and "probe/" in out and "new" in out
    assert "topic_home: after importance" in out and "L0" in out and "L1" in out
    assert "fine-tune topic_home" in err and "importance topic_home" in err  # plain progress


def test_help_ends_with_examples(capsys):
    code, out, _ = gradts(capsys, "probe", "--help")
    assert code == 0
    assert "Examples:" in out and "gradts probe --model bert-base-cased --suite glue" in out
    assert "--no-instances" in out and "--trust-remote-c" in out


def test_interactive_choice_on_a_terminal(tiny, tmp_path, capsys, monkeypatch):
    from rich.prompt import Prompt

    from gradts_cli import output

    monkeypatch.setattr(output, "is_interactive", lambda: True)
    monkeypatch.setattr(Prompt, "ask", classmethod(lambda cls, *a, **k: "agree_rc"))
    code, out, err = gradts(capsys, "--home", tmp_path / "h", "probe", "--model", tiny, *FAST,
                            "--json")
    assert code == 0, err
    assert "registered tasks" in err and "demo" in err
    assert [t["task"] for t in json.loads(out)["tasks"]] == ["agree_rc"]


def _labels_file(tmp_path: Path) -> Path:
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\nthe film was good\ta\nthe film was bad\tc\n")
    toml = tmp_path / "tasks.toml"
    toml.write_text(f"""[[task]]
name = "odd_labels"
kind = "classification"
text = ["sentence"]
label = "label"
labels = ["a", "b"]
[task.source]
type = "local"
format = "tsv"
files = {{ train = "{train}" }}
""")
    return toml


@pytest.mark.parametrize("case, code, pattern", [
    ("missing_model", 6, r"model path .*nowhere does not exist"),
    ("unknown_task", 3, r"unknown task 'neg_movei' — did you mean 'neg_movie'\?"),
    ("no_tasks", 2, r"no tasks given — pass --task NAME"),
    ("bad_measure", 2, r"unknown importance measure 'gates' — did you mean 'gate'\?"),
    ("bad_estimator", 2, r"unknown estimator 'before'"),
    ("too_long", 2, r"--max-length 1000 is longer than model .* accepts \(128 tokens\)"),
    ("cuda", 7, r"--device cuda: no CUDA GPU is available"),
    ("labels", 4, r"label 'c' is not one of the declared labels"),
    ("nan", 8, r"task 'neg_movie': the training loss became nan at step 1 of 2 .*learning rate"),
    ("offline", None, r"model 'no-such-org-gradts/no-such-model'"),
])
def test_errors_are_one_line(case, code, pattern, tiny, tmp_path, capsys, monkeypatch):
    base = ["--home", tmp_path / "h", "probe", "--model", tiny]
    args = {
        "missing_model": ["--home", tmp_path / "h", "probe", "--model", tmp_path / "nowhere",
                          "--task", "neg_movie"],
        "unknown_task": [*base, "--task", "neg_movei"],
        "no_tasks": base,
        "bad_measure": [*base, "--task", "neg_movie", "--measure", "gates"],
        "bad_estimator": [*base, "--task", "neg_movie", "--estimator", "before"],
        "too_long": [*base, "--task", "neg_movie", "--max-length", "1000"],
        "cuda": [*base, "--task", "neg_movie", "--device", "cuda"],
        "labels": ["--home", tmp_path / "h", "--tasks-file", _labels_file(tmp_path), "probe",
                   "--model", tiny, "--task", "odd_labels", *FAST],
        "nan": [*base, "--task", "neg_movie", *FAST],
        "offline": ["--home", tmp_path / "h", "probe", "--model",
                    "no-such-org-gradts/no-such-model", "--task", "neg_movie"],
    }[case]
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    if case == "nan":
        real = models.per_example_loss
        monkeypatch.setattr(models, "per_example_loss",
                            lambda lg, y, k: real(lg, y, k) * float("nan"))
    if case == "offline":
        import huggingface_hub.constants as hf_constants

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    got, out, err = gradts(capsys, *args)
    if case == "offline":
        assert got in (5, 6)
    else:
        assert got == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), err
    assert out == ""
