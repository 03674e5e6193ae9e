"""Probe in several processes (DESIGN.md §5; :mod:`distributed`): task and data parallelism.

With at least as many tasks to compute as ranks, every rank probes whole tasks, largest first
(longest-processing-time order by training tokens x epochs, :func:`distributed.assign_lpt`);
each task's entry is written by the rank that probed it, under the key's lock. With fewer tasks
than ranks, all ranks probe each task together: DDP fine-tuning with the effective batch of one
process, the `during` gate gradients summed over ranks, the `after` pass sharded by dataset
index and merged by index; rank 0 alone writes the entry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import results
from .probe import ProbeOutcome, ProbeRun, cached_outcome, compute, probe_one
from .probe_context import ProbeContext, check_labels, probe_key
from .progress import ProgressFn, Stage, emit
from .tasks.spec import TaskSpec


def pending_cost(ctx: ProbeContext, spec: TaskSpec, force: bool) -> int:
    """Training tokens x epochs of ``spec``'s probe (its LPT cost), or -1 when it is cached.

    Tokenising here is not wasted: the tokens are cached for the rank that probes the task.
    """
    from . import data

    if not force and ctx.store.exists(probe_key(ctx, spec)):
        return -1
    split = data.load_split(spec, "train", store=ctx.store,
                            max_examples=ctx.probe.max_train_examples)
    if not force and ctx.store.exists(probe_key(ctx, spec)):  # a Hub revision known only now
        return -1
    enc = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                            max_length=ctx.max_length, store=ctx.store)
    return int(enc.input_ids.size) * ctx.probe.epochs


def probe_parallel(ctx: ProbeContext, model: str, tasks: Sequence[TaskSpec], *, force: bool,
                    progress: ProgressFn | None) -> ProbeRun:
    """Task parallelism: every rank probes whole tasks, largest first (LPT by tokens).

    Each rank measures the cost of every W-th task, all ranks agree on the costs and compute
    the same assignment (:func:`distributed.assign_lpt`); each task is written by the rank
    that probed it, under the key's lock. With fewer tasks to compute than ranks, all ranks
    probe each task together instead (:func:`probe_one_dp`: data parallelism). Every rank
    returns the whole run (read back from the store); rank 0's ``progress`` sees its own
    tasks, and a ``done`` event for each task of the other ranks as it finishes (posted to a
    :class:`distributed.Board` in the store, read between rank 0's own tasks and while it waits).
    """
    import torch

    from . import distributed

    world = ctx.world
    if ctx.device.type == "cuda":
        ctx.device = torch.device("cuda", world.local_rank)
    distributed.check_same_store(world, ctx.store.root)
    mine = {str(i): pending_cost(ctx, tasks[i], force)
            for i in range(world.rank, len(tasks), world.size)}
    costs = [0] * len(tasks)
    for part in distributed.all_gather_json(world, mine):
        for i, cost in part.items():
            costs[int(i)] = int(cost)
    pending = [i for i, c in enumerate(costs) if c >= 0]
    seconds: dict[str, float] = {}
    entries: dict[int, Any] = {}              # other ranks' tasks already in this progress

    def show_done(i: int, secs: float) -> None:   # another rank's task: its entry, one event
        entries[i] = ctx.store.entry(probe_key(ctx, tasks[i]), verify=False)
        emit(progress, Stage.DONE, task=tasks[i].name, done=1, total=1,
             message=str(entries[i].path), metrics={"seconds": secs})

    def show(events: list[dict[str, Any]]) -> None:   # rank 0: the others' finished tasks
        for ev in events:
            show_done(int(ev["i"]), float(ev["seconds"]))

    task_parallel = len(pending) >= world.size
    if task_parallel:                         # task parallelism: whole tasks, largest first
        plan = distributed.assign_lpt([costs[i] for i in pending], world.size)
        board = distributed.Board.open(world, ctx.store.root)

        for j in plan[world.rank]:
            i = pending[j]
            seconds[str(i)] = probe_one(ctx, tasks[i], force=force, progress=progress).seconds
            board.post({"i": i, "seconds": seconds[str(i)]})
            show(board.drain())
        others = sum(len(units) for r, units in enumerate(plan) if r != world.rank)
        board.wait(lambda: len(entries) >= others, show)
    else:                                     # more ranks than tasks: all ranks on each task
        ctx.data_parallel = True
        try:
            for i in sorted(pending, key=lambda i: -costs[i]):
                seconds[str(i)] = probe_one_dp(ctx, tasks[i], force=force, progress=progress)
        finally:
            ctx.data_parallel = False
    done: dict[int, float] = {}
    for part in distributed.all_gather_json(world, seconds):   # also: every unit is stored
        done.update((int(i), float(s)) for i, s in part.items())
    if task_parallel:
        board.close()
    outcomes = []
    for i, spec in enumerate(tasks):
        t0 = time.perf_counter()
        key = probe_key(ctx, spec)
        if i not in done:
            outcomes.append(cached_outcome(ctx, spec, key, t0, progress))
            continue
        if str(i) not in seconds and i not in entries:
            show_done(i, done[i])
        entry = entries.get(i) or ctx.store.entry(key, verify=False)
        outcomes.append(ProbeOutcome(spec.name, False, done[i],
                                     results.read_result(ctx.store, entry, verify=False)))
    return ProbeRun(model, ctx.ref.cache_id, ctx.measure, tuple(outcomes))


class _NullWriter:
    """What a rank other than 0 writes in a data-parallel unit: nothing (rank 0 writes)."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def save_arrays(self, name: str, arrays: Mapping[str, Any]) -> None:
        pass


def probe_one_dp(ctx: ProbeContext, spec: TaskSpec, *, force: bool,
                  progress: ProgressFn | None) -> float:
    """Data parallelism: every rank fine-tunes ``spec`` (DDP) and runs its shard of the pass.

    Rank 0 holds the key's lock and writes the entry; the others compute the same steps
    (:func:`fine_tune`, :func:`importance._walk_sharded`) and write nothing. Returns seconds.
    """
    from . import data, distributed

    world, t0 = ctx.world, time.perf_counter()
    split = data.load_split(spec, "train", store=ctx.store,
                            max_examples=ctx.probe.max_train_examples)
    key = probe_key(ctx, spec)
    encoded = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                max_length=ctx.max_length, store=ctx.store)
    check_labels(spec, encoded.labels)
    with ctx.store.lock(key) if world.is_main else contextlib.nullcontext():
        # another gradts process may have finished it meanwhile: rank 0 decides for all
        if distributed.broadcast_json(world, not force and ctx.store.exists(key)):
            return time.perf_counter() - t0
        load_s = time.perf_counter() - t0
        writer: Any = (ctx.store.writer(key) if world.is_main
                       else contextlib.nullcontext(_NullWriter()))
        with writer as w:
            info = compute(ctx, spec, encoded, w, progress)
            info["timings"]["load_s"] = round(load_s + info["timings"].pop("build_s"), 3)
            w.info.update(info)
    distributed.barrier(world)             # the entry is in place before any rank reads it
    seconds = time.perf_counter() - t0
    emit(progress, Stage.DONE, task=spec.name, done=1, total=1, metrics={"seconds": seconds})
    return seconds
