"""results.load_results picks probes of one settings group; never mixes recipes silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradts_engine import results
from gradts_engine.errors import IncompatibleResultsError, MissingResultError
from gradts_engine.store import Store


def _probe(st: Store, task: str, epochs: int, value: float, model: str = "/m") -> None:
    key = results.probe_key(st, model_cache_id=model, model_name="m", task=task,
                            task_fingerprint={"name": task}, data_fingerprint="d",
                            measure="gate", settings={"epochs": epochs})
    with st.writer(key, {"task_name": task, "model_name": "m", "num_layers": 2,
                         "num_heads": 3, "num_instances": 0, "chunks": []}) as w:
        m = np.full((2, 3), value, np.float32)
        w.save_arrays("task", {"during": m, "after": m})


def test_newest_complete_settings_group_is_used(tmp_path: Path) -> None:
    st = Store(tmp_path)
    _probe(st, "a", 1, 1.0)
    _probe(st, "b", 1, 2.0)
    _probe(st, "a", 3, 3.0)  # newer, but b has no epochs=3 probe
    got = results.load_results(st, "m", ["a", "b"])
    assert [r.settings["epochs"] for r in got] == [1, 1]
    assert got[0].matrix("during")[0, 0] == 1.0
    _probe(st, "b", 3, 4.0)
    got = results.load_results(st, "m", ["a", "b"])
    assert [r.settings["epochs"] for r in got] == [3, 3]


def test_no_common_settings_falls_back_to_newest_of_each(tmp_path: Path) -> None:
    st = Store(tmp_path)
    _probe(st, "a", 1, 1.0)
    _probe(st, "b", 2, 1.0)
    _probe(st, "a", 5, 1.0)
    got = results.load_results(st, "m", ["a", "b"])
    assert [r.settings["epochs"] for r in got] == [5, 2]


def test_different_models_are_never_compared(tmp_path: Path) -> None:
    st = Store(tmp_path)
    _probe(st, "a", 1, 1.0, model="/m")
    _probe(st, "b", 1, 1.0, model="/m@other")
    with pytest.raises(IncompatibleResultsError):
        results.load_results(st, "m", ["a", "b"])


def test_missing_task_names_the_probe_command(tmp_path: Path) -> None:
    st = Store(tmp_path)
    _probe(st, "a", 1, 1.0)
    with pytest.raises(MissingResultError) as e:
        results.load_results(st, "m", ["a", "zz"])
    assert "gradts probe --model m --task zz" in (e.value.hint or "")


def test_instances_of_a_probe_without_them_name_the_rerun(tmp_path: Path) -> None:
    st = Store(tmp_path)
    _probe(st, "a", 1, 1.0)  # written with no instance chunks (like --no-instances)
    r = results.load_result(st, "m", "a")
    for call in (r.instances, r.iter_instances):
        with pytest.raises(MissingResultError, match="--no-instances"):
            call()
