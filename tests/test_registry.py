"""Task specs and the registry: built-ins, TOML user tasks, duplicates, safe names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradts_engine.errors import ConfigError, DuplicateTaskError, TaskError, UnknownTaskError
from gradts_engine.tasks import build_registry, load_task_file
from gradts_engine.tasks.demo import DEMO_TASKS
from gradts_engine.tasks.spec import HubSource, TaskSpec

TOML = """
[[task]]
name = "my_cola"
text = ["3"]
label = "1"
labels = ["unacceptable", "acceptable"]
metrics = ["matthews", "accuracy"]
[task.source]
type = "local"
format = "tsv"
header = false
files = { train = "train.tsv", dev = "dev.tsv" }
"""


def test_builtins_glue_and_demo() -> None:
    reg = build_registry(include_user=False)
    glue = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert glue <= set(reg.names())
    assert reg.suites["demo"] == tuple(DEMO_TASKS)
    assert reg.get("cola").main_metric == "matthews"
    assert reg.get("mrpc").main_metric == "f1"
    assert reg.get("stsb").kind == "regression" and reg.get("stsb").main_metric == "pearson"
    assert reg.get("rte").main_metric == "accuracy"
    mnli = reg.get("mnli")
    assert isinstance(mnli.source, HubSource)
    assert mnli.source.splits["dev"] == "validation_matched"
    assert mnli.source.splits["dev_mismatched"] == "validation_mismatched"


def test_unknown_task_did_you_mean() -> None:
    reg = build_registry(include_user=False)
    with pytest.raises(UnknownTaskError, match="unknown task 'colaa'") as e:
        reg.get("colaa")
    assert "did you mean 'cola'" in (e.value.hint or "")
    with pytest.raises(UnknownTaskError, match="unknown suite"):
        reg.suite("gleu")


def test_user_task_file_paths_relative_to_file(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(TOML)
    (spec,) = load_task_file(f)
    assert spec.name == "my_cola"
    assert spec.source.files["train"] == str(tmp_path / "train.tsv")
    assert spec.source.header is False and spec.main_metric == "matthews"
    reg = build_registry([f], include_user=False)
    assert "my_cola" in reg


def test_user_dir_tasks_are_loaded() -> None:
    d = Path(os.environ["GRADTS_CONFIG_DIR"]) / "tasks"
    d.mkdir(parents=True)
    (d / "my_cola.toml").write_text(TOML)
    assert "my_cola" in build_registry()


def test_duplicate_names_rejected(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(TOML.replace("my_cola", "cola"))
    with pytest.raises(DuplicateTaskError, match="'cola' is declared twice"):
        build_registry([f], include_user=False)


@pytest.mark.parametrize("bad", ["../evil", "Cola", "a/b", "x" * 70, "1abc", ""])
def test_names_that_could_escape_are_rejected(bad: str, tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(TOML.replace('"my_cola"', repr(bad).replace("'", '"')))
    with pytest.raises(ConfigError, match="invalid task name"):
        load_task_file(f)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("[[task]]\nname = \n")
    with pytest.raises(ConfigError, match=r"t.toml is not valid TOML.*line 2"):
        load_task_file(f)


def test_unknown_key_named_with_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(TOML.replace('label = "1"', 'label = "1"\nlables = ["a", "b"]'))
    with pytest.raises(ConfigError, match="unknown key 'lables'") as e:
        load_task_file(f)
    assert "labels" in (e.value.hint or "")


def test_spec_validation() -> None:
    src = HubSource("x/y")
    with pytest.raises(TaskError, match="at least two label"):
        TaskSpec("a", "classification", ("s",), "label", src, labels=("one",))
    with pytest.raises(TaskError, match="metric 'pearson' does not apply"):
        TaskSpec("a", "classification", ("s",), "label", src, labels=("x", "y"),
                 metrics=("pearson",))
    with pytest.raises(TaskError, match="one or two text fields"):
        TaskSpec("a", "classification", ("a", "b", "c"), "label", src, labels=("x", "y"))
    s = TaskSpec("a", "regression", ("s",), "score", src)
    assert s.metrics == ("pearson", "spearman") and s.num_outputs == 1


HUB_TOML = """
[task]
name = "h"
text = "sentence"
label = "label"
labels = ["a", "b"]
[task.source]
type = "hub"
path = "owner/data"
"""


@pytest.mark.parametrize("text,match", [
    (TOML.replace('name = "my_cola"', 'name = "my_cola"\nversion = "abc"'),
     r"'version' must be an integer, not 'abc'"),
    ("task = 3\n", r"no \[task\] table"),
    ("task = [1, 2]\n", r"a task must be a table"),
    ("task = []\n", r"no \[task\] table"),
    (TOML.replace('text = ["3"]', 'text = [true]'), r"'text' must be a column name"),
    (TOML.replace('labels = ["unacceptable", "acceptable"]', 'labels = "ab"\nkind = 3'),
     r"'kind' must be a string"),
    (TOML.replace('files = { train = "train.tsv", dev = "dev.tsv" }', 'files = { train = 1 }'),
     r"'source.files' must be a table of strings"),
    (HUB_TOML + 'splits = "train"\n', r"'source.splits' must be a table of strings"),
    (HUB_TOML + 'splits = { train = 3 }\n', r"'source.splits' must be a table of strings"),
    (HUB_TOML + 'revision = 5\n', r"'source.revision' must be a string"),
    (HUB_TOML.replace('path = "owner/data"', 'path = 3'), r"needs path"),
    (HUB_TOML.replace('path = "owner/data"', 'path = "../../etc"'), r"is not a Hub dataset id"),
    (HUB_TOML.replace('path = "owner/data"', 'path = "/abs/dir"'), r"is not a Hub dataset id"),
    (HUB_TOML.replace('path = "owner/data"', 'path = "a/b/c"'), r"is not a Hub dataset id"),
    ("x = 1\n", r"unknown top-level key 'x'"),
])
def test_wrong_types_are_one_line_config_errors(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "t.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_task_file(f)
    assert str(f) in e.value.message and "\n" not in str(e.value)


def test_non_utf8_task_file_and_directory(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_bytes(TOML.encode() + b"# \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"t.toml is not UTF-8 text") as e:
        load_task_file(f)
    assert "UTF-8" in (e.value.hint or "")
    with pytest.raises(ConfigError, match="is a directory"):
        load_task_file(tmp_path)


def test_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    from gradts_engine.tasks.spec import LocalSource
    from gradts_engine.tasks.toml import parse_task_text, task_toml

    src = LocalSource({"train": str(tmp_path / 'a "b".tsv'), "dev": str(tmp_path / "d\\e.tsv")},
                      "csv", False, True)
    spec = TaskSpec("w", "classification", ("t 1", "t2"), "y", src, labels=("x", 'q"uote'),
                    metrics=("accuracy",), version=3, description="é ünïcode")
    (back,) = parse_task_text(task_toml(spec), tmp_path / "w.toml")
    assert back.fingerprint() == spec.fingerprint() and back.description == spec.description
    with pytest.raises(TaskError, match="only local tasks"):
        task_toml(TaskSpec("h", "regression", ("s",), "y", HubSource("a/b")))
