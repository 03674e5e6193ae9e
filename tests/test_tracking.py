"""Opt-in experiment tracking (``--log tensorboard|wandb``) through Accelerate's trackers in
the one training core: the event files' scalars against what the run itself recorded, the
missing-package error, and that nothing is logged by default."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from gradts_cli.app import main  # noqa: E402
from gradts_engine import tracking as tracking_mod  # noqa: E402
from gradts_engine import training  # noqa: E402

FAST = ["--epochs", "2", "--batch-size", "16", "--max-length", "64",
        "--max-train-examples", "24", "--device", "cpu", "--lr", "1e-3"]
SIZES = {"train": 40, "dev": 20, "test": 20}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GRADTS_HOME", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")      # never the network, whatever happens
    monkeypatch.chdir(tmp_path)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files directly in ``run_dir``: tag -> [(step, value)]."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_probe_logs_its_losses_lr_and_dev_metrics_to_tensorboard(tiny, tmp_path, capsys) -> None:
    pytest.importorskip("tensorboard")
    logs = tmp_path / "tb"
    code = main(["--home", str(tmp_path / "home"), "probe", "--model", tiny, "--task",
                 "neg_movie", *FAST, "--log", "tensorboard", "--log-dir", str(logs), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (t,) = json.loads(out)["tasks"]
    meta = json.loads((Path(t["path"]) / "meta.json").read_text())
    train, dev = meta["info"]["train"], meta["info"]["dev"]
    run = logs / "task-neg_movie"                      # the run's label as its name
    assert run.is_dir() and [p.name for p in logs.iterdir()] == ["task-neg_movie"]
    got = scalars(run)
    steps = [s for s, _ in got["train/loss"]]
    assert steps == list(range(1, train["steps"] + 1))       # one point per step
    # the last epoch's loss is the probe's recorded final loss, and it is the example-weighted
    # mean of that epoch's step losses (24 examples: batches of 16 and 8, in some order)
    (_, e1), (_, e2) = got["train/epoch_loss/neg_movie"]
    assert e2 == pytest.approx(train["final_loss"], rel=1e-5)
    last = [v for _, v in got["train/loss"][-2:]]
    assert any(math.isclose((a * last[0] + b * last[1]) / 24, e2, rel_tol=1e-5)
               for a, b in ((16, 8), (8, 16)))
    # the lr of every step follows the warm-up and linear decay of the one schedule
    f = training.linear_schedule(train["steps"], 0.1)
    assert [v for _, v in got["train/lr"]] == pytest.approx(
        [1e-3 * f(s) for s in range(train["steps"])], rel=1e-5)
    assert [v for _, v in got["train/epoch"]] == [1.0, 2.0]
    assert got["dev/accuracy"][-1][1] == pytest.approx(dev["accuracy"], rel=1e-6)
    # a rerun (--force) is a new tracker run beside the first, not mixed into it
    assert main(["--home", str(tmp_path / "home"), "probe", "--model", tiny, "--task",
                 "neg_movie", *FAST, "--log", "tensorboard", "--log-dir", str(logs),
                 "--force", "--json"]) == 0
    assert sorted(p.name for p in logs.iterdir()) == ["task-neg_movie", "task-neg_movie-2"]
    assert len(scalars(logs / "task-neg_movie")["train/loss"]) == train["steps"]


def test_multi_task_run_logs_dev_metrics_per_epoch(tiny, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from gradts_engine.config import RunSettings
    from gradts_engine.mtl import MTLSettings, train_mtl
    from gradts_engine.store import Store
    from gradts_engine.tasks import build_registry

    reg = build_registry(include_user=False, demo_sizes=SIZES)
    with training.tracking("tensorboard", tmp_path / "tb"):
        r = train_mtl(tiny, reg.get("neg_movie"), [reg.get("match_city")],
                      store=Store(tmp_path / "store"), run=RunSettings(device="cpu", seed=3),
                      settings=MTLSettings(epochs=2, batch_size=16, lr=1e-3, max_length=48))
    (run,) = (tmp_path / "tb").iterdir()
    assert run.name.startswith("multi-task-run")
    got = scalars(run)
    assert [v for _, v in got["dev/accuracy"]] == pytest.approx(
        [e.dev_metrics["accuracy"] for e in r.epochs])
    for task in ("neg_movie", "match_city"):
        assert len(got[f"train/epoch_loss/{task}"]) == 2
    assert tracking_mod.current() is None            # the context is left behind cleanly


def test_nothing_is_logged_by_default(tiny, tmp_path, capsys) -> None:
    code = main(["--home", str(tmp_path / "home"), "probe", "--model", tiny, "--task",
                 "neg_movie", *FAST])
    assert code == 0, capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and tracking_mod.current() is None


@pytest.mark.parametrize("kind, modules, hint", [
    ("tensorboard", ("tensorboard", "tensorboardX"), "pip install 'gradts[log]'"),
    ("wandb", ("wandb",), "pip install wandb"),
])
def test_missing_package_is_one_line_before_any_work(tiny, tmp_path, capsys, monkeypatch,
                                                     kind, modules, hint) -> None:
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)     # as if not installed
    home = tmp_path / "home"
    code = main(["--home", str(home), "probe", "--model", tiny, "--task", "neg_movie", *FAST,
                 "--log", kind])
    err = capsys.readouterr().err
    assert code == 1 and hint in err and f"--log {kind} needs" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not list(home.rglob("meta.json"))          # nothing was probed


def test_log_dir_without_log_and_unknown_tracker(tiny, tmp_path, capsys) -> None:
    assert main(["probe", "--model", tiny, "--task", "neg_movie", "--log-dir", "x"]) == 2
    assert "--log-dir is given without --log" in capsys.readouterr().err
    assert main(["probe", "--model", tiny, "--task", "neg_movie", "--log", "tensorbord"]) == 2
    with pytest.raises(Exception, match="did you mean 'tensorboard'"):
        training.check_tracking("tensorbord")


def test_the_cli_choices_are_the_engine_trackers() -> None:
    from gradts_cli.options import Tracker

    assert tuple(t.value for t in Tracker) == training.TRACKERS


def test_wandb_gets_the_run_name_and_its_directory(monkeypatch, tmp_path) -> None:
    """The wandb tracker is started with the run's label as its name, under --log-dir (wandb
    itself reads WANDB_MODE; a recording stand-in replaces Accelerate's call)."""
    monkeypatch.setattr(training, "check_tracking",
                        lambda kind, d=None: training.Tracking(kind, Path(d)))
    calls = {}

    class Acc:
        def init_trackers(self, project, config=None, init_kwargs=None):
            calls.update(project=project, config=config, init=init_kwargs)

    t = training.Trainer.__new__(training.Trainer)
    t.track, t.dtype, t.device = training.Tracking("wandb", tmp_path / "w"), None, "cpu"
    t.plan = training.TrainPlan(total_steps=4, epochs=1, lr=1e-3, weight_decay=0.0, warmup=0.1,
                                label="task 'cola'", task="cola")
    t.accelerator = Acc()
    t._start_tracker()
    assert calls["project"] == "gradts"
    assert calls["init"] == {"wandb": {"name": "task-cola", "dir": str(tmp_path / "w")}}
    assert calls["config"]["task"] == "cola" and calls["config"]["lr"] == 1e-3
