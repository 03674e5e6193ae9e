"""``gradts corr`` through the CLI: JSON, CSV, human output, exit codes, config defaults.

The store (GRADTS_HOME, isolated per test by conftest) is filled with synthetic probe entries
by the helpers of test_corr.py: no training.
"""

from __future__ import annotations

import csv
import json

import pytest
from test_corr import MODEL, family_suite, write_probe

from gradts_cli.app import main
from gradts_engine.store import Store


@pytest.fixture
def fam(store_root):
    return family_suite(Store(store_root))


def run_json(capsys, *args):
    code = main(["corr", "--model", MODEL, *args, "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads(cap.out)


def test_json_is_complete(capsys, fam):
    d = run_json(capsys)
    T = len(fam)
    assert d["tasks"] == sorted(fam) and d["primary"] is None
    assert d["method"] == "kendall" and d["estimator"] == "during" and d["measure"] == "gate"
    assert len(d["matrix"]) == T and all(len(r) == T for r in d["matrix"])
    assert len(d["pvalues"]) == T and d["shape"] == [4, 6]
    assert set(d["rankings"]) == set(fam)
    for p, ranking in d["rankings"].items():
        assert ranking[0]["task"] == fam[p]
        assert [c["rank"] for c in ranking] == list(range(1, T))
        assert set(ranking[0]) >= {"task", "stat", "pvalue", "rank", "ci_low", "ci_high",
                                   "rank_stability"}
    assert set(d["importance"]) == set(fam) and len(d["importance"]["fam0_a"]) == 4
    assert len(d["probes"]) == T and d["bootstrap"] is None and d["instances"] is None


def test_json_with_primary_instances_and_bootstrap(capsys, fam):
    d = run_json(capsys, "--primary", "fam1_a", "--instances", "--bootstrap", "8",
                 "--estimator", "after", "--seed", "4")
    assert list(d["rankings"]) == ["fam1_a"]
    top = d["rankings"]["fam1_a"][0]
    assert top["task"] == "fam1_b" and top["ci_low"] <= top["ci_high"]
    assert 0.0 <= top["rank_stability"] <= 1.0
    assert d["bootstrap"]["n_boot"] == 8 and d["bootstrap"]["seed"] == 4
    assert d["bootstrap"]["estimator"] == "after" and d["bootstrap"]["note"] is None
    inst = {r["task"]: r for r in d["instances"]}
    assert inst["fam1_a"]["is_primary"] and set(inst) == set(fam)
    assert set(inst["fam1_b"]["frac_above"]) == {"0.5", "0.62", "0.7"}
    assert sum(inst["fam1_b"]["hist_counts"]) == inst["fam1_b"]["n"]
    again = run_json(capsys, "--primary", "fam1_a", "--bootstrap", "8", "--estimator",
                     "after", "--seed", "4")
    assert again["rankings"] == d["rankings"]


def test_csv_written(capsys, fam, tmp_path):
    path = tmp_path / "out" / "corr.csv"
    path.parent.mkdir()
    assert main(["corr", "--model", MODEL, "--csv", str(path)]) == 0
    cap = capsys.readouterr()
    assert "wrote" in cap.err and "candidates for" in cap.out
    rows = list(csv.DictReader(path.open()))
    T = len(fam)
    assert len(rows) == T * (T - 1)
    firsts = {r["primary"]: r["candidate"] for r in rows if r["rank"] == "1"}
    assert firsts == fam
    assert not list(tmp_path.joinpath("out").glob(".*tmp"))  # atomic: no temp file left


def test_human_output_shows_matrix_and_ranking(capsys, fam):
    assert main(["corr", "--model", MODEL, "--primary", "fam2_b", "--pvalues", "--heatmap",
                 "--instances", "--bootstrap", "5"]) == 0
    out = capsys.readouterr().out
    assert "kendall τ between tasks" in out and "p-values" in out
    assert "candidates for fam2_b" in out
    ranking = out.split("candidates for fam2_b")[1]
    first = next(ln for ln in ranking.splitlines() if ln.strip().startswith("│    1"))
    assert "fam2_a" in first
    assert "instance level" in out and "(own)" in out
    assert "note:" in out and "'during' estimator" in out  # bootstrap describes 'after'
    assert "head importance" in out  # heatmaps


def test_candidate_without_instances_in_human_output(capsys, fam, store_root):
    import numpy as np

    write_probe(Store(store_root), "bare", np.random.default_rng(0).random((4, 6)))
    assert main(["corr", "--model", MODEL, "--primary", "fam0_a", "--instances"]) == 0
    out = capsys.readouterr().out
    assert "--no-instances" in out


def test_missing_probe_exits_9_with_the_probe_command(capsys, fam):
    code = main(["corr", "--model", MODEL, "--tasks", "fam0_a,neg_movie"])
    err = capsys.readouterr().err
    assert code == 9
    assert "gradts probe --model tiny/model --task neg_movie" in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize("flag", ["--primary", "--task"])
def test_a_misspelt_task_is_a_task_error_not_a_missing_probe(capsys, fam, flag):
    """An unknown name (neither registered nor probed) exits 3 with did-you-mean and never
    tells the user to probe the misspelt name (issue 11)."""
    code = main(["corr", "--model", MODEL, flag, "fam0_aa"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "unknown task 'fam0_aa'" in err and "did you mean 'fam0_a'?" in err
    assert "gradts probe" not in err
    code = main(["corr", "--model", MODEL, "--primary", "neg_moive"])
    err = capsys.readouterr().err
    assert code == 3 and "did you mean 'neg_movie'?" in err and "probe" not in err


def test_a_misspelt_model_directory_is_a_model_error(capsys, fam, tmp_path):
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    code = main(["corr", "--model", str(tmp_path / "my-modle")])
    err = capsys.readouterr().err
    assert code == 6, err
    assert "does not exist" in err and "did you mean" in err and "my-model" in err
    assert "gradts probe" not in err


def test_missing_suite_tasks_exit_9(capsys, fam):
    code = main(["corr", "--model", MODEL, "--suite", "demo"])
    err = capsys.readouterr().err
    assert code == 9 and "--task neg_movie" in err


def test_empty_store_exits_9(capsys):
    assert main(["corr", "--model", MODEL]) == 9
    assert "gradts probe --model tiny/model" in capsys.readouterr().err


def test_incompatible_exits_9(capsys, fam, store_root):
    import numpy as np

    write_probe(Store(store_root), "wide", np.random.default_rng(0).random((4, 8)))
    assert main(["corr", "--model", MODEL]) == 9


def test_usage_errors_exit_2(capsys, fam):
    assert main(["corr", "--model", MODEL, "--instances"]) == 2
    assert "--primary" in capsys.readouterr().err
    assert main(["corr", "--model", MODEL, "--method", "kendal"]) == 2
    assert "did you mean 'kendall'" in capsys.readouterr().err
    assert main(["corr"]) == 2  # no model: the hint names the probed ones
    assert "tiny/model" in capsys.readouterr().err


def test_config_defaults(capsys, fam, monkeypatch):
    monkeypatch.setenv("GRADTS_CORR_METHOD", "spearman")
    monkeypatch.setenv("GRADTS_CORR_ESTIMATOR", "after")
    monkeypatch.setenv("GRADTS_MODEL", MODEL)
    code = main(["corr", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["method"] == "spearman" and d["estimator"] == "after"
    d = run_json(capsys, "--method", "pearson")  # the flag wins
    assert d["method"] == "pearson"


def test_help_ends_with_examples(capsys):
    assert main(["corr", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and "gradts corr --model" in out
