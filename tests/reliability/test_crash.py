"""Crash at any moment (issue 12): ``kill -9`` a probe, a trial and an fg at seeded moments.

Per command, one store lives through a chain of killed runs: random moments (seeded delays
over the whole run: model load, training, the importance pass, the store write) and injected
moments at the store's own steps (an array half written, meta.json half written, everything
written but not yet renamed into place). After every kill ``gradts cache verify`` must find
nothing wrong; the final run must complete, leave no temporaries, and store results bitwise
equal to an uninterrupted run's (same seed, CPU, one thread).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import Ctx, entry_arrays, fg_args, probe_args, stripped_json, trial_args, world

pytestmark = pytest.mark.slow
INJECT = str(Path(__file__).with_name("inject.py"))
SEED = 20211


def _verify_clean(c: Ctx) -> None:
    r = c.run("cache", "verify", "--json")
    assert "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    assert doc["damaged"] == [] and doc["unrecognised"] == [], doc
    assert r.returncode == 0, r.stderr


def _kill_after(c: Ctx, args: list[str], delay: float) -> bool:
    p = c.popen(*args)
    try:
        p.wait(delay)
        return False                     # finished before the moment came
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        return True
    finally:
        p.communicate()


def _kill_injected(c: Ctx, args: list[str], mode: str, n: int) -> bool:
    p = c.popen(*args, pre=[c.argv()[0], INJECT, mode, str(n)])
    _, err = p.communicate(timeout=300)
    assert p.returncode in (0, -signal.SIGKILL), err[-3000:]
    return p.returncode == -signal.SIGKILL


# (command, the store it starts from, arguments, the kinds whose results are compared)
CASES = {"probe": (None, probe_args, ("probe",)),
         "trial": ("probe", trial_args, ("trial", "trial-run")),
         "fg": ("trial", fg_args, ("fg", "fg-selection", "trial-run"))}
INJECTED = {"probe": [("arrays", 2), ("meta", 1), ("commit", 3)],
            "trial": [("commit", 1), ("arrays", 1), ("meta", 2)],
            "fg": [("meta", 1), ("commit", 2), ("arrays", 1)]}


@pytest.mark.parametrize("command", list(CASES))
def test_kill_9_at_seeded_moments_then_rerun_is_bitwise_equal(command, pipeline, tmp_path):
    ref, snaps, times = pipeline
    start, make_args, kinds = CASES[command]
    c = world(tmp_path / command, ref.model, ref.tasks,
              start=None if start is None else snaps[start])
    args = make_args(c)
    rng = random.Random(f"{SEED}-{command}")
    delays = sorted(rng.uniform(0.5, times[command] * 0.95) for _ in range(4))
    kills = 0
    for delay in delays:
        kills += _kill_after(c, args, delay)
        _verify_clean(c)
    for mode, n in INJECTED[command]:
        kills += _kill_injected(c, args, mode, n)
        _verify_clean(c)
    assert kills >= 5, f"only {kills} of 7 moments hit a running {command}"
    r = c.run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    _verify_clean(c)
    assert not any((c.home / ".tmp").iterdir()), "temporaries left after a complete run"
    for kind in kinds:
        got, want = entry_arrays(c.home, kind), entry_arrays(snaps[command], kind)
        assert got.keys() == want.keys(), f"{kind}: other entries than the uninterrupted run"
        for name in got:
            if got[name] != want[name] and name.endswith(".json"):
                assert stripped_json(c.home / name) == stripped_json(snaps[command] / name)
            assert got[name] == want[name], f"{name} differs from the uninterrupted run"
