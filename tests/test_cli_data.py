"""``gradts data list/show/add/get`` through ``gradts_cli.app.main`` (offline; GRADTS_HOME and
GRADTS_CONFIG_DIR point at tmp dirs, see conftest.py). Files mimic the GLUE TSV layouts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gradts_cli import app as app_mod


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = app_mod.main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def cola(tmp_path) -> dict[str, str]:
    rows = ["gj04\t1\t\tDay by day the facts are getting murkier.",
            "gj04\t0\t*\tThe more books I ask to whom he will give, the more he reads.",
            'cj99\t1\t\tHe said " hi " .']
    (tmp_path / "CoLA").mkdir()
    for split, body in (("train", rows), ("dev", rows[:2])):
        (tmp_path / "CoLA" / f"{split}.tsv").write_text("\n".join(body) + "\n", encoding="utf-8")
    return {s: str(tmp_path / "CoLA" / f"{s}.tsv") for s in ("train", "dev")}


@pytest.fixture
def mrpc(tmp_path) -> dict[str, str]:
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    body = ['1\t1\t2\tHe called him " the witness " .\tHe said " witness " .\n',
            "0\t3\t4\tYucaipa owned Dominick 's .\tYucaipa bought it .\n"]
    (tmp_path / "MRPC").mkdir()
    for split, rows in (("train", body), ("dev", body[:1])):
        (tmp_path / "MRPC" / f"{split}.tsv").write_text(header + "".join(rows), encoding="utf-8")
    return {s: str(tmp_path / "MRPC" / f"{s}.tsv") for s in ("train", "dev")}


def tasks_dir() -> Path:
    return Path(os.environ["GRADTS_CONFIG_DIR"]) / "tasks"


def test_list_builtin_tasks(capsys):
    code, out, _ = run(capsys, "data", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["tasks"]}
    assert rows["cola"]["suite"] == "glue" and rows["cola"]["available"] == "not downloaded"
    assert rows["neg_movie"]["available"] == "generated" and rows["stsb"]["kind"] == "regression"
    code, out, _ = run(capsys, "data", "list", "--suite", "demo", "--json")
    assert {r["suite"] for r in json.loads(out)["tasks"]} == {"demo"}
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "neg_movie" in out and "tasks" in out


def test_add_cola_layout_then_list_and_show(capsys, cola):
    code, out, err = run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--dev",
                         cola["dev"], "--no-header", "--text", "3", "--label", "1",
                         "--metrics", "matthews,accuracy")
    assert code == 0, err
    assert "added task 'my_cola'" in err and "train 3, dev 2" in err and out == ""
    toml = (tasks_dir() / "my_cola.toml").read_text()
    assert 'text = ["3"]' in toml and "header = false" in toml

    code, out, _ = run(capsys, "data", "list", "--json")
    row = {r["name"]: r for r in json.loads(out)["tasks"]}["my_cola"]
    assert row["available"] == "local files" and row["labels"] == ["0", "1"]
    assert row["main_metric"] == "matthews"

    code, out, err = run(capsys, "data", "show", "my_cola", "--json")
    assert code == 0, err
    doc = json.loads(out)
    train = doc["splits"][0]
    assert train["size"] == 3 and train["distribution"] == {"0": 1, "1": 2}
    assert train["examples"][0] == {"text": {"3": "Day by day the facts are getting murkier."},
                                    "label": "1"}
    code, out, _ = run(capsys, "data", "show", "my_cola", "-n", "1")
    assert code == 0 and "Day by day" in out and "splits" in out


def test_add_mrpc_layout_with_bom(capsys, mrpc):
    code, out, err = run(capsys, "data", "add", "my_mrpc", "--train", mrpc["train"], "--dev",
                         mrpc["dev"], "--text", "#1 String,#2 String", "--label", "Quality",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sizes"] == {"train": 2, "dev": 1} and doc["labels"] == ["0", "1"]
    code, out, _ = run(capsys, "data", "show", "my_mrpc", "--json")
    ex = json.loads(out)["splits"][0]["examples"][0]
    assert ex["text"] == {"#1 String": 'He called him " the witness " .',
                          "#2 String": 'He said " witness " .'}


def test_add_refuses_existing_unless_force(capsys, cola):
    args = ["data", "add", "my_cola", "--train", cola["train"], "--no-header", "--text", "3",
            "--label", "1"]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 3 and "already exists" in one_line(err) and "--force" in err
    code, _, err = run(capsys, *args, "--labels", "bad,good", "--force")
    assert code == 0 and "replaced task 'my_cola'" in err
    assert 'labels = ["bad", "good"]' in (tasks_dir() / "my_cola.toml").read_text()


@pytest.mark.parametrize("name", ["../escape", "Upper", "a/b", "x.y"])
def test_add_rejects_names_that_would_escape(capsys, cola, name):
    code, _, err = run(capsys, "data", "add", name, "--train", cola["train"], "--no-header",
                       "--text", "3", "--label", "1")
    assert code == 3 and "invalid task name" in one_line(err)
    assert not tasks_dir().exists() or not any(tasks_dir().iterdir())


def test_add_bad_input_messages(capsys, cola, mrpc, tmp_path):
    code, _, err = run(capsys, "data", "add", "cola", "--train", cola["train"], "--no-header",
                       "--text", "3", "--label", "1")
    assert code == 3 and "built-in task" in one_line(err)
    code, _, err = run(capsys, "data", "add", "x", "--train", str(tmp_path / "none.tsv"),
                       "--text", "a", "--label", "b")
    assert code == 4 and "does not exist" in one_line(err)
    code, _, err = run(capsys, "data", "add", "x", "--train", mrpc["train"], "--text",
                       "#1 Strin", "--label", "Quality")
    line = one_line(err)
    assert code == 4 and "no text column '#1 Strin'" in line and "'#2 String'" in line
    assert "did you mean '#1 String'" in line
    code, _, err = run(capsys, "data", "add", "x", "--train", mrpc["train"], "--text", "a,b,c",
                       "--label", "Quality")
    assert code == 2 and "one or two columns" in one_line(err)
    bad = tmp_path / "bad.tsv"
    bad.write_text("s\tscore\na\thigh\n", encoding="utf-8")
    code, _, err = run(capsys, "data", "add", "x", "--train", str(bad), "--text", "s",
                       "--label", "score", "--kind", "regression")
    assert code == 4 and "line 2: label 'high' is not a number" in one_line(err)


def test_show_unknown_task(capsys):
    code, _, err = run(capsys, "data", "show", "colaa")
    assert code == 3 and "did you mean 'cola'" in one_line(err)


def test_get_local_and_demo(capsys, cola):
    assert run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--no-header",
               "--text", "3", "--label", "1")[0] == 0
    code, out, err = run(capsys, "--quiet", "data", "get", "my_cola", "neg_movie", "--json")
    assert code == 0, err
    got = {t["task"]: t for t in json.loads(out)["tasks"]}
    assert got["my_cola"]["sizes"] == {"train": 3} and got["neg_movie"]["revision"] is None
    assert len(got["neg_movie"]["data_fingerprint"]) == 16


def test_get_hub_task_offline(capsys, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t0 = time.monotonic()
    code, _, err = run(capsys, "--quiet", "data", "get", "cola")
    assert time.monotonic() - t0 < 20
    line = one_line(err)
    assert code == 5
    assert "cannot download nyu-mll/glue (cola): the Hub is not reachable" in line
    code, _, err = run(capsys, "data", "get")
    assert code == 2 and "name at least one task" in one_line(err)


# -- likely-broken declarations (issue 11) -----------------------------------------------------
def _sts(tmp_path: Path, n: int = 30) -> str:
    """STS-B's layout: a header, a float score column written with varying precision."""
    rows = ["index\tsentence1\tsentence2\tscore"]
    scores = ["0", "0.00", "0.000", "1.2", "4.250", "5.000"]
    rows += [f"{i}\ta man {i}\ta dog {i}\t{scores[i % len(scores)] if i < 6 else i / 7:.3f}"
             if i >= 6 else f"{i}\ta man\ta dog\t{scores[i]}" for i in range(n)]
    f = tmp_path / "sts.tsv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(f)


def test_add_refuses_a_regression_target_as_classes(capsys, tmp_path):
    sts = _sts(tmp_path)
    code, _, err = run(capsys, "data", "add", "my_sts", "--train", sts, "--text",
                       "sentence1,sentence2", "--label", "score")
    line = one_line(err)
    assert code == 4 and "looks like a regression target" in line and "--kind regression" in line
    assert not (tasks_dir() / "my_sts.toml").exists()
    code, _, err = run(capsys, "data", "add", "my_sts", "--train", sts, "--text",
                       "sentence1,sentence2", "--label", "score", "--kind", "regression")
    assert code == 0, err
    # integer class ids, and a few decimal-looking classes, are still classes
    ok = tmp_path / "ok.tsv"
    ok.write_text("s\ty\n" + "".join(f"a {i}\t{i % 3}\n" for i in range(30)), encoding="utf-8")
    assert run(capsys, "data", "add", "three", "--train", str(ok), "--text", "s",
               "--label", "y")[0] == 0


def test_add_refuses_a_header_setting_the_wrong_way_round(capsys, cola, mrpc, tmp_path):
    code, _, err = run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--text", "3",
                       "--label", "1")  # CoLA has no header: its first row would be lost
    line = one_line(err)
    assert code == 4 and "first line looks like data" in line and "--no-header" in line
    code, _, err = run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--text", "3",
                       "--label", "1", "--labels", "unacceptable,acceptable")
    assert code == 4 and "--no-header" in one_line(err)
    code, _, err = run(capsys, "data", "add", "my_mrpc", "--train", mrpc["train"], "--text",
                       "3,4", "--label", "0", "--no-header")  # MRPC has one: 'Quality' a class
    line = one_line(err)
    assert code == 4 and "first line looks like a header" in line and "'Quality'" in line
    rte = tmp_path / "rte.tsv"
    rte.write_text("index\ts1\ts2\tlabel\n" + "".join(
        f"{i}\ta {i}\tb {i}\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(25)),
        encoding="utf-8")
    code, _, err = run(capsys, "data", "add", "my_rte", "--train", str(rte), "--text", "1,2",
                       "--label", "3", "--no-header")
    assert code == 4 and "'label' appears nowhere else" in one_line(err)
    assert not tasks_dir().exists() or not any(tasks_dir().iterdir())
    assert run(capsys, "data", "add", "my_rte", "--train", str(rte), "--text", "s1,s2",
               "--label", "label")[0] == 0


def test_rm_removes_a_declaration_and_names_cached_entries(capsys, cola):
    from gradts_engine.data import encode_split, load_split
    from gradts_engine.store import Store
    from gradts_engine.tasks import build_registry

    assert run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--no-header",
               "--text", "3", "--label", "1")[0] == 0
    spec = build_registry().get("my_cola")

    class Tok:  # a stand-in tokenizer: one id per word
        model_input_names = ["input_ids"]

        def num_special_tokens_to_add(self, pair: bool = False) -> int:
            return 0

        def __call__(self, a, b=None, **kw):
            return {"input_ids": [[1] * len(t.split()) for t in a]}

        def get_vocab(self):
            return {"x": 1}

    store = Store(os.environ["GRADTS_HOME"])
    encode_split(load_split(spec, "train", store=store), Tok(), tokenizer_id="tok",
                 max_length=16, store=store)
    code, _, err = run(capsys, "data", "rm", "my_cola")
    assert code == 0, err
    flat = " ".join(err.split()).replace("/ ", "/")
    assert "removed task 'my_cola'" in flat and "1 cached entry remains for 'my_cola'" in flat
    assert "gradts cache rm tokens/my_cola/train/" in flat
    assert not (tasks_dir() / "my_cola.toml").exists()
    assert "my_cola" not in build_registry()
    assert Path(cola["train"]).is_file()  # the data files stay
    code, _, err = run(capsys, "data", "rm", "my_cola")
    assert code == 3 and "unknown task 'my_cola'" in one_line(err)
    code, _, err = run(capsys, "data", "rm", "cola")
    assert code == 3 and "built-in task" in one_line(err)
    code, _, err = run(capsys, "data", "rm", "../x")
    assert code == 3 and "invalid task name" in one_line(err)


def test_rm_refuses_files_it_did_not_write(capsys, cola, tmp_path):
    assert run(capsys, "data", "add", "my_cola", "--train", cola["train"], "--no-header",
               "--text", "3", "--label", "1", "--json")[0] == 0
    capsys.readouterr()
    text = (tasks_dir() / "my_cola.toml").read_text()
    other = tmp_path / "mine.toml"
    other.write_text(text.replace('"my_cola"', '"other"'))
    code, _, err = run(capsys, "--tasks-file", str(other), "data", "rm", "other")
    assert code == 3 and "declared in" in one_line(err) and "mine.toml" in err
    assert other.is_file()
    two = tasks_dir() / "my_cola.toml"
    two.write_text(text.replace("[task]", "[[task]]") + "\n" + text.replace("[task]", "[[task]]")
                   .replace('"my_cola"', '"second"').replace("[task.source", "[task.source"))
    code, _, err = run(capsys, "data", "rm", "my_cola", "--json")
    assert code == 3 and "declares several tasks" in one_line(err) and two.is_file()
