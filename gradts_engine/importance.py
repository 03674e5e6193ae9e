"""The two importance estimators of a probe (DESIGN.md §2, "When importance is measured").

``during`` — accumulated by the training loop's per-step hook (:class:`training.StepInfo`),
on the device, with no host copy per step:

- ``gate`` measure (:class:`GateDuring`): the gates ``xi`` (B, L, H) are open during every
  training step, so the step's backward also gives ``d(batch loss)/dxi``::

      during_raw[l, h] = sum_steps | sum_b d(batch loss)/dxi[b, l, h] |        # (L, H)

- ``qkv`` / ``legacy`` (:class:`WeightGradDuring`): the step's parameter gradients of W_Q,
  W_K, W_V (which the step computes anyway) take the place of the gate gradient: per head the
  mean absolute gradient over its rows of W_Q, W_K and W_V (``qkv``), or ``mean(|dW_K| +
  |dW_V|)`` over its input columns (``legacy``); gradients of the batch loss, not per example.
  (ALBERT shares one set of projections across layers, so its per-step weight gradients cannot
  be split by layer: every layer sharing a module gets the same row.)

Gradients are read after the backward pass and before clipping (the gradient of the batch loss
itself); a step whose gradient is not finite (an fp16 overflow) adds nothing.

``after`` — :func:`importance_pass`: the fine-tuned model in eval mode, no update, one pass
over the train split with the measure's per-example function (:func:`heads.gate_importance`,
:func:`heads.qkv_importance`, :func:`heads.legacy_importance`), giving the raw instance
matrices ``R_i`` (N, L, H) and ``after_raw = mean_i R_i``. With the ``gate`` measure the
parameters are frozen for the pass (``requires_grad_(False)``, restored afterwards): the gates
are the only leaves, so the backward computes activation gradients only, no weight gradient
is computed or kept, and nothing below the first layer's gate is recorded (the pass's floor,
about two forwards). The pass walks the split in contiguous chunks (sorted by length inside a
chunk, for little padding); each chunk's ``R`` is gathered on the device, moved to the host
once and written with the examples' split indices, so memory stays bounded for large tasks.

Normalisation (:func:`normalise`): ``during = layer_l1(during_raw)``, ``after =
minmax(layer_l1(after_raw))``, where ``layer_l1`` divides each layer's row by its sum.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import data, interrupts
from .errors import TrainingError
from .progress import ProgressFn, Stage, emit
from .signal import Measure, parse_choice
from .training import EMIT_SECONDS, StepInfo, autocast, to_device

__all__ = ["GateDuring", "PassSettings", "WeightGradDuring", "frozen_parameters",
           "importance_pass", "normalise"]


# ---------------------------------------------------------------------------------------------
# during: per-step hooks
# ---------------------------------------------------------------------------------------------
class GateDuring:
    """The ``during`` estimator of the ``gate`` measure: open gates, sum |gate gradient|.

    ``open(B)`` before each training forward; the instance is the trainer's ``on_step`` hook.
    ``reduce`` (optional) maps the step's (L, H) gradient across processes (DDP) before |.|.
    """

    def __init__(self, net: Any, layout: Any, device: Any,
                 reduce: Callable[[Any], Any] | None = None) -> None:
        import torch

        from .heads import HeadGates

        self.gates = HeadGates(net, layout)
        self.reduce = reduce
        self.sum = torch.zeros(layout.num_layers, layout.num_heads, dtype=torch.float64,
                               device=device)                                   # (L, H)

    def open(self, B: int, device: Any) -> Any:
        return self.gates.open(B, device=device)                                # (B, L, H)

    def __call__(self, step: StepInfo) -> None:
        import torch

        xi = self.gates.xi
        if xi is not None and xi.grad is not None:
            g = xi.grad.sum(0, dtype=torch.float64)                              # (L, H)
            if step.grad_scale != 1.0:
                g = g / step.grad_scale
            if self.reduce is not None:
                g = self.reduce(g)
            self.sum += torch.where(torch.isfinite(g).all(), g.abs(), 0.0)
        self.gates.close()

    def remove(self) -> None:
        self.gates.remove()


class WeightGradDuring:
    """The ``during`` estimator of ``qkv``/``legacy``: per-head |grad| of W_Q/W_K/W_V rows."""

    def __init__(self, net: Any, layout: Any, measure: Measure, device: Any) -> None:
        import torch

        from .heads import qkv_blocks

        self.layout, self.measure, self.device = layout, measure, device
        self.blocks = qkv_blocks(net, layout)
        self.modules = {b.name: net.get_submodule(b.name) for layer in self.blocks
                        for b in layer}
        self.sum = torch.zeros(layout.num_layers, layout.num_heads, dtype=torch.float64,
                               device=device)                                   # (L, H)

    def _rows_grad(self, name: str) -> Any:
        module = self.modules[name]
        g = module.weight.grad
        if g is None:
            return None
        return g.t() if type(module).__name__ == "Conv1D" else g                # (out, in)

    def step_matrix(self) -> Any:
        """This step's (L, H) matrix from the parameters' ``.grad``."""
        import torch

        H, d = self.layout.num_heads, self.layout.head_dim
        zeros = torch.zeros(H, device=self.device)
        out = []
        for q, k, v in self.blocks:
            if self.measure == Measure.LEGACY:
                gk, gv = self._rows_grad(k.name), self._rows_grad(v.name)
                if gk is None or gv is None:
                    out.append(zeros)
                    continue
                kv = gk.abs() + gv.abs()                                         # (out, H*d)
                out.append(kv.view(kv.shape[0], H, d).mean(dim=(0, 2)).float())
                continue
            means = []
            for b in (q, k, v):
                g = self._rows_grad(b.name)
                if g is None:
                    means.append(zeros)
                    continue
                rows = g[b.start:b.start + b.heads * d]                          # (heads*d, in)
                m = rows.abs().reshape(b.heads, -1).mean(-1).float()             # (heads,)
                means.append(m.repeat_interleave(H // b.heads))                  # (H,)
            out.append(sum(means) / 3.0)
        return torch.stack(out)                                                  # (L, H)

    def __call__(self, step: StepInfo) -> None:
        import torch

        g = self.step_matrix().double()                                          # (L, H)
        if step.grad_scale != 1.0:
            g = g / step.grad_scale
        self.sum += torch.where(torch.isfinite(g).all(), g, 0.0)

    def remove(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# after: the importance pass
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PassSettings:
    """How the ``after`` pass runs: measure, batch size, padding id, device and autocast."""

    measure: Measure
    batch_size: int
    pad_id: int
    device: Any
    dtype: Any = None                 # autocast dtype; None: fp32
    keep_instances: bool = True       # write R_i (else only their mean)
    chunk_size: int = 8192            # instance matrices per instances-NNNNN file
    lr: float | None = None           # named in the hint of a non-finite result
    world: Any = None                 # distributed.World: shard each chunk over its ranks


@contextlib.contextmanager
def frozen_parameters(net: Any) -> Iterator[None]:
    """Every parameter ``requires_grad_(False)`` inside the block; restored afterwards."""
    params = list(net.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def _measure_fn(net: Any, layout: Any, measure: Measure, kind: str
                ) -> tuple[Callable[[Mapping[str, Any]], Any], Any]:
    """The per-example function ``batch -> R (B, L, H)`` of ``measure``, and its gates."""
    from . import heads, models

    def loss_fn(output: Any, batch: Mapping[str, Any]) -> Any:
        return models.per_example_loss(output, batch["labels"], kind)           # (B,)

    if measure == Measure.GATE:
        gates = heads.HeadGates(net, layout)
        return (lambda batch: heads.gate_importance(net, batch, loss_fn, gates)), gates
    if measure == Measure.QKV:
        return (lambda batch: heads.qkv_importance(net, batch, loss_fn, layout)), None
    return (lambda batch: heads.legacy_importance(net, batch, loss_fn, layout)), None


def importance_pass(net: Any, layout: Any, encoded: Any, kind: str, s: PassSettings, *,
                    writer: Any = None, task: str | None = None,
                    progress: ProgressFn | None = None) -> dict[str, Any]:
    """The ``after`` pass: per-example matrices R (N, L, H) in chunks; ``after_raw = mean R``.

    ``writer``: the store entry writer receiving ``instances-NNNNN`` files (``None`` keeps
    nothing but the mean). Returns ``after_raw`` (L, H) float64, the chunk file names, seconds
    and examples/s.
    """
    import torch

    measure = parse_choice(Measure, s.measure, "importance measure", "--measure")
    n = len(encoded)
    fn, gates = _measure_fn(net, layout, measure, kind)
    freeze = frozen_parameters(net) if measure == Measure.GATE else contextlib.nullcontext()
    total = torch.zeros(layout.num_layers, layout.num_heads, dtype=torch.float64,
                        device=s.device)                                         # sum_i R_i
    t0 = time.perf_counter()
    net.eval()
    emit(progress, Stage.IMPORTANCE, task=task, done=0, total=n)
    try:
        with freeze:
            walk = _walk if s.world is None or not s.world.distributed else _walk_sharded
            chunks = walk(fn, encoded, s, total, writer if s.keep_instances else None,
                          task, progress)
    finally:
        if gates is not None:
            gates.remove()
    after_raw = (total / max(n, 1)).cpu().numpy()
    if not np.isfinite(after_raw).all():
        raise TrainingError(f"task '{task}': the importance pass produced non-finite gradients",
                            hint=f"lower --lr (now {s.lr:g})" if s.lr is not None else
                            "lower --lr", task=task)
    seconds = time.perf_counter() - t0
    return {"after_raw": after_raw, "chunks": chunks, "seconds": seconds,
            "examples_per_s": n / max(seconds, 1e-9)}


def _batch_importance(fn: Callable[[Mapping[str, Any]], Any], encoded: Any, b_idx: np.ndarray,
                      s: PassSettings) -> Any:
    """``fn`` on the examples ``b_idx``, collated onto the pass's device, under its autocast
    (a safe point for Ctrl-C comes first)."""
    interrupts.check()
    batch = to_device(data.collate(encoded, b_idx, s.pad_id), s.device)
    with autocast(s.device, s.dtype):
        return fn(batch)


def _walk(fn: Callable[[Mapping[str, Any]], Any], encoded: Any, s: PassSettings, total: Any,
          writer: Any, task: str | None, progress: ProgressFn | None) -> list[str]:
    """Run ``fn`` over ``encoded`` chunk by chunk; add into ``total``; write R per chunk."""
    import torch

    n = len(encoded)
    lengths = encoded.lengths()
    chunks: list[str] = []
    done, last_emit, t0 = 0, -math.inf, time.perf_counter()
    L, H = total.shape
    for c, start in enumerate(range(0, n, s.chunk_size)):
        idx = np.arange(start, min(n, start + s.chunk_size))
        order = idx[np.argsort(-lengths[idx], kind="stable")]                    # longest first
        buf = (torch.empty(len(idx), L, H, device=s.device)
               if writer is not None else None)                                  # (n_c, L, H)
        for b0 in range(0, len(order), s.batch_size):
            b_idx = order[b0:b0 + s.batch_size]
            R = _batch_importance(fn, encoded, b_idx, s).to(s.device)           # (B, L, H)
            total += R.sum(0, dtype=torch.float64)
            if buf is not None:
                buf[torch.as_tensor(b_idx - start, device=s.device)] = R.float()
            done += len(b_idx)
            now = time.perf_counter()
            if now - last_emit >= EMIT_SECONDS or done == n:
                last_emit = now
                emit(progress, Stage.IMPORTANCE, task=task, done=done, total=n,
                     metrics={"ex/s": done / max(now - t0, 1e-9)})
        if buf is not None:
            name = f"instances-{c:05d}"
            writer.save_arrays(name, {"R": buf.cpu().numpy(), "index": idx.astype(np.int64)})
            chunks.append(f"{name}.safetensors")
    return chunks


def _walk_sharded(fn: Callable[[Mapping[str, Any]], Any], encoded: Any, s: PassSettings,
                  total: Any, writer: Any, task: str | None, progress: ProgressFn | None
                  ) -> list[str]:
    """:func:`_walk` with each chunk sharded over the ranks of ``s.world`` (DESIGN.md §5).

    Rank r takes its :func:`distributed.shard_indices` of the chunk (the distributed sampler's
    layout: padded with duplicates to a multiple of W); the ranks' ``(index, R)`` shards are
    gathered and merged by index (:func:`distributed.merge_shards`: duplicates dropped, every
    index once, in order), so every rank adds the same ``sum_i R_i`` into ``total`` and rank
    0's ``writer`` writes the same chunk files as one process.
    """
    import torch

    from . import distributed

    world = s.world
    n = len(encoded)
    lengths = encoded.lengths()
    chunks: list[str] = []
    done, last_emit, t0 = 0, -math.inf, time.perf_counter()
    L, H = total.shape
    for c, start in enumerate(range(0, n, s.chunk_size)):
        n_c = min(n, start + s.chunk_size) - start
        mine = start + distributed.shard_indices(n_c, world.rank, world.size)   # (k,)
        order = mine[np.argsort(-lengths[mine], kind="stable")]                  # longest first
        parts = []
        for b0 in range(0, len(order), s.batch_size):
            b_idx = order[b0:b0 + s.batch_size]
            parts.append(_batch_importance(fn, encoded, b_idx, s).float())      # (B, L, H)
            now = time.perf_counter()
            if now - last_emit >= EMIT_SECONDS:
                last_emit = now
                emit(progress, Stage.IMPORTANCE, task=task, done=done + b0 * world.size,
                     total=n, metrics={"ex/s": (done + b0 * world.size) / max(now - t0, 1e-9)})
        R_mine = (torch.cat(parts).cpu().numpy() if parts
                  else np.zeros((0, L, H), np.float32))                          # (k, L, H)
        shards = zip(distributed.all_gather_rows(world, order - start),
                     distributed.all_gather_rows(world, R_mine), strict=True)
        R = distributed.merge_shards(n_c, list(shards))                          # (n_c, L, H)
        total += torch.from_numpy(R).to(total.device).sum(0, dtype=torch.float64)
        done += n_c
        emit(progress, Stage.IMPORTANCE, task=task, done=done, total=n,
             metrics={"ex/s": done / max(time.perf_counter() - t0, 1e-9)})
        if writer is not None and world.is_main:
            name = f"instances-{c:05d}"
            writer.save_arrays(name, {"R": R, "index": np.arange(start, start + n_c)})
            chunks.append(f"{name}.safetensors")
    return chunks


def normalise(during_raw: np.ndarray, after_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``during = layer_l1(during_raw)``, ``after = minmax(layer_l1(after_raw))`` (float64)."""
    from .correlate import layer_l1, minmax

    return layer_l1(during_raw), minmax(layer_l1(after_raw))
