"""CLI start-up: `gradts --help` against `python -c "import torch"`, measured in one run.

Goal (issue 2): `gradts --help` <= 0.25 s and <= 0.2x the torch import on this machine.
Each command is run REPS times in a fresh process; the median wall time is reported.

    python benchmarks/cli_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPS = 7


def wall(cmd: list[str]) -> float:
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    exe = str(Path(sys.executable).with_name("gradts"))
    env_complete = {**os.environ, "_GRADTS_COMPLETE": "complete_bash",
                    "COMP_WORDS": "gradts probe --task ne", "COMP_CWORD": "4"}
    rows = []
    help_s = wall([exe, "--help"])
    torch_s = wall([sys.executable, "-c", "import torch"])
    t0 = time.perf_counter()
    for _ in range(REPS):
        subprocess.run([exe], env=env_complete, stdout=subprocess.DEVNULL, check=True)
    complete_s = (time.perf_counter() - t0) / REPS
    rows.append(("gradts --help", help_s, help_s / torch_s, "<= 0.25 s and <= 0.2x"))
    rows.append(("tab completion (task names)", complete_s, complete_s / torch_s, "-"))
    rows.append(('python -c "import torch"', torch_s, 1.0, "baseline"))
    t = Table(title=f"CLI start-up (median of {REPS} runs, {os.cpu_count()} cores)")
    for c in ("command", "seconds", "ratio to torch import", "goal"):
        t.add_column(c)
    for name, s, r, goal in rows:
        t.add_row(name, f"{s:.3f}", f"{r:.2f}x", goal)
    Console().print(t)


if __name__ == "__main__":
    main()
