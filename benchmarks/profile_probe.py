"""Where the time of one demo probe goes: model load, tokenisation, fine-tuning, after pass, ...

Runs :func:`gradts_engine.probe.probe_tasks` on demo tasks with the demo's settings (600
training examples, 1 epoch, batch 16, lr 1e-4, max length 48, the bundled MiniLM) in a fresh
temporary store, and times every stage with ``time.perf_counter`` by wrapping the engine
functions that do the work (inclusive wall time of each call; nothing else is changed):

    resolve      models.resolve_model + read_config + load_tokenizer (once per run)
    data         data.load_split (the demo generator; train and dev)
    tokenise     data.encode_split (train and dev; cached in the store per split)
    model load   models.build_task_model (pretrained encoder from disk + seeded head)
    fine-tune    the training loop (gates open: the ``during`` estimator)
    dev eval     the fine-tuned probe on the dev split
    after pass   the per-example importance pass (instance matrices R_i)
    store write  EntryWriter.save_arrays + commit (checksums, atomic rename)

"rest" is the probe's wall time minus the top-level stages (keys, fingerprints, locks, reading
the result back). The first task of a run also pays the one-time costs (imports happen before
the clock starts). ``--cprofile N`` additionally prints the N functions of largest cumulative
time from ``cProfile`` (its own overhead inflates Python-heavy parts).

    python benchmarks/profile_probe.py                         # match_person, topic_news
    python benchmarks/profile_probe.py --task neg_movie --no-instances
    python benchmarks/profile_probe.py --threads 1 --json
    python benchmarks/profile_probe.py --per-batch --threads 1   # one batch of each kind

``--per-batch`` times, in alternating rounds, one training step (gates open), one after-pass
batch (per-example gate gradients, parameters frozen as in the pass) and one no-grad forward of
the MiniLM on a fixed batch (``--batch`` x ``--tokens``), with the wall and CPU seconds of each
(CPU above wall x threads' share shows threads spin-waiting).

Timings on a shared machine are noisy: say how loaded it was when quoting them.

Measured (issue 16) on this project's shared 2-core machine while other sessions' test runs
held the 1-minute load average at 4-15, so only the shares and paired ratios mean anything:

- ``--task match_person`` (600 examples, 2 threads, load 4.6): fine-tune 11.2 s, after pass
  48.2 s, dev eval 1.2 s, model load 1.6 s (0.06 s for the next task: the files are cached),
  resolve 0.9 s, tokenise 0.16 s, store write 0.04 s. ``--task neg_movie --train-size 48``
  (load 12.7): fine-tune 52%, dev eval 22%, after pass 13%, model load 8%, resolve 4%.
  Single runs under load swing by several times (the same after pass ran at 4-21 ex/s), so
  the paired figure below is the one to use.
- Per batch (what ``--per-batch --threads 1`` times, measured with the same calls in a
  script before the option existed; 16 x 40 tokens, 6 alternating rounds, load about 8):
  training step 1.29 s, after-pass batch (per-example gate gradients) 0.51 s = 0.40x a
  training step (0.60 s with the parameters frozen, as the pass now does: within the noise),
  no-grad forward 0.27 s (after pass / forward = 1.9x). So with one epoch the after pass is
  about 28% of the probe's compute (0.51 / (1.29 + 0.51)); model load, tokenisation and
  store writes are below 5%.
- The ``gradts demo`` of this version at ``--train-size 32`` (benchmarks/demo.py, load 6.7
  to 9.3): probe 82% of the wall time (fine-tune 59%, after pass 15%, rest 6%), trial 16%.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# (stage, module, attributes): every existing attribute of a stage is wrapped
STAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("resolve", "gradts_engine.models", ("resolve_model", "read_config", "load_tokenizer")),
    ("data", "gradts_engine.data", ("load_split",)),
    ("tokenise", "gradts_engine.data", ("encode_split",)),
    ("model load", "gradts_engine.models", ("build_task_model",)),
    ("fine-tune", "gradts_engine.probe", ("fine_tune",)),
    ("dev eval", "gradts_engine.probe", ("_dev_metrics", "dev_metrics")),
    ("after pass", "gradts_engine.probe", ("after_pass", "importance_pass")),
    ("store write", "gradts_engine.store", ("EntryWriter.save_arrays", "EntryWriter.commit")),
)


class StageClock:
    """Exclusive wall time per stage: a stage entered inside another (say the store write of
    the instance chunks inside the after pass) is taken out of the outer one; re-entering the
    same stage counts once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []      # [stage, start, time spent in inner stages]
        self.missing: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._stack and self._stack[-1][0] == stage:
                return fn(*args, **kwargs)
            frame = [stage, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = time.perf_counter() - frame[1]
                self.seconds[stage] += spent - frame[2]
                self.calls[stage] += 1
                if self._stack:
                    self._stack[-1][2] += spent
        return timed

    def install(self) -> None:
        for stage, mod_name, attrs in STAGES:
            mod = importlib.import_module(mod_name)
            found = False
            for attr in attrs:
                owner: Any = mod
                *path, name = attr.split(".")
                for p in path:
                    owner = getattr(owner, p, None)
                if owner is None or not hasattr(owner, name):
                    continue
                found = True
                orig = getattr(owner, name)
                setattr(owner, name, self.wrap(stage, orig))
                self._undo.append(functools.partial(setattr, owner, name, orig))
            if not found:
                self.missing.append(f"{stage} ({mod_name}.{'/'.join(attrs)})")

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


@contextlib.contextmanager
def clocked() -> Iterator[StageClock]:
    clock = StageClock()
    clock.install()
    try:
        yield clock
    finally:
        clock.remove()


def profile_one(task: str, args: argparse.Namespace) -> dict[str, Any]:
    from gradts_engine import models
    from gradts_engine.config import ProbeSettings, RunSettings
    from gradts_engine.probe import probe_tasks
    from gradts_engine.store import Store
    from gradts_engine.tasks import build_registry

    model = args.model or str(models.demo_model_path())
    registry = build_registry(include_user=False, demo_seed=0,
                              demo_sizes={"train": args.train_size, "dev": 200, "test": 200})
    spec = registry.get(task)
    run = RunSettings(model=model, device="cpu", precision="fp32", seed=args.seed)
    settings = ProbeSettings(measure="gate", epochs=1, batch_size=16, lr=1e-4, max_length=48,
                             instances=not args.no_instances)
    with tempfile.TemporaryDirectory(prefix="gradts-profile-") as home:
        store = Store(home)
        prof = None
        if args.cprofile:
            import cProfile

            prof = cProfile.Profile()
        with clocked() as clock:
            t0 = time.perf_counter()
            if prof is not None:
                prof.enable()
            out = probe_tasks(model, [spec], store=store, run=run, probe=settings)
            if prof is not None:
                prof.disable()
            wall = time.perf_counter() - t0
        info = out.outcomes[0].result.info
    top = sum(clock.seconds.values())
    row = {"task": task, "wall_s": wall, "stages": dict(clock.seconds),
           "calls": dict(clock.calls), "rest_s": wall - top, "missing": clock.missing,
           "fine_tune_examples_per_s": info["timings"].get("examples_per_s"),
           "importance_examples_per_s": info["timings"].get("importance_examples_per_s"),
           "dev": (info.get("dev") or {}).get("main"), "instances": args.train_size}
    if prof is not None:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(args.cprofile)
        row["cprofile"] = buf.getvalue()
    return row


def per_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Median wall and CPU seconds of a training step, an after-pass batch, a forward."""
    import resource
    import statistics

    import torch

    from gradts_engine import heads, importance, models, probe

    ref = models.resolve_model(args.model or str(models.demo_model_path()))
    net = probe._single_task_module(models.build_task_model(ref, {"t": 2}, seed=0), "t")
    layout = heads.head_layout(net)
    g = torch.Generator().manual_seed(0)
    B, T = args.batch, args.tokens
    batch = {"input_ids": torch.randint(1000, 5000, (B, T), generator=g),
             "attention_mask": torch.ones(B, T, dtype=torch.long),
             "labels": torch.randint(0, 2, (B,), generator=g)}
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)

    def loss_fn(out: Any, b: Any) -> Any:
        return models.per_example_loss(out, b["labels"], "classification")     # (B,)

    def train_step() -> None:
        net.train()
        with heads.HeadGates(net, layout) as gates:
            gates.open(B)                                                      # (B, L, H)
            loss = loss_fn(net(**inputs), batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def after_batch() -> None:
        net.eval()
        with heads.HeadGates(net, layout) as gates, importance.frozen_parameters(net):
            heads.gate_importance(net, batch, loss_fn, gates)                  # (B, L, H)

    def forward() -> None:
        net.eval()
        with torch.no_grad():
            net(**inputs)

    fns = {"training step": train_step, "after-pass batch": after_batch,
           "no-grad forward": forward}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()                                                                    # warm-up
    for _ in range(args.rounds):
        for k, f in fns.items():
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            f()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    med = {k: statistics.median(v) for k, v in wall.items()}
    return {"batch": B, "tokens": T, "rounds": args.rounds, "wall_s": med,
            "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "after_over_train": med["after-pass batch"] / med["training step"],
            "after_over_forward": med["after-pass batch"] / med["no-grad forward"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", action="append", help="demo task (repeatable); default "
                    "match_person and topic_news")
    ap.add_argument("--model", help="model directory (default: the bundled MiniLM)")
    ap.add_argument("--train-size", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-instances", action="store_true", help="probe with instances=False")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N")
    ap.add_argument("--per-batch", action="store_true", help="time one batch of each kind")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.per_batch:
        res = per_batch(args)
        res.update(torch_threads=torch.get_num_threads(), load_avg_1min=os.getloadavg()[0])
        print(json.dumps(res, indent=2))
        return 0
    rows = [profile_one(t, args) for t in (args.task or ["match_person", "topic_news"])]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = {"cores": cores, "torch_threads": torch.get_num_threads(),
            "load_avg_1min_before_end": load}
    if args.json:
        print(json.dumps({**head, "rows": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    for r in rows:
        t = Table(title=f"probe of {r['task']} ({r['instances']} train examples; {cores} cores, "
                  f"{head['torch_threads']} torch threads, load avg {load:.1f})",
                  title_justify="left")
        for c, j in (("stage", "left"), ("seconds", "right"), ("share", "right"),
                     ("calls", "right")):
            t.add_column(c, justify=j)  # type: ignore[arg-type]
        for s, _m, _a in STAGES:
            if s in r["stages"]:
                sec = r["stages"][s]
                t.add_row(s, f"{sec:.2f}", f"{sec / r['wall_s']:.0%}", str(r["calls"][s]))
        t.add_row("rest", f"{r['rest_s']:.2f}", f"{r['rest_s'] / r['wall_s']:.0%}", "")
        t.add_row("[bold]probe wall[/bold]", f"[bold]{r['wall_s']:.2f}[/bold]", "", "")
        con.print(t)
        con.print(f"fine-tune {r['fine_tune_examples_per_s']} ex/s, after pass "
                  f"{r['importance_examples_per_s']} ex/s, dev {r['dev']}")
        if r["missing"]:
            con.print("[yellow]not found (not timed):[/yellow] " + ", ".join(r["missing"]))
        if "cprofile" in r:
            con.print(r["cprofile"], markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
