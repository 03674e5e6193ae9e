"""``gradts trial`` end to end on a tiny random model (mechanics only, DESIGN.md §7).

Probe entries are written directly into the store (format in gradts_engine/results.py), so
these tests do not depend on the probe; the demo suite is shrunk to train 48 / dev 24 /
test 24 examples per task.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradts_cli.app import main
from gradts_engine.store import Store

torch = pytest.importorskip("torch")

SIZES = {"train": 48, "dev": 24, "test": 24}
PRIMARY = "neg_movie"
CANDS = ["neg_product", "topic_news"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    from gradts_engine.models import make_tiny_model
    from gradts_engine.tasks import demo

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), words=demo.vocabulary(SIZES)))


@pytest.fixture(autouse=True)
def small_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradts_cli import options
    from gradts_engine.tasks import build_registry

    monkeypatch.setattr(options.State, "registry",
                        lambda self: build_registry(self.tasks_files, include_user=False,
                                                    demo_sizes=SIZES))


def write_probe(store: Store, model: str, task: str, vec: np.ndarray, L: int, H: int) -> None:
    from gradts_engine import results
    from gradts_engine.models import resolve_model

    key = results.probe_key(store, model_cache_id=resolve_model(model).cache_id,
                            model_name=model, task=task, task_fingerprint={"name": task},
                            data_fingerprint="x", measure="gate", settings={})
    m = np.asarray(vec, dtype=np.float32).reshape(L, H)
    with store.writer(key, info={"task_name": task, "model_name": model, "num_layers": L,
                                 "num_heads": H, "num_instances": 0, "chunks": []}) as w:
        w.save_arrays("task", {"during": m, "after": m})


def _probe(store_root, model: str, tasks) -> None:
    store = Store(store_root)
    x = np.arange(32, dtype=np.float64)
    for k, t in enumerate(tasks):
        y = x.copy()
        for j in range(k):
            y[[2 * j, 2 * j + 1]] = y[[2 * j + 1, 2 * j]]
        write_probe(store, model, t, y, L=2, H=16)


ARGS = ["trial", "--primary", PRIMARY, "--candidates", ",".join(CANDS), "--epochs", "1",
        "--max-length", "48", "--batch-size", "16", "--lr", "1e-3", "--device", "cpu"]


def test_trial_json_end_to_end_and_resume(tiny, store_root, capsys) -> None:
    _probe(store_root, tiny, [PRIMARY, *CANDS])
    assert main([*ARGS, "--model", tiny, "--patience", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["primary"] == PRIMARY and out["main_metric"] == "accuracy"
    assert [r["task"] for r in out["ranking"]] == CANDS
    assert [t["aux"] for t in out["trials"]] == [[], CANDS[:1], CANDS]
    for t in out["trials"]:
        assert 0.0 <= t["mean"] <= 1.0 and t["cached"] == [False]
        assert t["report"]["test"]["accuracy"] is not None
    assert out["trained"] == 3 and out["baseline"]["aux"] == []
    assert isinstance(out["verdict"]["message"], str) and out["holdout"][0]["kind"] == "test"
    # the same command again: every trial comes from the ledger
    assert main([*ARGS, "--model", tiny, "--patience", "2", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["trained"] == 0
    assert [t["cached"] for t in again["trials"]] == [[True]] * 3
    assert again["selected"] == out["selected"]
    # the human report: the table, the selected set and the verdict
    assert main([*ARGS, "--model", tiny, "--patience", "2"]) == 0
    cap = capsys.readouterr()
    assert "baseline" in cap.out and "(primary alone)" in cap.out and "selected" in cap.out
    assert "test split" in cap.out


def test_missing_probe_exit_code_and_command(tiny, store_root, capsys) -> None:
    _probe(store_root, tiny, [PRIMARY, CANDS[0]])
    assert main([*ARGS, "--model", tiny]) == 9
    err = capsys.readouterr().err
    assert "gradts probe" in err and CANDS[1] in err
    assert len(err.strip().splitlines()) <= 2   # one line (may wrap once)


@pytest.mark.parametrize("extra", [["--compare", "best"], ["--estimator", "later"]])
def test_usage_errors(tiny, extra, capsys) -> None:
    assert main([*ARGS, "--model", tiny, *extra]) == 2
    assert "error:" in capsys.readouterr().err


def test_no_primary_is_a_usage_error(tiny, capsys) -> None:
    assert main(["trial", "--model", tiny, "--suite", "demo"]) == 2
    assert "--primary" in capsys.readouterr().err
