"""``gradts fg`` on the command line: JSON output, the table and chart, resume, errors.

Probe entries (with instance matrices) are written directly into the store; training is
replaced by a fake trainer (``gradts_engine.mtl.train_mtl`` patched), so these tests check the
command, not learning; tests/test_fg.py trains a tiny model for real.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fg import AUX, PRIMARY, SIZES, FakeTrainer, probe_suite

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

    f = FakeTrainer()
    monkeypatch.setattr(mtl, "train_mtl", f)
    return f


@pytest.fixture
def model_dir(tmp_path, store_root) -> str:
    d = tmp_path / "fake-model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    probe_suite(Store(store_root), str(d), build_registry(include_user=False, demo_sizes=SIZES))
    return str(d)


def args(model: str, *extra: str) -> list[str]:
    return ["fg", "--model", model, "--primary", PRIMARY, "--epochs", "1", "--device", "cpu",
            *extra]


def test_json_sweep_and_resume(model_dir, fake, capsys) -> None:
    cmd = args(model_dir, "--aux", ",".join(AUX), "--sweep", "0.2,0.5,0.99", "--json")
    assert main(cmd) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["primary"] == PRIMARY and out["aux"] == AUX and out["aux_source"] == "--aux"
    assert [r["cut"] for r in out["rows"]] == [{"kind": "threshold", "value": v}
                                               for v in (0.2, 0.5, 0.99)]
    for r in out["rows"]:
        assert [k["task"] for k in r["kept"]] == AUX and all(k["total"] == 40 for k in r["kept"])
        assert r["kept_total"] == sum(k["kept"] for k in r["kept"])
        assert 0.0 <= r["fraction"] <= 1.0 and r["label"].startswith("tau ≥ ")
    assert out["rows"][-1]["primary_alone"] is True          # nothing reaches 0.99
    assert out["baseline"]["aux"] == [] and out["trial"] is None
    assert out["trained"] == len(fake.calls) > 0
    n = len(fake.calls)
    assert main(cmd) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["trained"] == 0 and len(fake.calls) == n
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in out["rows"]]


def test_table_chart_and_keep_nothing_message(model_dir, fake, capsys) -> None:
    assert main(args(model_dir, "--aux", ",".join(AUX), "--sweep", "0.2,1.0")) == 0
    cap = capsys.readouterr()
    assert "GradTS-fg" in cap.out and "primary alone" in cap.out and "tau ≥ 0.2" in cap.out
    assert "against auxiliary data kept" in cap.out and "█" in cap.out       # the chart
    assert "tau ≥ 1 kept no auxiliary instance" in cap.out
    assert f"{AUX[0]} " in cap.out and "/40" in cap.out


def test_keep_fraction_and_config_threshold(model_dir, fake, capsys, tmp_path) -> None:
    assert main(args(model_dir, "--aux", AUX[0], "--keep-fraction", "0.25", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["rows"]
    assert row["cut"] == {"kind": "keep_fraction", "value": 0.25}
    assert row["kept"][0]["kept"] == 10
    cfg = tmp_path / "gradts.toml"
    cfg.write_text("[fg]\nthreshold = 0.3\n")
    assert main(["--config", str(cfg), *args(model_dir, "--aux", AUX[0], "--json")]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["cut"] == {"kind": "threshold", "value": 0.3}


def test_no_trial_no_aux_exit_9_names_trial_command(model_dir, fake, capsys) -> None:
    assert main(args(model_dir)) == 9
    err = capsys.readouterr().err
    assert "gradts trial --model" in err and f"--primary {PRIMARY}" in err
    assert not fake.calls


@pytest.mark.parametrize("extra,code", [
    (["--threshold", "0.5", "--sweep", "0.4,0.6"], 2),
    (["--sweep", "0.4,high"], 2),
    (["--keep-fraction", "0.25", "--threshold", "0.5"], 2),
    (["--threshold", "1.5"], 2),
    (["--estimator", "later"], 2),
    (["--aux", "neg_moovie"], 3),
])
def test_usage_errors(model_dir, fake, extra, code, capsys) -> None:
    assert main(args(model_dir, "--aux", AUX[0], *extra)) == code
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) <= 2


def test_help_ends_with_examples(capsys) -> None:
    assert main(["fg", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples" in text and "gradts fg --model" in text and "--sweep" in text
    assert "[fg]" in text and "[trial]" in text   # config section names survive Rich markup


def test_fg_after_trial(model_dir, fake, capsys) -> None:
    assert main(["trial", "--model", model_dir, "--primary", PRIMARY, "--candidates",
                 ",".join(AUX), "--epochs", "1", "--device", "cpu", "--patience", "2",
                 "--json"]) == 0
    trial = json.loads(capsys.readouterr().out)
    n = len(fake.calls)
    assert main(args(model_dir, "--threshold", "0.3", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["aux"] == trial["selected"] and out["aux_source"] == "trial"
    assert out["baseline"]["source"] == "ledger"
    assert out["trial"]["mean"] == pytest.approx(trial["selected_trial"]["mean"])
    assert len(fake.calls) - n == out["trained"] == 1
    assert np.isfinite(out["rows"][0]["delta_trial"])
