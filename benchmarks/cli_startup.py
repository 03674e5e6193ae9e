"""CLI start-up: `gradts --help` against `python -c "import torch"`, measured in one run.

Goals: `gradts --help` <= 0.25 s and <= 0.2x the torch import on this machine (issue 2); tab
completion of task names <= 0.3 s (issue 16). Each command is run REPS times in a fresh
process after one unmeasured run; the median wall time is reported, with the 1-minute load
average (above the core count, other processes shared the cores and the times are inflated).

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


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    times = []
    for i in range(REPS + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env=env)
        if i:  # the first run warms the file cache
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    exe = str(Path(sys.executable).with_name("gradts"))
    env_complete = {**os.environ, "_GRADTS_COMPLETE": "complete_bash",
                    "COMP_WORDS": "gradts probe --task ne", "COMP_CWORD": "4"}
    rows = []
    help_s = wall([exe, "--help"])
    torch_s = wall([sys.executable, "-c", "import torch"])
    complete_s = wall([exe], env=env_complete)
    rows.append(("gradts --help", help_s, help_s / torch_s, "<= 0.25 s and <= 0.2x"))
    rows.append(("tab completion (task names)", complete_s, complete_s / torch_s, "<= 0.3 s"))
    rows.append(('python -c "import torch"', torch_s, 1.0, "baseline"))
    load = os.getloadavg()[0]
    t = Table(title=f"CLI start-up (median of {REPS} runs, {os.cpu_count()} cores, "
              f"load average {load:.1f})")
    for c in ("command", "seconds", "ratio to torch import", "goal"):
        t.add_column(c)
    for name, s, r, goal in rows:
        t.add_row(name, f"{s:.3f}", f"{r:.2f}x", goal)
    Console().print(t)


if __name__ == "__main__":
    main()
