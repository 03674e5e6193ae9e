"""``gradts compare`` on the command line: the table and words, --json, --csv, resume, errors
(training replaced by the fake trainer of tests/test_compare.py)."""

from __future__ import annotations

import json

import pytest
from test_compare import CANDS, PRIMARY, SIZES, FakeTrainer, probe_all

from gradts_cli.app import main
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry


@pytest.fixture(autouse=True)
def small_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradts_cli import options

    monkeypatch.setattr(options.State, "registry",
                        lambda self: build_registry(self.tasks_files, include_user=False,
                                                    demo_sizes=SIZES))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTrainer:
    from gradts_engine import mtl

    f = FakeTrainer({frozenset([CANDS[0]]): 0.9})
    monkeypatch.setattr(mtl, "train_mtl", f)
    return f


@pytest.fixture
def model_dir(tmp_path, store_root) -> str:
    d = tmp_path / "fake-model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    probe_all(Store(store_root), str(d))
    return str(d)


def args(model: str, *extra: str) -> list[str]:
    return ["compare", "--model", model, "--primary", PRIMARY, "--candidates", ",".join(CANDS),
            "--selectors", "gradts,size,random", "--epochs", "1", "--seeds", "2",
            "--device", "cpu", *extra]


def test_table_words_json_csv_and_resume(model_dir, fake, capsys, tmp_path) -> None:
    assert main(args(model_dir)) == 0
    out = capsys.readouterr().out
    assert "each selector's ranking" in out and "Kendall tau between" in out
    assert "gain vs alone" in out and "labelled test split" in out
    assert "within the noise" in out or "better" in out
    n = len(fake.calls)
    assert main(args(model_dir, "--json")) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["trained"] == 0 and len(fake.calls) == n              # resumed: nothing retrained
    (p,) = d["primaries"]
    assert p["primary"] == PRIMARY and [r["selector"] for r in p["rankings"]] == [
        "gradts", "size", "random"]
    assert main(args(model_dir, "--csv", str(tmp_path / "c.csv"),
                     "--figure", str(tmp_path / "c.svg"))) == 0
    err = "".join(capsys.readouterr().err.split())
    assert f"wrote{tmp_path / 'c.csv'}" in err and f"wrote{tmp_path / 'c.svg'}" in err
    lines = (tmp_path / "c.csv").read_text().strip().splitlines()
    assert lines[0] == "stage,primary,set,role,task,seed,quantity,value"
    # 2 seeds x (alone, all, gradts, size, random) main-metric rows
    assert sum(ln.split(",")[6] == "accuracy" for ln in lines[1:]) == 2 * 5
    svg = (tmp_path / "c.svg").read_text()
    assert "gradts" in svg and "size" in svg and PRIMARY in svg


def test_figure_error_comes_before_any_work(model_dir, fake, capsys, tmp_path) -> None:
    assert main(args(model_dir, "--figure", str(tmp_path / "c.jpg"))) == 2
    assert "png, .svg or .pdf" in capsys.readouterr().err and fake.calls == []


@pytest.mark.parametrize("extra, code, text", [
    (("--selectors", "gradts,sise"), 2, "did you mean"),
    (("--k", "9"), 2, "--k"),
    (("--k", "x"), 2, "whole numbers"),
])
def test_bad_input_is_one_line(model_dir, fake, capsys, extra, code, text) -> None:
    assert main(args(model_dir, *extra)) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_unprobed_candidate_names_the_probe_command(model_dir, fake, capsys) -> None:
    cmd = ["compare", "--model", model_dir, "--primary", PRIMARY, "--candidates",
           f"{CANDS[0]},topic_home", "--selectors", "gradts", "--device", "cpu"]
    assert main(cmd) != 0
    err = capsys.readouterr().err
    assert "gradts probe" in err and "topic_home" in err


def test_report_shows_the_comparison(model_dir, fake, capsys) -> None:
    assert main(args(model_dir, "--k", "1")) == 0
    capsys.readouterr()
    assert main(["report", "--model", model_dir, "--primary", PRIMARY, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (c,) = d["compare"]
    assert [p["primary"] for p in c["primaries"]] == [PRIMARY]
    assert main(["report", "--model", model_dir, "--primary", PRIMARY]) == 0
    assert "gain vs alone" in capsys.readouterr().out


def test_report_figures_and_csv_carry_the_comparison(model_dir, fake, capsys, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    assert main(args(model_dir, "--k", "1")) == 0
    out = tmp_path / "figs"
    assert main(["report", "--model", model_dir, "--primary", PRIMARY, "--figures", str(out),
                 "--csv", str(tmp_path / "r.csv")]) == 0
    assert {p.name for p in out.glob(f"compare-{PRIMARY}.*")} == {
        f"compare-{PRIMARY}.{x}" for x in ("png", "svg", "pdf")}
    rows = [ln.split(",") for ln in (tmp_path / "r.csv").read_text().splitlines()[1:]]
    cmp = [r for r in rows if r[0] == "compare"]
    assert {r[3] for r in cmp} >= {"baseline", "gradts", "size", "random"}
    assert sum(r[6] == "accuracy" for r in cmp) == 2 * 5      # 2 seeds x 5 sets


def test_comparison_table_keeps_every_selector_and_set_readable_at_80_columns():
    """Piped output is 80 columns: the table must not squeeze its selector and set columns to
    nothing (it did: Rich kept the no-wrap numbers whole and gave the text columns 0 width)."""
    from types import SimpleNamespace as N

    from rich.console import Console

    from gradts_cli.views.compare import comparison

    def gain(d, lo, hi, sep):
        return N(diff=d, low=lo, high=hi, separable=sep)

    def row(sel, k, label, g, vr):
        return N(selector=sel, k=k, label=label, mean=0.5, std=0.02, gain=g, vs_random=vr,
                 train_s=300.0)

    c = N(primary="my_rte", main_metric="accuracy", scored_on_text="the held-out dev",
          baseline=row("primary alone", 0, "my_rte alone", None, None),
          all_candidates=row("all candidates", 4, "my_rte + my_qnli + my_mrpc + my_cola + "
                             "my_sst2", gain(0.04, -0.01, 0.09, False), None),
          rows=[row("gradts", 1, "my_rte + my_qnli", gain(0.065, 0.01, 0.13, True),
                    gain(0.07, -0.01, 0.15, False)),
                row("embed", 1, "my_rte + my_mrpc", gain(0.0, -0.05, 0.04, False),
                    gain(0.0, -0.01, 0.01, False))])

    def render(width: int) -> str:
        con = Console(width=width, force_terminal=False, record=True)
        con.print(comparison(c, 3))
        return con.export_text()

    narrow, wide = render(80), render(160)
    for text in (narrow, wide):
        flat = " ".join(text.replace("│", " ").split())
        for name in ("primary alone", "all candidates", "gradts", "embed", "my_rte + my_qnli",
                     "my_rte + my_mrpc", "+0.0650", "+0.01 … +0.13", "+0.0700"):
            assert name in flat, (name, text)
        assert max(map(len, text.splitlines())) <= len(text.splitlines()[0])
    assert "90% interval" in wide and "selector, set" not in wide        # one column per field
    assert "selector, set" in narrow and all(len(ln) <= 80 for ln in narrow.splitlines())
