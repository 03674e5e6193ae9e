"""Many runs of the ledger at once, in one process or across the ranks of a torchrun launch.

:func:`get_many` is what :meth:`ledger.Ledger.get_many` runs (DESIGN.md §5). With one process
it is :meth:`Ledger.get` for each unit, in order (the same code path). With W > 1 ranks:

1. rank 0 decides which units are pending (not in the store, or ``force``; a unit asked for
   twice is one unit) and tells every rank (:func:`distributed.broadcast_json`): the store is
   shared, so this is also what every other rank sees, and one decision keeps them in step;
2. **task parallelism** when at least W units are pending: whole units go to ranks in
   longest-processing-time order by their training examples x epochs
   (:func:`distributed.assign_lpt`); each rank trains its units alone (no DDP) and writes each
   under the key's lock, through :meth:`Ledger.get`;
3. **data parallelism** when fewer: all ranks train each pending unit together (DDP, the
   effective batch of one process, ``train(..., data_parallel=True)``), rank 0 holding the
   key's lock and writing the entry, the others writing nothing;
4. every rank learns which units were trained and by which rank (:func:`distributed.
   all_gather_json`, which also waits for every entry to be in place) and reads the others'
   runs back: every rank returns every run, a unit trained by any rank in this call is
   ``cached=False`` and counts in ``Ledger.trained`` on every rank.

A rank that raises ends the run (the CLI names the rank; torchrun stops the others, whose
entries being written are removed from the store's temporary area): entries appear only when
complete and a rerun trains only the units that did not finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import interrupts

if TYPE_CHECKING:
    from ..distributed import World
    from ..mtl import MTLResult
    from ..store import Key, Store
    from .ledger import Ledger, Run


@dataclass(frozen=True)
class Unit:
    """One run asked of the ledger: ``P + aux`` with ``seed`` (and instance ``subsets``)."""

    aux: tuple[str, ...]
    seed: int
    label: str
    subsets: Mapping[str, np.ndarray] | None = None


StartFn = Callable[[int], None]          # unit index -> None (before it is trained or loaded)
DoneFn = Callable[[int, "Run"], None]    # unit index, its run -> None


def world_of(ledger: Ledger) -> World:
    """Join the process group of a torchrun launch (once per ledger); world size 1 otherwise.

    Under CUDA each rank trains on GPU ``LOCAL_RANK``; every rank checks that all ranks see
    one store (:func:`distributed.check_same_store`).
    """
    from .. import distributed

    if ledger._world is not None:
        return ledger._world  # type: ignore[no-any-return]
    world = distributed.from_env()
    if world.distributed:
        from ..models import resolve_device

        device = resolve_device(ledger.run.device)
        world = distributed.init(device.type)
        distributed.check_same_store(world, ledger.store.root)
        if device.type == "cuda":
            ledger.run = dataclasses.replace(ledger.run, device=f"cuda:{world.local_rank}")
    ledger._world = world
    return world


def get_many(ledger: Ledger, units: Sequence[Unit], *, force: bool = False,
             on_start: StartFn | None = None, on_done: DoneFn | None = None,
             before_training: StartFn | None = None) -> list[Run]:
    """Every unit's run, in the order of ``units`` (see the module docstring).

    ``on_start(i)`` is called before unit ``i`` is trained or loaded by this rank,
    ``before_training(i)`` only when this rank starts training it, ``on_done(i, run)`` once
    for every unit when its run is known: with several ranks in task parallelism, for this
    rank's units as each finishes and, on rank 0, for the other ranks' units as they post them
    (:class:`distributed.Board`), the rest after all units are done.
    """
    world = world_of(ledger)
    if not world.distributed:
        out = []
        for i, u in enumerate(units):
            if on_start is not None:
                on_start(i)
            r = ledger.get(u.aux, u.seed, label=u.label, force=force, subsets=u.subsets,
                           before_training=_hook(before_training, i))
            if on_done is not None:
                on_done(i, r)
            out.append(r)
        return out
    return _distributed(ledger, world, units, force, on_start, on_done, before_training)


def _hook(before_training: StartFn | None, i: int) -> Callable[[], None] | None:
    """``before_training(i)`` as the no-argument hook of :meth:`Ledger.get`."""
    if before_training is None:
        return None
    return lambda: before_training(i)


def unit_cost(ledger: Ledger, u: Unit) -> int:
    """Training examples x epochs of one unit (its LPT cost): every task's kept examples."""
    subsets = ledger.capped(u.aux, u.subsets) or {}
    n = sum(len(subsets[t]) if t in subsets else ledger.train_size(t)
            for t in [ledger.ctx.primary.name, *u.aux])
    return int(n) * ledger.ctx.settings.epochs


def _pending(ledger: Ledger, keys: Sequence[str], units: Sequence[Unit], force: bool
             ) -> list[int]:
    """The first unit of each key that must be trained (rank 0's view of the store)."""
    seen: set[str] = set()
    out = []
    for i, (k, u) in enumerate(zip(keys, units, strict=True)):
        if k in seen:
            continue
        seen.add(k)
        done = ledger._done.get(k)
        if done is not None and not (force and done.cached):
            continue
        if force or not ledger.store.exists(ledger.key(u.aux, u.seed, u.subsets)):
            out.append(i)
    return out


def _distributed(ledger: Ledger, world: World, units: Sequence[Unit], force: bool,
                 on_start: StartFn | None, on_done: DoneFn | None,
                 before_training: StartFn | None) -> list[Run]:
    from .. import distributed

    keys = [str(ledger.key(u.aux, u.seed, u.subsets)) for u in units]
    pending: list[int] = distributed.broadcast_json(
        world, _pending(ledger, keys, units, force) if world.is_main else None)
    costs = [unit_cost(ledger, units[i]) for i in pending]
    mine: dict[str, dict[str, Any]] = {}      # unit index -> who trained it, how fast
    shown: set[int] = set()                   # units already passed to on_done
    early: dict[int, MTLResult] = {}          # other ranks' runs read for rank 0's progress
    task_parallel = len(pending) >= world.size
    if task_parallel:                         # task parallelism: whole units, largest first
        plan = distributed.assign_lpt(costs, world.size)
        board = distributed.Board.open(world, ledger.store.root)

        def show(events: list[dict[str, Any]]) -> None:   # rank 0: the others' finished units
            from .ledger import Run, read_run

            for ev in events:
                i = int(ev["i"])
                if on_done is not None:
                    u = units[i]
                    entry = ledger.store.entry(ledger.key(u.aux, u.seed, u.subsets))
                    early[i] = read_run(ledger.store, entry)
                    on_done(i, Run(early[i], bool(ev["cached"]), keys[i]))
                shown.add(i)

        for j in plan[world.rank]:
            i = pending[j]
            if on_start is not None:
                on_start(i)
            t0 = time.perf_counter()
            r = ledger.get(units[i].aux, units[i].seed, label=units[i].label, force=force,
                           subsets=units[i].subsets, before_training=_hook(before_training, i))
            mine[str(i)] = _who(world, "task", r.cached, time.perf_counter() - t0,
                                _seen(r.result))
            if on_done is not None:
                on_done(i, r)
            shown.add(i)
            board.post({"i": i, "cached": r.cached})
            show(board.drain())
        board.wait(lambda: len(shown) >= len(pending), show)   # this rank's and the others'

    else:                                     # more ranks than units: all ranks on each unit
        for j in sorted(range(len(pending)), key=lambda j: (-costs[j], j)):
            i = pending[j]
            if on_start is not None:
                on_start(i)
            info = _train_together(ledger, world, units[i], force,
                                   _hook(before_training, i))
            if info is not None:
                mine[str(i)] = info
    trained: dict[int, list[dict[str, Any]]] = {}   # unit -> the ranks that trained it
    for part in distributed.all_gather_json(world, mine):   # also: every entry is in place
        for i, v in part.items():
            trained.setdefault(int(i), []).append(v)
    if task_parallel:
        board.close()
    for i, who in trained.items():
        if not any(w.get("cached") for w in who):
            ledger.trained_by[keys[i]] = {"parallel": who[0]["parallel"], "ranks": who}
    out: list[Run] = []
    first: dict[str, int] = {}
    for i, (k, u) in enumerate(zip(keys, units, strict=True)):
        if k in first:                        # asked twice in this call: trained once
            r = dataclasses.replace(out[first[k]], cached=True)
        elif i in trained:
            r = _read_trained(ledger, u, k, trained[i], world, early.get(i))
            first[k] = i
        else:
            r = ledger.get(u.aux, u.seed, label=u.label, subsets=u.subsets)   # stored
            first[k] = i
        if on_done is not None and i not in shown:
            on_done(i, r)
        out.append(r)
    return out


def _seen(r: MTLResult) -> int:
    return int(sum(r.examples_seen.values()))


def _who(world: World, parallel: str, cached: bool, seconds: float, examples: int
         ) -> dict[str, Any]:
    """Who trained a unit in this call (every rank learns it), and its throughput: training
    examples (of the global batches, with DDP) per second of this rank's wall time."""
    return {"rank": world.rank, "world_size": world.size, "backend": world.backend,
            "parallel": parallel, "cached": cached, "seconds": round(seconds, 3),
            "examples_per_s": round(examples / seconds, 3) if seconds > 0 else None}


def _read_trained(ledger: Ledger, u: Unit, key: str, who: Sequence[Mapping[str, Any]],
                  world: World, result: MTLResult | None = None) -> Run:
    """The run of a unit trained in this call (by this rank or others): ``cached=False``.

    ``result``: the run as already read from the store (for rank 0's progress), not read again.
    """
    from .ledger import Run, read_run

    done = ledger._done.get(key)
    own = who[0]["parallel"] == "data" and world.is_main or \
        who[0]["parallel"] == "task" and who[0]["rank"] == world.rank
    if own and done is not None:              # in memory, counted in ``trained`` already
        return done
    cached = any(w.get("cached") for w in who)   # another process had stored it meanwhile
    if result is None:
        result = read_run(ledger.store, ledger.store.entry(ledger.key(u.aux, u.seed, u.subsets)))
    run = Run(result, cached, key)
    ledger._done[key] = run
    if not cached:
        ledger.trained += 1
    return run


def _train_together(ledger: Ledger, world: World, u: Unit, force: bool,
                    before_training: Callable[[], None] | None) -> dict[str, Any] | None:
    """Data parallelism: every rank trains ``u`` (DDP); rank 0 holds the lock and writes.

    Returns who trained it (None: rank 0 found it stored, so nobody did).
    """
    from .. import distributed
    from .ledger import write_run

    interrupts.check()
    key = ledger.key(u.aux, u.seed, u.subsets)
    t0 = time.perf_counter()
    with ledger.store.lock(key) if world.is_main else contextlib.nullcontext():
        # another gradts process may have finished it meanwhile: rank 0 decides for all
        if distributed.broadcast_json(world, not force and ledger.store.exists(key)):
            return None
        if before_training is not None:
            before_training()
        subsets = ledger.capped(u.aux, u.subsets)
        extra = {"subsets": dict(subsets)} if subsets else {}
        r = ledger.train(ledger.ref, ledger.ctx.primary, [ledger.ctx.specs[a] for a in u.aux],
                         store=ledger.store, run=ledger.run, settings=ledger.ctx.settings,
                         seed=u.seed, eval_split="dev", eval_index=ledger.plan.select_index,
                         report=ledger.plan.report, progress=ledger.progress, label=u.label,
                         data_parallel=True, **extra)
        seconds = time.perf_counter() - t0
        info = _who(world, "data", False, seconds, _seen(r))
        if world.is_main:
            from .ledger import Run

            ranks = distributed.all_gather_json(world, info)
            write_run(ledger.store, key, ledger.ctx.model_name, r,
                      distributed={**_role(world, "data"), "ranks": ranks})
            ledger.trained += 1
            ledger._done[str(key)] = Run(r, False, str(key))
        else:
            distributed.all_gather_json(world, info)
    return info


def _role(world: World, parallel: str) -> dict[str, Any]:
    """What a stored run records of who computed it (``info.distributed``, as probe does)."""
    return {"rank": world.rank, "world_size": world.size, "backend": world.backend,
            "parallel": parallel}


class _NullWriter:
    """What a rank other than 0 writes of a summary entry: nothing (rank 0 writes it)."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def save_json(self, name: str, obj: Any) -> None:
        pass

    def save_arrays(self, name: str, arrays: Mapping[str, Any]) -> None:
        pass


@contextlib.contextmanager
def summary_writer(store: Store, key: Key, info: Mapping[str, Any]) -> Iterator[Any]:
    """The lock and writer of a summary entry (trial, fg, compare) on rank 0; on the other
    ranks of a torchrun launch a writer that writes nothing (every rank has the summary)."""
    from .. import distributed

    if not distributed.current().is_main:
        yield _NullWriter()
        return
    with store.lock(key), store.writer(key, info=info) as w:
        yield w
