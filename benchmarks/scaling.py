"""Benchmark 1 process against N processes on the same probe or trial (DESIGN.md §5, SCALE.md).

Two cases, each run as the real command in fresh stores, ``gradts probe ... --json`` against
``gradts probe ... --nproc N``:

- task parallelism: several tasks (each rank probes whole tasks, largest first);
- data parallelism: one task (DDP fine-tuning, the after pass sharded by index).

With ``--stage trial``, the same for ``gradts trial`` (probes computed once, in 1 process, and
copied into both stores): task parallelism with ``--seeds N`` (each set's seeds one per rank),
data parallelism with one seed (every run DDP over all ranks); the difference is the largest
relative difference of the stored runs' epoch losses (same keys, same predictions required).

Reported: wall time of each command (process start, model load and the probe), and the largest
absolute difference over every stored matrix (``during``, ``after``, raw, and the instance
matrices ``R``) between the two stores, which must hold the same keys. Threads are shared
fairly: the 1-process run gets all ``--threads`` cores, each of the N processes
``threads / N``.

    python benchmarks/scaling.py                              # tiny BERT, CPU, 2 processes
    python benchmarks/scaling.py --model minilm --examples 300
    python benchmarks/scaling.py --device cuda --nproc 2     # on 2 GPUs (not 2 sharing one)
    python benchmarks/scaling.py --stage trial --examples 120

On a CPU the N processes share the same cores as the 1 process, so this measures overhead
and equality, not speed-up. The default tiny model has no dropout: with dropout on, the ranks of
a data-parallel run draw other dropout masks than one process does, so its matrices equal one
process's in distribution only (measured: max |diff| 0.15 with dropout 0.1); task parallelism
stays exact (each task is seeded alike).

Measured 2026-12-02 on the project's shared 2-core CPU machine, heavily loaded by other jobs
(load average 13-15 during the run), ``python benchmarks/scaling.py --examples 120``: tiny
BERT 4 layers x 8 heads hidden 128, no dropout, 120 examples per task, 1 epoch, batch 16,
max length 64; 1 process with 2 threads against 2 processes with 1 thread each:

    case                          1 process    2 processes   max |diff|
    task parallel (4 tasks)          137.9s          33.7s        6e-07   (mode: task)
    data parallel (1 task)            47.5s          34.3s      2.4e-07   (mode: data)

The 2-process runs were faster here because one process's 2 threads synchronise badly on an
oversubscribed machine (a run at 200 examples gave 213.6 s against 43.3 s), not because 2
processes have more compute than 2 cores: on an idle machine expect about equal times. These
are not scaling figures. No GPU figure was measured (no GPU machine was available).

``python benchmarks/scaling.py --stage trial --examples 120 --tasks
neg_movie,match_city,topic_home``, the same machine and model, load average 5.6-7.9, trial of
neg_movie over 2 candidates, 1 epoch, lr 1e-3, ``--max-aux 2 --patience 2``:

    case                              1 process  2 processes  max rel diff
    trial, task parallel (2 seeds)        54.4s        22.1s     2.2e-07   (runs: 6, mode: task)
    trial, data parallel (1 seed)         26.9s        20.2s     5.9e-08   (runs: 3, mode: data)

(The task-parallel difference is not 0 because the 1 process ran with 2 threads and each rank
with 1: other float32 reduction orders; with 1 thread each the tests measure it equal.) The
same caveat: 2 processes on 2 cores, not a speed-up figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASKS = "neg_movie,match_city,topic_home,agree_pp"


def run(args: list[str], threads: int) -> tuple[float, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "gradts_cli", *args], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): gradts {' '.join(args)}\n{res.stderr[-3000:]}")
    return seconds, json.loads(res.stdout)


def stored(home: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every probe entry's arrays by its key path (task matrices and instance matrices)."""
    from safetensors.numpy import load_file

    out = {}
    for meta in sorted(home.glob("probe/**/meta.json")):
        info = json.loads(meta.read_text())["info"]
        arrays = dict(load_file(str(meta.parent / "task.safetensors")))
        if info["chunks"]:
            chunks = [load_file(str(meta.parent / c)) for c in info["chunks"]]
            arrays["index"] = np.concatenate([c["index"] for c in chunks])
            arrays["R"] = np.concatenate([c["R"] for c in chunks])
        out[str(meta.parent.relative_to(home))] = arrays
    return out


def max_diff(a: Path, b: Path) -> float:
    sa, sb = stored(a), stored(b)
    if sorted(sa) != sorted(sb):
        sys.exit(f"the stores hold different keys:\n{sorted(sa)}\n{sorted(sb)}")
    worst = 0.0
    for key, arrays in sa.items():
        for name, value in arrays.items():
            if name == "index":
                if not np.array_equal(value, sb[key][name]):
                    sys.exit(f"{key}: the instance indices differ")
                continue
            worst = max(worst, float(np.abs(value - sb[key][name]).max()))
    return worst


def run_losses(home: Path) -> dict[str, tuple[list[dict[str, float]], np.ndarray]]:
    """Every stored multi-task run: key path -> (epoch losses, dev predictions)."""
    from safetensors.numpy import load_file

    out = {}
    for meta in sorted(home.glob("trial-run/**/meta.json")):
        d = json.loads((meta.parent / "result.json").read_text())
        pred = load_file(str(meta.parent / "dev.safetensors"))["predictions"]
        out[str(meta.parent.relative_to(home))] = ([e["train_loss"] for e in d["epochs"]], pred)
    return out


def max_rel_loss_diff(a: Path, b: Path) -> float:
    ra, rb = run_losses(a), run_losses(b)
    if sorted(ra) != sorted(rb) or not ra:
        sys.exit(f"the stores hold different runs:\n{sorted(ra)}\n{sorted(rb)}")
    worst = 0.0
    for key, (losses, pred) in ra.items():
        if not np.array_equal(pred, rb[key][1]):
            sys.exit(f"{key}: the dev predictions differ")
        for ea, eb in zip(losses, rb[key][0], strict=True):
            worst = max([worst, *(abs(ea[t] - eb[t]) / abs(ea[t]) for t in ea)])
    return worst


def trial_cases(a: argparse.Namespace, model: str, tmp: Path) -> None:
    import shutil

    base = tmp / "probed"
    run(["--home", str(base), "probe", "--model", model, "--tasks", a.tasks, "--epochs", "1",
         "--batch-size", "16", "--max-length", "64", "--max-train-examples", str(a.examples),
         "--device", a.device, "--json"], a.threads)
    tasks = a.tasks.split(",")
    common = ["trial", "--model", model, "--primary", tasks[0], "--candidates",
              ",".join(tasks[1:]), "--epochs", str(a.epochs), "--batch-size", "16", "--lr",
              "1e-3", "--max-length", "64", "--max-train-examples", str(a.examples),
              "--device", a.device, "--max-aux", "2", "--patience", "2", "--json"]
    cases = [(f"trial, task parallel ({a.nproc} seeds)", ["--seeds", str(a.nproc)]),
             ("trial, data parallel (1 seed)", ["--seeds", "1"])]
    print(f"{'case':<34}{'1 process':>11}{f'{a.nproc} processes':>15}{'max rel diff':>14}")
    for i, (name, extra) in enumerate(cases):
        one, many = tmp / f"trial-one{i}", tmp / f"trial-many{i}"
        shutil.copytree(base, one)
        shutil.copytree(base, many)
        t1, _ = run(["--home", str(one), *common, *extra], a.threads)
        tn, doc = run(["--home", str(many), *common, *extra, "--nproc", str(a.nproc)],
                      max(1, a.threads // a.nproc))
        modes = {r["parallel"] for r in doc["distributed"]["runs"].values()}
        print(f"{name:<34}{t1:>10.1f}s{tn:>14.1f}s{max_rel_loss_diff(one, many):>14.2g}   "
              f"(runs: {len(run_losses(many))}, mode: {', '.join(sorted(modes))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model path or id (default: a tiny random BERT)")
    ap.add_argument("--tasks", default=TASKS, help="tasks of the task-parallel case")
    ap.add_argument("--examples", type=int, default=200, help="training examples per task")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stage", choices=("probe", "trial"), default="probe")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gradts-scaling-"))
    model = a.model
    if model is None:
        from gradts_engine import models
        from gradts_engine.tasks import demo

        path = models.make_tiny_model(tmp / "tiny", layers=4, heads=8, hidden=128,
                                      words=demo.vocabulary({"train": a.examples}))
        cfg = json.loads((path / "config.json").read_text())   # no dropout: see the docstring
        cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        (path / "config.json").write_text(json.dumps(cfg))
        model = str(path)
    if a.stage == "trial":
        trial_cases(a, model, tmp)
        return
    common = ["probe", "--model", model, "--epochs", str(a.epochs), "--batch-size", "16",
              "--max-length", "64", "--max-train-examples", str(a.examples), "--device",
              a.device, "--json"]
    cases = [(f"task parallel ({len(a.tasks.split(','))} tasks)", ["--tasks", a.tasks]),
             ("data parallel (1 task)", ["--tasks", a.tasks.split(",")[0]])]
    print(f"{'case':<28}{'1 process':>11}{f'{a.nproc} processes':>15}{'max |diff|':>13}")
    for i, (name, tasks) in enumerate(cases):
        one, many = tmp / f"one{i}", tmp / f"many{i}"
        t1, _ = run(["--home", str(one), *common, *tasks], a.threads)
        tn, doc = run(["--home", str(many), *common, *tasks, "--nproc", str(a.nproc)],
                      max(1, a.threads // a.nproc))
        modes = {t["info"].get("distributed", {}).get("parallel") for t in doc["tasks"]}
        print(f"{name:<28}{t1:>10.1f}s{tn:>14.1f}s{max_diff(one, many):>13.2g}   "
              f"(mode: {', '.join(sorted(str(m) for m in modes))})")


if __name__ == "__main__":
    main()
