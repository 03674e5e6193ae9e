"""Benchmark P5: `gradts demo` end to end, from a fresh store, against the 3-minute goal.

Runs `gradts --home <fresh temporary dir> demo --json` in a subprocess (so the model load,
the imports and every stage count, as for a user) and prints the time of each stage and the
total against the goal of 3 minutes on a 2-core CPU. The stage times come from the demo's own
JSON output; "wall" is the whole process, start-up included. The store is removed afterwards.

    python benchmarks/demo.py                       # the embedded MiniLM (demo extra)
    taskset -c 0,1 python benchmarks/demo.py        # pin to 2 cores on a bigger machine
    python benchmarks/demo.py --model DIR --json    # another model; machine-readable

Timings on a shared machine are noisy: other processes on the same cores slow every stage.

Measured (issue 7), the default demo (MiniLM from the demo extra's weights, seed 0, primary
match_person) on a 16-core Xeon pinned to 2 cores with `taskset -c 0,1` (torch used 2
threads; the other 14 cores were busy with other runs): data 0.3 s, probe 106.6 s (8 tasks),
corr 0.03 s, trial 31.7 s (baseline + top-1), fg 0.03 s (the trial kept no auxiliary task, so
there was nothing to train), report 0.03 s; demo total 138.8 s, process wall 140.4 s against
the 180 s goal. 6 of 8 planted siblings ranked first. When the trial keeps a task, fg trains
one more run of about the trial's top-1 size (~20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

GOAL_S = 180.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="passed to `gradts demo --model`")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON")
    ap.add_argument("demo_args", nargs="*", help="extra `gradts demo` arguments (after --)")
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="gradts-bench-demo-")
    cmd = [sys.executable, "-m", "gradts_cli.app", "--home", home, "--quiet", "demo", "--json"]
    if args.model:
        cmd += ["--model", args.model]
    cmd += args.demo_args
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return proc.returncode
    res = json.loads(proc.stdout)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch

    m = {"wall_s": wall, "total_s": res["total_s"], "goal_s": GOAL_S, "cores": cores,
         "torch_threads": torch.get_num_threads(), "model": res["model"],
         "recovered": res["recovered"], "tasks": res["tasks"],
         "stages": {s["stage"]: s["seconds"] for s in res["stages"]},
         "settings": res["settings"]}
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    t = Table(title=f"gradts demo from a fresh store ({cores} cores, model {res['model']})",
              title_justify="left")
    for c, j in (("stage", "left"), ("seconds", "right"), ("share", "right"), ("what", "left")):
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    for s in res["stages"]:
        t.add_row(s["stage"], f"{s['seconds']:.1f}", f"{s['seconds'] / res['total_s']:.0%}",
                  s["detail"])
    t.add_row("start-up (imports, model files)", f"{wall - res['total_s']:.1f}", "", "")
    ok = wall <= GOAL_S
    t.add_row("[bold]wall total[/bold]", f"[bold]{wall:.1f}[/bold]", "",
              f"goal {GOAL_S:.0f} s on 2 cores: " + ("[green]met[/green]" if ok else
                                                      "[red]missed[/red]"))
    Console().print(t)
    Console().print(f"planted siblings ranked first: {res['recovered']} of {res['tasks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
