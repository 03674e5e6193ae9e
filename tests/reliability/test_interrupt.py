"""Interrupt (issue 12): SIGINT during probe, trial and fg exits 130 with one line saying that
finished work is cached; the rerun reuses every finished unit and ends with the same results
as an uninterrupted run (bitwise for the stored arrays, same seed, CPU).

Moments are seeded delays over each command's reference wall time, plus one moment chosen
from the progress output (the first line of training), so that at least one interrupt lands
inside torch's training loop.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from .helpers import (
    entry_arrays,
    fg_args,
    probe_args,
    stripped_json,
    tree_digest,
    trial_args,
    world,
)

pytestmark = pytest.mark.slow
CASES = {"probe": (None, probe_args, ("probe",), "fine-tune"),
         "trial": ("probe", trial_args, ("trial", "trial-run"), "alone"),
         "fg": ("trial", fg_args, ("fg", "fg-selection", "trial-run"), "top 50%")}


def _interrupt(c, args, *, delay: float | None = None, on_line: str | None = None):
    p = c.popen(*args)
    if on_line is not None:
        assert p.stderr is not None
        lines = []
        deadline = time.monotonic() + 120
        for line in p.stderr:          # progress lines arrive on stderr
            lines.append(line)
            if on_line in line or time.monotonic() > deadline:
                break
        p.send_signal(signal.SIGINT)
        rest_out, rest_err = p.communicate(timeout=120)
        return p.returncode, "".join(lines) + rest_err
    try:
        p.wait(delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.parametrize("command", list(CASES))
def test_sigint_exits_130_then_rerun_resumes(command, pipeline, tmp_path):
    ref, snaps, times = pipeline
    start, make_args, kinds, marker = CASES[command]
    rng = random.Random(f"sigint-{command}")
    moments = [("line", None)] + [("delay", rng.uniform(1.0, times[command] * 0.9))
                                  for _ in range(2)]
    interrupted = 0
    for i, (how, delay) in enumerate(moments):
        c = world(tmp_path / f"{command}-{i}", ref.model, ref.tasks,
                  start=None if start is None else snaps[start])
        args = make_args(c)
        code, err = _interrupt(c, args, delay=delay, on_line=marker if how == "line" else None)
        assert "Traceback" not in err and "what():" not in err, err[-3000:]
        if code == 0:
            continue                   # finished before the signal: nothing to resume
        interrupted += 1
        assert code == 130, f"SIGINT at {how} {delay}: exit {code}: {err[-2000:]}"
        last = [ln for ln in err.strip().splitlines() if ln.strip()][-1]
        assert "interrupted" in last.lower(), last
        finished = {k: v for k, v in tree_digest(c.home).items()
                    if k.split("/")[0] in kinds}
        r = c.run(*args)
        assert r.returncode == 0, r.stderr[-3000:]
        after = tree_digest(c.home)
        redone = [k for k, v in finished.items() if after.get(k) != v]
        assert not redone, f"finished units were recomputed: {redone[:3]}"
        v = c.run("cache", "verify")
        assert v.returncode == 0, v.stderr
        for kind in kinds:
            got, want = entry_arrays(c.home, kind), entry_arrays(snaps[command], kind)
            assert got.keys() == want.keys()
            for name in got:
                if got[name] != want[name] and name.endswith(".json"):
                    assert stripped_json(c.home / name) == stripped_json(snaps[command] / name)
                assert got[name] == want[name], name
    assert interrupted >= 1, f"no SIGINT landed while {command} ran"
