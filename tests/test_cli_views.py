"""The views: chance-level flags, a trial whose rows are all the same, the demo's recovery line,
the pickers asking again, plural wording, and progress that ends complete (issue 11)."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace as NS

import pytest
from rich.console import Console

from gradts_cli import output
from gradts_cli.views import demo as demo_view
from gradts_cli.views import probe as probe_view
from gradts_cli.views import trial as trial_view
from gradts_cli.views.widgets import at_chance, plural
from gradts_engine.progress import Progress, Stage


def render(*items: object, width: int = 160) -> str:
    con = Console(file=io.StringIO(), width=width, color_system=None)
    for item in items:
        con.print(item)
    return con.file.getvalue()  # type: ignore[attr-defined]


def test_at_chance_against_two_standard_errors() -> None:
    # accuracy, 2 classes, n = 200: chance 0.5, two standard errors 0.0707
    assert at_chance("accuracy", 0.52, n=200, n_classes=2)
    assert at_chance("accuracy", 0.57, n=200, n_classes=2)
    assert not at_chance("accuracy", 0.58, n=200, n_classes=2)
    assert not at_chance("accuracy", 0.41, n=200, n_classes=3)   # 1/3 + 0.067 = 0.400
    assert at_chance("accuracy", 0.39, n=200, n_classes=3)
    margin = 2 / math.sqrt(400)
    assert at_chance("matthews", margin - 1e-9, n=400)
    assert not at_chance("matthews", margin + 1e-9, n=400)
    assert at_chance("pearson", -0.03)              # no n: margin 0.05
    assert not at_chance("f1", 0.0, n=200)          # F1's chance level depends on the balance
    assert not at_chance("accuracy", None)


def test_plural_never_says_task_s() -> None:
    assert plural(1, "task") == "1 task" and plural(2, "task") == "2 tasks"
    assert plural(1, "entry", "entries") == "1 entry" and plural(0, "entry", "entries") == \
        "0 entries"


def _line(task: str, dev: float | None, metric: str = "accuracy") -> probe_view.ProbeLine:
    return probe_view.ProbeLine(task=task, examples=600, train_loss=0.3, metric=metric, dev=dev,
                                dev_n=200, n_classes=2, seconds=7.5, cached=True, device="cpu",
                                settings="1 epoch, lr 0.0001, batch 16, max length 48, seed 0",
                                key=f"probe/minilm/{task}/abc")


def test_probe_table_flags_a_dev_score_at_chance() -> None:
    text = render(probe_view.probe_table([_line("neg_movie", 0.91), _line("agree_pp", 0.52)],
                                         "probe"))
    assert "0.520*" in text and "0.910*" not in text
    assert "at chance level" in text and "agree_pp" in text.split("at chance level")[1]
    assert "7.5 s" in text  # a cached probe shows its recorded compute time, not 0.0 s


def _rec(aux: tuple[str, ...], role: str, mean: float) -> NS:
    return NS(aux=aux, role=role, mean=mean, std=0.0, best_epochs=(1,), seconds=1.0,
              cached=(False,), all_cached=False,
              label=" + ".join(aux) if aux else "(primary alone)")


def _summary(means: list[float]) -> NS:
    recs = [_rec(tuple(f"t{i}" for i in range(k)), "baseline" if k == 0 else "prefix", m)
            for k, m in enumerate(means)]
    return NS(seeds=(0,), ranking=[NS(task=f"t{i}", stat=0.5, rank=i + 1)
                                   for i in range(len(means))],
              main_metric="accuracy", trials=recs, comparisons=(), selected=(),
              settings={"epochs": 1}, primary="p", stop_reason="stopped")


def test_a_trial_where_every_row_is_identical_says_so() -> None:
    text = " ".join(render(*trial_view.trials_table(_summary([0.5, 0.5, 0.5]),
                                                    n_classes=2)).split())
    assert "every trial scored exactly 0.5000" in text and "does not test the ranking" in text
    text = " ".join(render(*trial_view.trials_table(_summary([0.81, 0.84, 0.80]),
                                                    n_classes=2)).split())
    assert "every trial scored" not in text and "*" not in text


def test_trial_rows_at_chance_are_flagged() -> None:
    text = " ".join(render(*trial_view.trials_table(_summary([0.50, 0.86]),
                                                    n_classes=2)).split())
    assert "0.5000*" in text and "0.8600*" not in text and "at chance level" in text


def test_demo_recovery_line_names_the_tasks_never_learned() -> None:
    rows = [NS(task=t, ok=True, dev_score=d) for t, d in
            [("neg_movie", 0.95), ("agree_pp", 0.52), ("agree_rc", 0.49), ("topic_news", 0.9)]]
    res = NS(siblings=rows, recovered=4, settings=NS(dev_size=200))
    text = demo_view.recovered_line(res).plain
    assert text.startswith("4 of 4 planted siblings ranked first")
    assert "never learned by the probe: agree_pp (dev 0.52), agree_rc (dev 0.49)" in text
    assert "2 of the 4 count tasks at chance level" in text
    assert "neg_movie" not in text


def test_probe_picker_asks_again_after_a_typo(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["neg_moive", "", "neg_movie, agree_pp"])
    names, suite = probe_view.choose_tasks(["neg_movie", "agree_pp"], {"demo": ["neg_movie"]},
                                           ask=lambda: next(answers))
    assert (names, suite) == (["neg_movie", "agree_pp"], None)
    err = capsys.readouterr().err
    assert "unknown task 'neg_moive'" in err and "did you mean 'neg_movie'?" in err
    answers = iter(["demo"])
    assert probe_view.choose_tasks(["neg_movie"], {"demo": ["neg_movie"]},
                                   ask=lambda: next(answers)) == ([], "demo")


def test_trial_picker_offers_probed_tasks_and_asks_again(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    answers = iter(["neg_moive", "9", "2"])
    assert trial_view.choose_primary(["agree_pp", "neg_movie"],
                                     ask=lambda: next(answers)) == "neg_movie"
    err = capsys.readouterr().err
    assert "probed tasks" in err and "did you mean 'neg_movie'?" in err
    from gradts_engine.errors import UsageError

    with pytest.raises(UsageError):
        trial_view.choose_primary(["a"], ask=lambda: "b")


def test_trial_without_primary_on_a_terminal_offers_probed_tasks(
        monkeypatch: pytest.MonkeyPatch, store_root: object) -> None:
    """``gradts trial`` with no --primary asks (on a TTY) among the tasks probed with the
    model, then carries on with the answer (here: an unknown candidate stops it right after)."""
    from gradts_cli.app import main
    from gradts_cli.commands import trial as trial_cmd

    monkeypatch.setattr(output, "is_interactive", lambda: True)
    monkeypatch.setattr(trial_cmd, "probed_task_names", lambda *a: ["neg_movie", "neg_product"])
    asked: list[list[str]] = []
    monkeypatch.setattr(trial_view, "choose_primary", lambda probed: asked.append(probed)
                        or "neg_movie")
    code = main(["trial", "--model", "some/model", "--candidates", "nope_task"])
    assert asked == [["neg_movie", "neg_product"]] and code == 3


def test_demo_progress_ends_every_stage_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached demo: no "corr 0/1", "fg 2/1" or "report 0/1" in the final bars."""
    con = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    monkeypatch.setattr(output, "err", con)
    events = []
    for i, (stage, units, inner) in enumerate([
            ("data", 2, [Progress(Stage.DATA, task="a", done=1, total=2),
                         Progress(Stage.DATA, task="b", done=2, total=2)]),
            ("probe", 2, [Progress(Stage.CACHED, task="a"), Progress(Stage.CACHED, task="b")]),
            ("corr", 1, []),
            ("trial", 2, [Progress(Stage.TRIAL_RUN, message="a alone",
                                   metrics={"accuracy": 0.5, "cached": 1.0})]),
            ("fg", 1, [Progress(Stage.FG_RUN, message="cut", metrics={"accuracy": 0.5}),
                       Progress(Stage.FG_RUN, message="alone", metrics={"accuracy": 0.5})]),
            ("report", 1, [])]):
        events.append(Progress(Stage.DEMO, done=i, total=6, message=stage,
                               metrics={"units": float(units)}))
        events += inner
    events.append(Progress(Stage.DEMO, done=6, total=6, message="done"))
    with demo_view.progress() as on_event:
        for e in events:
            on_event(e)
    import re

    frame = con.file.getvalue().rsplit("data ", 1)[-1]  # type: ignore[attr-defined]
    counts = dict(re.findall(r"(corr|trial|fg|report|probe)\s.*?(\d+/\d+)", frame))
    assert counts == {"probe": "2/2", "corr": "1/1", "trial": "1/1", "fg": "2/2",
                      "report": "1/1"}, frame[-1500:]


def test_probe_progress_says_task_k_of_n_with_an_eta(capsys: pytest.CaptureFixture[str]) -> None:
    with probe_view.progress(3) as on_event:
        on_event(Progress(Stage.CACHED, task="a", message="probe/m/a/1"))
        on_event(Progress(Stage.DONE, task="b", metrics={"seconds": 10.0}))
        on_event(Progress(Stage.DONE, task="c", metrics={"seconds": 20.0}))
    err = capsys.readouterr().err
    assert "task 1 of 3: a: cached, reused (probe/m/a/1)" in err
    assert "task 2 of 3: b probed in 10.0 s; about 10.0 s left" in err  # 1 left x 10 s
    assert "task 3 of 3: c probed in 20.0 s\n" in err  # nothing left: no ETA
