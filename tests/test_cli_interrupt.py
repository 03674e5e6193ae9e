"""Ctrl-C: a real SIGINT to ``gradts probe / trial / fg / demo`` in a subprocess exits 130 with
one line saying what finished, what did not, and that a rerun resumes (issue 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from gradts_cli.app import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--batch-size", "4", "--max-length", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny model and a store with three demo tasks probed (what trial and fg read)."""
    from gradts_engine import models
    from gradts_engine.tasks import demo

    tiny = str(models.make_tiny_model(tmp_path_factory.mktemp("tiny"),
                                      words=demo.vocabulary({"train": 40})))
    home = tmp_path_factory.mktemp("home")
    code = main(["--home", str(home), "-q", "probe", "--model", tiny, "--task", "neg_movie",
                 "--task", "neg_product", "--task", "topic_news", "--epochs", "1",
                 "--max-train-examples", "24", *SMALL])
    assert code == 0
    return tiny, home


def interrupt(args: list[str], wait_for: str, home: Path) -> tuple[int, str]:
    """Run ``gradts ARGS``, send SIGINT once stderr shows ``wait_for``; (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADTS_HOME": str(home)}
    p = subprocess.Popen([sys.executable, "-m", "gradts_cli.app", *args], env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    seen = rest = ""
    try:
        while wait_for not in seen:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
        if wait_for in seen:
            p.send_signal(signal.SIGINT)
        rest = p.stderr.read()
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, seen + rest


@pytest.fixture(scope="module")
def interrupted(probed: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, tuple[int, str]]:
    """The four long commands, started together (they mostly wait), each interrupted once it
    is under way: command -> (exit code, stderr)."""
    from concurrent.futures import ThreadPoolExecutor

    tiny, home = probed
    fresh = tmp_path_factory.mktemp("fresh")
    demo_home = tmp_path_factory.mktemp("demo")
    runs = {
        "probe": (["probe", "--model", tiny, "--task", "agree_pp", "--task", "agree_rc",
                   "--epochs", "50", *SMALL], "fine-tune agree_pp", fresh),
        "trial": (["trial", "--model", tiny, "--primary", "neg_movie", "--candidates",
                   "neg_product,topic_news", "--epochs", "30", *SMALL], "training ", home),
        "fg": (["fg", "--model", tiny, "--primary", "neg_movie", "--aux", "neg_product",
                "--keep-fraction", "0.5", "--epochs", "30", *SMALL], "training ", home),
        "demo": (["--home", str(demo_home), "demo", "--model", tiny, "--train-size", "400",
                  "--epochs", "20", "--batch-size", "4", "--max-length", "32", "--device",
                  "cpu"], "▶ probe", demo_home),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(interrupt, *run) for name, run in runs.items()}
        return {name: f.result() for name, f in futures.items()}


def _last_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("command", ["probe", "trial", "fg", "demo"])
def test_ctrl_c_exits_130_with_one_line(interrupted: dict[str, tuple[int, str]],
                                        command: str) -> None:
    code, err = interrupted[command]
    assert code == 130, err[-800:]
    line = _last_line(err)
    assert line.startswith("error: interrupted: "), line
    assert "run the same command again to resume" in line
    assert "Traceback" not in err and err.count("interrupted") == 1


def test_the_line_says_what_did_not_finish(interrupted: dict[str, tuple[int, str]]) -> None:
    probe = _last_line(interrupted["probe"][1])
    assert "no task finished; agree_pp was not finished (a rerun starts it again)" in probe
    trial = _last_line(interrupted["trial"][1])
    assert "no trial run finished; neg_movie" in trial and "was not finished" in trial
