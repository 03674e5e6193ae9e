"""Scale-out: the process group, rank and world, work assignment, shard merge (DESIGN.md §5).

One code path: :func:`init` reads the environment that ``torchrun`` (``torch.distributed.run``,
also what ``accelerate launch`` hands over to) sets for every process — ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` — and joins the process group
(``gloo`` on a CPU, ``nccl`` on CUDA). Without that environment the world has one process and
nothing is initialised; every function here is then the identity (world size 1 is the same
code, not a separate branch in the callers).

What is computed here:

- **Task parallelism.** :func:`assign_lpt` gives whole units (a task's probe, a trial seed)
  to ranks in longest-processing-time order: units sorted by cost (training tokens), largest
  first, each to the rank with the least total so far (ties: the lower rank). Every rank
  computes the same assignment from the same costs, so no coordinator is needed.
- **Data parallelism.** :func:`batch_slice` cuts one global batch (the batch one process would
  take) into contiguous per-rank slices, so W processes see exactly the examples of the one
  process batch; gradients are summed with :func:`all_reduce_sum_`. The importance pass is
  sharded with :func:`shard_indices`, the layout of ``torch.utils.data.DistributedSampler``
  without shuffling: the index list is padded to a multiple of W by repeating its first
  entries, and rank r takes every W-th index from r. :func:`merge_shards` puts the shards back
  in dataset order by their indices and drops the padding duplicates: every index exactly
  once, or an error naming the missing ones.
- **Agreement without pickle.** Small JSON values travel as uint8 tensors
  (:func:`broadcast_json`, :func:`all_gather_json`); arrays as padded tensors
  (:func:`all_gather_rows`). ``torch.distributed``'s ``*_object`` collectives pickle, which the
  project does not use.
- **One store.** :func:`check_same_store`: rank 0 writes a nonce file in the store root, the
  others must read the same nonce there; otherwise every rank raises the same
  :class:`StoreError` (ranks that would silently compute everything twice, into different
  caches, are stopped at once).

A rank that raises ends the run: the CLI prints that rank's error (rank named, see
:func:`describe`), exits non-zero, and the launcher (``torchrun``) stops the other ranks;
entries are renamed into place only when complete, so no partial entry appears and a rerun
resumes from the units that finished.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, StoreError

__all__ = ["ENV_ERRORS", "TIMEOUT_ENV", "Board", "World", "all_gather_json", "all_gather_rows",
           "all_reduce_sum_", "assign_lpt", "barrier", "batch_slice", "broadcast_json",
           "check_same_store", "current", "describe", "finish", "from_env", "init",
           "merge_shards", "rank_part", "shard_indices"]

TIMEOUT_ENV = "GRADTS_DIST_TIMEOUT"   # seconds a collective may wait (a rank still computing)
ENV_ERRORS = "GRADTS_DIST_ERRORS"     # directory where a failing rank records its error
_DEFAULT_TIMEOUT_S = 24 * 3600        # a unit (one task's probe) may take hours on big data

if TYPE_CHECKING:  # numpy is imported where used: the CLI reads the world without it
    import numpy as np


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None     # "gloo" / "nccl" once the process group is joined

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, renders and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer",
                          hint="launch with torchrun, which sets it, or unset it") from None


def from_env(env: Mapping[str, str] | None = None) -> World:
    """The world described by torchrun's variables (no torch import, nothing joined)."""
    env = os.environ if env is None else env
    size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={size} do not describe a process "
                          "of the run", hint="launch with torchrun, which sets both")
    if size > 1 and not env.get("MASTER_ADDR"):
        raise ConfigError(f"WORLD_SIZE={size} but MASTER_ADDR is not set",
                          hint="launch with torchrun --nproc-per-node N (it sets both)")
    return World(rank, size, local)


def current() -> World:
    """The world as now joined (world size 1 when no process group exists)."""
    world = from_env()
    if world.size == 1:
        return world
    import torch.distributed as dist

    if not dist.is_initialized():
        return world
    return World(dist.get_rank(), dist.get_world_size(), world.local_rank,
                 str(dist.get_backend()))


def init(device_type: str = "cpu") -> World:
    """Join the process group of a torchrun launch (gloo on CPU, nccl on CUDA); idempotent.

    With CUDA, this process uses GPU ``LOCAL_RANK``. World size 1: nothing is joined.
    """
    world = from_env()
    if world.size == 1:
        return world
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        timeout = _dt.timedelta(seconds=_env_int(os.environ, TIMEOUT_ENV, _DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend, timeout=timeout)
        atexit.register(_leave)   # a live gloo group at interpreter exit can abort (SIGABRT)
        _exit_on_sigterm()
    return current()


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def finish(ok: bool) -> None:
    """Leave the process group at the end of a command, all ranks together when ``ok``.

    After a command that succeeded on this rank, every rank waits for the others (a barrier)
    before any destroys its group, so that no rank tears down its connections while a peer is
    still inside the run; after a failure nothing waits (the peers may be gone) and the group
    is destroyed at once. Without a process group (world size 1): nothing.
    """
    import sys

    dist = sys.modules.get("torch.distributed")   # never imports torch on its own
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if ok:
        with contextlib.suppress(Exception):   # a peer that failed after all: its error shows
            dist.barrier()
    _leave()


def _exit_on_sigterm() -> None:
    """When the launcher stops this rank (SIGTERM, after another rank failed), unwind.

    ``SystemExit`` runs the ``finally`` blocks, so an entry being written is removed from the
    store's temporary area instead of being left there.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: Any) -> None:
        if not threading.main_thread().is_alive():  # already exiting (atexit, finalizers)
            return
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def describe(world: World) -> str:
    """``"rank 1 of 2"`` (how an error names the rank it came from)."""
    return f"rank {world.rank} of {world.size}"


# ---------------------------------------------------------------------------------------------
# Work assignment and shards (pure: no process group needed)
# ---------------------------------------------------------------------------------------------
def assign_lpt(costs: Sequence[float], world_size: int) -> tuple[tuple[int, ...], ...]:
    """Unit indices per rank, longest-processing-time first (see the module docstring).

    Each rank's tuple lists its units in the order it runs them (largest first); ties in cost
    keep the units' order.
    """
    if world_size < 1:
        raise ValueError(f"world size must be at least 1, not {world_size}")
    order = sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i))
    loads = [0.0] * world_size
    out: list[list[int]] = [[] for _ in range(world_size)]
    for i in order:
        r = min(range(world_size), key=lambda k: (loads[k], k))
        out[r].append(i)
        loads[r] += float(costs[i])
    return tuple(tuple(u) for u in out)


def batch_slice(idx: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of one global batch (sizes differ by at most one)."""
    import numpy as np

    return np.array_split(np.asarray(idx), world_size)[rank]


def rank_part(idx: np.ndarray, world: World) -> tuple[np.ndarray, float]:
    """This rank's examples of one global batch ``idx`` (B,) and the weight of their loss sum.

    DDP averages gradients over the W ranks, so with the loss ``weight * sum(losses)`` and
    ``weight = W / B`` the average is the gradient of the global batch's mean loss, as one
    process computes it. A rank whose slice is empty (B < W) takes one example at weight 0:
    every rank must run the backward of every step.
    """
    import numpy as np

    local = batch_slice(idx, world.rank, world.size)
    if local.size == 0:
        return np.asarray(idx)[:1], 0.0
    return local, world.size / len(idx)


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """The dataset indices rank ``rank`` processes: DistributedSampler's layout, no shuffle.

    ``range(n)`` padded to ``ceil(n / W) * W`` by repeating its first indices, then every W-th
    from ``rank``; every rank gets the same number of indices (the padding makes duplicates).
    """
    import numpy as np

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    per_rank = -(-n // world_size)
    padded = np.resize(np.arange(n, dtype=np.int64), per_rank * world_size)
    return padded[rank::world_size]


def merge_shards(n: int, shards: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The rows of every shard in dataset order, each index 0..n-1 exactly once.

    ``shards``: ``(index (k,), values (k, ...))`` per rank. A repeated index (the sampler's
    padding) keeps its first occurrence; an index outside ``[0, n)`` or one no shard carries
    is an error (a shard went missing).
    """
    import numpy as np

    if not shards:
        raise ValueError("no shards to merge")
    index = np.concatenate([np.asarray(i, dtype=np.int64).reshape(-1) for i, _ in shards])
    values = np.concatenate([np.asarray(v) for _, v in shards])
    if values.shape[0] != index.shape[0]:
        raise ValueError(f"shards carry {index.shape[0]} indices but {values.shape[0]} rows")
    if index.size and (index.min() < 0 or index.max() >= n):
        bad = int(index.min() if index.min() < 0 else index.max())
        raise ValueError(f"a shard carries index {bad}, outside the dataset's 0..{n - 1}")
    uniq, first = np.unique(index, return_index=True)   # sorted indices, first occurrence
    if uniq.size != n:
        missing = np.setdiff1d(np.arange(n), uniq)
        raise ValueError(f"{missing.size} of {n} indices are in no shard (first: "
                         f"{int(missing[0])})")
    return values[first]


# ---------------------------------------------------------------------------------------------
# Collectives (identity with world size 1)
# ---------------------------------------------------------------------------------------------
def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum_(tensor: Any, world: World) -> Any:
    """Sum ``tensor`` over ranks in place (CPU tensors with gloo, CUDA ones with nccl)."""
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _comm_device(world: World) -> Any:
    import torch

    if world.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_json(world: World, obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s JSON-able ``obj`` on every rank (sent as UTF-8 bytes, not pickled)."""
    if not world.distributed:
        return obj
    import torch
    import torch.distributed as dist

    dev = _comm_device(world)
    payload = json.dumps(obj).encode() if world.rank == src else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=dev)
    dist.broadcast(size, src)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=dev)
    if world.rank == src:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buf, src)
    return json.loads(bytes(buf.cpu().numpy()).decode())


def all_gather_json(world: World, obj: Any) -> list[Any]:
    """Every rank's JSON-able ``obj``, in rank order."""
    import numpy as np

    if not world.distributed:
        return [obj]
    payload = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    rows = all_gather_rows(world, payload)
    return [json.loads(bytes(r).decode()) for r in rows]


def all_gather_rows(world: World, values: np.ndarray) -> list[np.ndarray]:
    """Every rank's array (same trailing shape and dtype, any number of rows), in rank order."""
    import numpy as np

    values = np.ascontiguousarray(values)
    if not world.distributed:
        return [values]
    import torch
    import torch.distributed as dist

    dev = _comm_device(world)
    count = torch.tensor([values.shape[0]], dtype=torch.int64, device=dev)
    counts = [torch.zeros_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    rest = values.shape[1:]
    padded = np.zeros((max(sizes), *rest), dtype=values.dtype)
    padded[:values.shape[0]] = values
    local = torch.from_numpy(padded).to(dev)
    parts = [torch.empty_like(local) for _ in range(world.size)]
    dist.all_gather(parts, local)
    return [p.cpu().numpy()[:k] for p, k in zip(parts, sizes, strict=True)]


# ---------------------------------------------------------------------------------------------
# Progress of the other ranks, through the shared store (no RPC)
# ---------------------------------------------------------------------------------------------
class Board:
    """The other ranks' unit events, for rank 0's progress while the run goes on.

    Every rank other than 0 appends one JSON line per event to
    ``<store root>/.dist/board-<run>/rank-<r>.jsonl`` (:meth:`post`); rank 0 reads the complete
    lines it has not seen yet (:meth:`drain`) between its own units, and waits for the rest
    (:meth:`wait`) before the ranks gather. The store is already shared by every rank
    (:func:`check_same_store`), so this needs no other channel. World size 1: nothing.
    """

    def __init__(self, world: World, folder: Path | None) -> None:
        self.world, self.folder = world, folder
        self._offsets: dict[int, int] = {}

    @classmethod
    def open(cls, world: World, root: str | os.PathLike[str]) -> Board:
        """A board for one phase of the run (collective: every rank calls it)."""
        if not world.distributed:
            return cls(world, None)
        run = broadcast_json(world, uuid.uuid4().hex if world.is_main else None)
        folder = Path(root) / ".dist" / f"board-{run}"
        if world.is_main:
            folder.mkdir(parents=True, exist_ok=True)
        barrier(world)
        return cls(world, folder)

    def post(self, event: Mapping[str, Any]) -> None:
        """Append ``event`` for rank 0 (on rank 0, and with one process: nothing)."""
        if self.folder is None or self.world.is_main:
            return
        with open(self.folder / f"rank-{self.world.rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(event)) + "\n")

    def drain(self) -> list[dict[str, Any]]:
        """The events posted since the last call, rank by rank (on rank 0; else nothing)."""
        out: list[dict[str, Any]] = []
        if self.folder is None or not self.world.is_main:
            return out
        for r in range(1, self.world.size):
            try:
                data = (self.folder / f"rank-{r}.jsonl").read_bytes()
            except FileNotFoundError:
                continue
            start, end = self._offsets.get(r, 0), data.rfind(b"\n") + 1  # whole lines only
            if end > start:
                out += [json.loads(line) for line in data[start:end].splitlines() if line]
                self._offsets[r] = end
        return out

    def wait(self, done: Callable[[], bool],
             on_events: Callable[[list[dict[str, Any]]], None], poll_s: float = 0.2) -> None:
        """On rank 0: pass every new event to ``on_events`` until ``done()`` is true.

        A rank that fails ends the run (the launcher stops rank 0), so this cannot outlive it.
        """
        import time

        while self.folder is not None and self.world.is_main:
            events = self.drain()
            if events:
                on_events(events)
            if done():
                return
            time.sleep(poll_s)

    def close(self) -> None:
        """Remove the board (rank 0, once every rank has gathered: nobody writes any more)."""
        if self.folder is not None and self.world.is_main:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The store: every rank must see the same one
# ---------------------------------------------------------------------------------------------
def check_same_store(world: World, root: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreError` on every rank unless all ranks see rank 0's store root.

    Rank 0 writes a fresh nonce to ``<root>/.dist/<nonce>``; the others must read it there.
    """
    if not world.distributed:
        return
    root = Path(root)
    nonce = uuid.uuid4().hex if world.is_main else ""
    marker = root / ".dist"
    if world.is_main:
        marker.mkdir(parents=True, exist_ok=True)
        (marker / nonce).write_text(nonce, encoding="utf-8")
    nonce = broadcast_json(world, nonce)
    try:
        seen = (marker / nonce).read_text(encoding="utf-8") == nonce
    except OSError:
        seen = False
    views = all_gather_json(world, {"seen": seen, "root": str(root.resolve()),
                                    "host": os.uname().nodename})
    if world.is_main:
        (marker / nonce).unlink(missing_ok=True)
    blind = [r for r, v in enumerate(views) if not v["seen"]]
    if blind:
        where = ", ".join(f"rank {r} ({views[r]['host']}:{views[r]['root']})" for r in blind)
        raise StoreError(
            f"the ranks do not share one store: rank 0 uses {views[0]['host']}:"
            f"{views[0]['root']}, which {where} cannot see",
            hint="put --home (GRADTS_HOME) on a file system every node mounts, the same path "
                 "on every node", all_ranks=True)
