"""The one training loop: probe fine-tuning and multi-task training (DESIGN.md §2, §3, §5).

Both the probe's fine-tuning (:mod:`probe`) and GradTS's multi-task trials (:mod:`mtl`) train
with the same recipe, defined here once:

- **AdamW** with two parameter groups: weight decay on every parameter with ``ndim >= 2``
  (weight matrices, embeddings), none on ``ndim < 2`` (biases, LayerNorm weights)
  (:func:`param_groups`); the fused kernel on CUDA and the CPU.
- **Learning-rate schedule**: linear warm-up over ``round(warmup * total_steps)`` steps, then
  linear decay to 0 at ``total_steps`` (:func:`linear_schedule`)::

      factor(s) = (s + 1) / W                      for s < W
                = max(0, (S - s) / max(1, S - W))  otherwise

- **Precision**: bf16/fp16 autocast on CUDA, fp16 with a gradient scaler, through Hugging
  Face Accelerate (``Accelerator(mixed_precision=...)``, ``accelerator.backward``,
  ``accelerator.clip_grad_norm_`` which unscales before clipping); fp32 on the CPU.
- **Clipping** of the gradient norm at ``grad_clip`` (1.0).
- **A hook per step**, called after the backward pass and before clipping and the optimizer
  step, with the step's detached loss and the fp16 loss scale: where the probe accumulates the
  ``during`` estimator (the gate gradients of each step's batch loss, DESIGN.md §2).
- **A finite-loss check** every :data:`CHECK_STEPS` steps or :data:`EMIT_SECONDS` (one host
  copy of the pending losses, not a device sync per step): the first non-finite loss raises
  :class:`TrainingError` naming its step; progress events (``Stage.FINE_TUNE`` or
  ``Stage.MTL``) at the same moments; :func:`interrupts.check` before every step.

- **Experiment tracking**, opt-in, through Accelerate's trackers (``Accelerator(log_with=...,
  project_dir=...)``, ``init_trackers``, ``log``, ``end_training``): inside
  :func:`tracking` (``gradts <command> --log tensorboard|wandb``) every run logs
  ``train/loss`` and ``train/lr`` per step (from the same host copy as the finite-loss check:
  no extra device sync), ``train/epoch_loss/<task>`` per epoch, and what the caller adds with
  :meth:`Trainer.log_metrics` (the dev metrics per epoch), under the run's label as the
  tracker's run name. Only the main process logs (Accelerate's rule).

Device placement is done here, not by Accelerate: Accelerate's device is process-global
(``PartialState``), so one process that trains on the CPU and then on ``cuda:1`` would get the
first device. ``Accelerator(device_placement=False)``; the model and batches go to the device
that :func:`models.resolve_device` chose. Under ``torchrun`` (world size > 1) the model is
wrapped for DDP by ``accelerator.prepare_model``; which batches each rank sees is the caller's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from . import interrupts
from .errors import DeviceError, TrainingError
from .progress import ProgressFn, Stage, emit
from .tracking import TRACKERS, Tracking, check_tracking, run_name, tracking
from .tracking import current as current_tracking

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .config import RunSettings

__all__ = ["CHECK_STEPS", "EMIT_SECONDS", "GRAD_CLIP", "TRACKERS", "EpochStats", "StepInfo",
           "TrainPlan", "Trainer", "Tracking", "autocast", "batches_of", "check_tracking",
           "decays", "device_name", "linear_schedule", "make_accelerator", "make_optimizer",
           "param_groups", "precision_name", "precision_of", "predict", "run_name", "to_device",
           "tracking", "warmup_steps"]

GRAD_CLIP = 1.0
EMIT_SECONDS = 0.5     # progress (and the finite-loss check) at most this often ...
CHECK_STEPS = 50       # ... and at least every this many steps
_RECENT = 20           # the progress loss is the mean of the last this many checked steps

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# The recipe: parameter groups, schedule, optimizer
# ---------------------------------------------------------------------------------------------
def decays(param: Any) -> bool:
    """Whether weight decay applies: weight matrices yes; biases and norm weights (1-d) no."""
    return bool(param.ndim >= 2)


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two groups over the trainable parameters: decayed, and not (:func:`decays`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if decays(p)], "weight_decay": weight_decay},
            {"params": [p for p in params if not decays(p)], "weight_decay": 0.0}]


def make_optimizer(model: Any, *, lr: float, weight_decay: float, device: Any) -> Any:
    """AdamW over :func:`param_groups`, the fused kernel on CUDA and on the CPU.

    On the CPU the fused step of MiniLM's 22.7M parameters took 0.10 s against 0.46-0.53 s for
    torch's default per-tensor loop (1 thread; benchmarks/throughput.py's probe step was 44%
    optimizer); the result is the same update up to float rounding (tests/test_training.py).
    """
    import torch

    kwargs: dict[str, Any] = {"lr": lr}
    if getattr(device, "type", "cpu") in ("cuda", "cpu"):
        kwargs["fused"] = True
    return torch.optim.AdamW(param_groups(model, weight_decay), **kwargs)


def warmup_steps(total_steps: int, warmup: float) -> int:
    """The number of warm-up steps: ``round(warmup * total_steps)`` (the one rounding rule)."""
    return int(round(warmup * total_steps))


def linear_schedule(total_steps: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor of step ``s``: linear warm-up, then linear decay to 0."""
    warm = warmup_steps(total_steps, warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


# ---------------------------------------------------------------------------------------------
# Device and precision
# ---------------------------------------------------------------------------------------------
def precision_of(dtype: Any) -> str:
    """``fp32`` for ``None`` (no autocast), ``bf16``, ``fp16``: the name stores record."""
    if dtype is None:
        return "fp32"
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), str(dtype))


def precision_name(run: RunSettings) -> str:
    """The precision ``run`` trains in (``run.precision`` resolved on its device)."""
    from .models import resolve_device, resolve_precision

    return precision_of(resolve_precision(run.precision, resolve_device(run.device)))


def device_name(run: RunSettings) -> str:
    """Where ``run`` trains (``cpu``, ``cuda``, ``cuda:1``), as recorded for the cost ledger."""
    from .models import resolve_device

    return str(resolve_device(run.device))


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device`` (``None``: nothing): for evaluation passes."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: Mapping[str, Any], device: Any) -> dict[str, Any]:
    """Every tensor of ``batch`` on ``device`` (non-blocking from pinned host memory on CUDA)."""
    nb = getattr(device, "type", "cpu") == "cuda"
    return {k: v.to(device, non_blocking=nb) for k, v in batch.items()}


def predict(forward: Callable[[dict[str, Any]], Any], encoded: Any, *, batch_size: int,
            pad_id: int, device: Any, dtype: Any = None) -> Any:
    """Outputs ``forward(inputs)`` (N, C) float32 of every example of ``encoded``, in its order.

    No gradient, under :func:`autocast`; batches by length (:func:`data.batches`). The caller
    sets the model's mode (``eval()`` for evaluation).
    """
    import numpy as np
    import torch

    from .data import batches, collate

    outs: list[Any] = []
    order: list[Any] = []
    with torch.no_grad(), autocast(device, dtype):
        for idx in batches(encoded, batch_size, shuffle=False, seed=0):
            b = to_device(collate(encoded, idx, pad_id), device)
            outs.append(forward({k: v for k, v in b.items() if k != "labels"}).float().cpu())
            order.append(idx)
    if not outs:
        return np.zeros((0, 1), dtype=np.float32)
    logits = torch.cat(outs).numpy()                                           # (N, C)
    out = np.empty_like(logits)
    out[np.concatenate(order)] = logits
    return out


def make_accelerator(device: torch.device, dtype: Any, *,
                     find_unused_parameters: bool = False,
                     track: Tracking | None = None) -> Any:
    """An ``Accelerator`` for ``device`` and the autocast ``dtype`` (device placement is ours).

    Accelerate keeps its state per process and refuses a second ``Accelerator`` with another
    precision; a single process (tests, one command probing on the CPU then on a GPU) resets
    that state; a distributed run must keep one device type and precision.
    ``find_unused_parameters``: for DDP when a step leaves parameters unused (multi-task
    training: the other tasks' heads). ``track``: log with that tracker (:func:`tracking`).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(precision_of(dtype), "no")
    want = "cpu" if device.type != "cuda" else "cuda"
    if want == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    kwargs = {"cpu": want == "cpu", "mixed_precision": mixed, "device_placement": False,
              "kwargs_handlers": [DistributedDataParallelKwargs(
                  find_unused_parameters=find_unused_parameters)]}
    if track is not None:
        kwargs.update(log_with=track.kind, project_dir=str(track.log_dir))

    def fits(acc: Any) -> bool:
        return bool(acc.device.type == want and acc.mixed_precision == mixed)

    try:
        accelerator = Accelerator(**kwargs)
        if fits(accelerator):
            return accelerator
    except ValueError:
        pass
    if PartialState._shared_state.get("distributed_type", DistributedType.NO) != \
            DistributedType.NO:
        raise DeviceError(f"this distributed run is set up for another device or precision "
                          f"than {device} {precision_of(dtype)}",
                          hint="use one --device and --precision for the whole run")
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(**kwargs)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainPlan:
    """What one training run does: its length, optimiser settings and how it reports."""

    total_steps: int
    epochs: int
    lr: float
    weight_decay: float
    warmup: float
    label: str                       # names the run in errors: "task 'cola'"
    task: str | None = None          # the progress events' task
    stage: Stage = Stage.FINE_TUNE   # Stage.FINE_TUNE (probe) or Stage.MTL
    message: str | None = None       # progress message; None: "epoch e/E"
    grad_clip: float = GRAD_CLIP
    some_parameters_unused: bool = False   # a step may not use every parameter (DDP needs it)
    config: Mapping[str, Any] | None = None   # extra hyperparameters for the tracker


@dataclass(frozen=True)
class StepInfo:
    """What the per-step hook sees: after backward, before clipping and the optimizer step."""

    step: int              # 0-based index of the step in the run
    epoch: int             # 0-based
    batch_size: int
    loss: Any              # the step's loss, detached (device scalar)
    grad_scale: float      # fp16 loss scale (1.0 otherwise): gradients read now are * this


@dataclass(frozen=True)
class EpochStats:
    """One epoch's training losses by group (a task), from one host copy at its end."""

    epoch: int                                       # 0-based
    mean_loss: Mapping[str, float]                   # group -> mean of its batch losses
    example_loss: Mapping[str, float]                # group -> sum(loss * B) / examples
    examples: Mapping[str, int]                      # group -> examples seen
    steps: int
    seconds: float


class Trainer:
    """Train ``model`` with the recipe of the module docstring, one epoch at a time.

    ``trainer.epoch(e, batches, loss_of)`` runs one epoch: ``batches`` yields ``(group,
    item)`` pairs (group: the task the batch belongs to), ``loss_of(group, item)`` returns the
    batch's scalar loss and its number of examples, and runs its forward inside
    ``trainer.autocast()`` on ``trainer.model`` (the DDP wrapper under torchrun).
    Data-parallel (``data_parallel``, DDP over all ranks): every rank gets the same batches,
    ``loss_of`` returns this rank's share of the global batch's mean loss times W
    (:func:`distributed.rank_part`) and the *global* batch size, and the epoch's losses are
    averaged over ranks, so :class:`EpochStats` equal one process's. ``on_step``
    is the hook of :class:`StepInfo`; ``extra_metrics()`` adds to every progress event.
    Inside :func:`tracking`, curves go to the tracker; call :meth:`finish` when done (it
    closes the tracker; a no-op otherwise).
    """

    def __init__(self, model: Any, plan: TrainPlan, *, device: Any, dtype: Any,
                 progress: ProgressFn | None = None,
                 on_step: Callable[[StepInfo], None] | None = None,
                 extra_metrics: Callable[[], Mapping[str, float]] | None = None,
                 data_parallel: bool | None = None) -> None:
        import torch

        self.plan, self.device, self.dtype = plan, device, dtype
        self.progress, self.on_step, self.extra_metrics = progress, on_step, extra_metrics
        self.track = current_tracking()
        self.accelerator = make_accelerator(
            device, dtype, find_unused_parameters=plan.some_parameters_unused, track=self.track)
        # DDP over all processes (None: whenever there are several); False: this process
        # trains alone (task parallelism: each rank its own unit, distributed.py)
        ddp = self.accelerator.num_processes > 1 if data_parallel is None else data_parallel
        self.ddp = bool(ddp and self.accelerator.num_processes > 1)
        self.model = (self.accelerator.prepare_model(model, device_placement=False)
                      if self.ddp else model)
        optimizer = make_optimizer(model, lr=plan.lr, weight_decay=plan.weight_decay,
                                   device=device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_schedule(plan.total_steps, plan.warmup))
        self.optimizer = self.accelerator.prepare_optimizer(optimizer, device_placement=False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = self.seen = self.current_epoch = 0
        self._pending: list[tuple[int, int, Any]] = []    # (step, epoch, loss) not yet checked
        self._lrs: list[float] = []                       # the lr of each pending step
        self._recent: list[float] = []
        self._last_emit = -math.inf
        self._emitted = -1
        self._t0 = time.perf_counter()
        if self.track is not None:
            self._start_tracker()

    def _start_tracker(self) -> None:
        track, plan = self.track, self.plan
        assert track is not None
        name = run_name(plan.label)
        config: dict[str, Any] = {"label": plan.label, "task": plan.task or "",
                                  "stage": str(plan.stage.value), "lr": plan.lr,
                                  "epochs": plan.epochs, "total_steps": plan.total_steps,
                                  "weight_decay": plan.weight_decay, "warmup": plan.warmup,
                                  "grad_clip": plan.grad_clip,
                                  "precision": precision_of(self.dtype),
                                  "device": str(self.device)}
        config.update({k: v for k, v in (plan.config or {}).items()
                       if isinstance(v, (bool, int, float, str))})
        init: dict[str, Any] = {}
        if track.kind == "wandb":   # WANDB_MODE (e.g. offline) is read by wandb itself
            init = {"wandb": {"name": name, "dir": str(track.log_dir)}}
        else:                       # a rerun of the same run gets its own directory
            base, k = name, 2
            while (track.log_dir / name).exists():
                name, k = f"{base}-{k}", k + 1
        track.log_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.init_trackers(track.project if track.kind == "wandb" else name,
                                       config=config, init_kwargs=init)

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Log ``values`` (e.g. the dev metrics of an epoch) at ``step`` (default: the number
        of steps trained so far) to the tracker, if any."""
        if self.track is None:
            return
        self.accelerator.log({k: float(v) for k, v in values.items()},
                             step=self.step if step is None else step)

    def finish(self) -> None:
        """Close the tracker (flush the event files); safe to call more than once."""
        if self.track is not None:
            self.track = None
            self.accelerator.end_training()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The mixed-precision context of the forward pass (Accelerate's)."""
        return self.accelerator.autocast()  # type: ignore[no-any-return]

    def epoch(self, epoch: int, batches: Iterable[tuple[str, T]],
              loss_of: Callable[[str, T], tuple[Any, int]]) -> EpochStats:
        """Train one epoch (0-based ``epoch``); see the class docstring."""
        import torch

        self.model.train()
        t0 = time.perf_counter()
        loss_sum: dict[str, Any] = {}      # group -> sum of batch losses (device, float64)
        weighted: dict[str, Any] = {}      # group -> sum of loss * B
        n_batches: dict[str, int] = {}
        examples: dict[str, int] = {}
        self._report(epoch, force=True)
        for group, item in batches:
            interrupts.check()
            loss, B = loss_of(group, item)
            self._step(epoch, loss, B)
            detached = loss.detach().double()
            if group not in loss_sum:
                loss_sum[group] = torch.zeros((), dtype=torch.float64, device=detached.device)
                weighted[group] = torch.zeros_like(loss_sum[group])
            loss_sum[group] += detached
            weighted[group] += detached * B
            n_batches[group] = n_batches.get(group, 0) + 1
            examples[group] = examples.get(group, 0) + B
            if len(self._pending) >= CHECK_STEPS or \
                    time.perf_counter() - self._last_emit >= EMIT_SECONDS:
                self._report(epoch, force=False)
        self._report(epoch, force=True)
        names = list(loss_sum)
        stacked = torch.stack([*loss_sum.values(), *weighted.values()]) if names else None
        if self.ddp and stacked is not None:  # every rank has the same groups and batches
            import torch.distributed as dist

            dist.all_reduce(stacked)
            stacked = stacked / self.accelerator.num_processes
        values = stacked.cpu().tolist() if stacked is not None else []
        stats = EpochStats(
            epoch, {t: values[i] / n_batches[t] for i, t in enumerate(names)},
            {t: values[len(names) + i] / max(examples[t], 1) for i, t in enumerate(names)},
            examples, sum(n_batches.values()), time.perf_counter() - t0)
        self.log_metrics({"train/epoch": epoch + 1, **{f"train/epoch_loss/{t}": v
                                                       for t, v in stats.example_loss.items()}})
        return stats

    def _step(self, epoch: int, loss: Any, B: int) -> None:
        """Backward, the hook, clipping, the optimizer and schedule step."""
        acc = self.accelerator
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        if self.on_step is not None:
            scale = float(acc.scaler.get_scale()) if acc.scaler is not None else 1.0
            self.on_step(StepInfo(self.step, epoch, B, loss.detach(), scale))
        acc.clip_grad_norm_(self.params, self.plan.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]    # the lr this step used (a float)
        self.optimizer.step()
        self.scheduler.step()
        self._pending.append((self.step, epoch, loss.detach()))
        self._lrs.append(float(lr))
        self.step += 1
        self.seen += B

    def _report(self, epoch: int, *, force: bool) -> None:
        """Check the pending losses (one host copy); emit progress if it is time."""
        self.check_finite()
        now = time.perf_counter()
        if not ((force and self.step != self._emitted) or now - self._last_emit >= EMIT_SECONDS):
            return
        self._last_emit, self._emitted = now, self.step
        self.current_epoch = epoch
        metrics: dict[str, float] = {}
        if self._recent:
            metrics["loss"] = sum(self._recent) / len(self._recent)
        if self.step:
            metrics["ex/s"] = self.seen / max(now - self._t0, 1e-9)
        if self.extra_metrics is not None:
            metrics.update(self.extra_metrics())
        plan = self.plan
        emit(self.progress, plan.stage, task=plan.task, done=self.step, total=plan.total_steps,
             message=plan.message or f"epoch {epoch + 1}/{plan.epochs}", metrics=metrics)

    def check_finite(self) -> None:
        """Raise :class:`TrainingError` at the first non-finite loss not yet checked."""
        import torch

        if not self._pending:
            return
        values = torch.stack([loss for _, _, loss in self._pending]).float().cpu().tolist()
        for (step, epoch, _), value in zip(self._pending, values, strict=True):
            if not math.isfinite(value):
                self._pending.clear()
                self._lrs.clear()
                lr = self.plan.lr
                fp16 = precision_of(self.dtype) == "fp16"
                raise TrainingError(
                    f"{self.plan.label}: the training loss became {value} at step {step + 1} "
                    f"of {self.plan.total_steps} (epoch {epoch + 1}) with learning rate "
                    f"{lr:g}; training diverged",
                    hint=f"lower --lr (e.g. --lr {lr / 10:g})"
                    + (" or use --precision bf16/fp32" if fp16 else ""),
                    task=self.plan.task, step=step + 1, lr=lr)
        if self.track is not None:
            for (step, _, _), value, lr in zip(self._pending, values, self._lrs, strict=True):
                self.accelerator.log({"train/loss": value, "train/lr": lr}, step=step + 1)
        self._recent.extend(values)
        del self._recent[:-_RECENT]
        self._pending.clear()
        self._lrs.clear()

    def elapsed(self) -> float:
        """Seconds since the trainer was built."""
        return time.perf_counter() - self._t0


def batches_of(group: str, items: Iterable[T]) -> Iterator[tuple[str, T]]:
    """``(group, item)`` for every item: the batches of one task for :meth:`Trainer.epoch`."""
    for item in items:
        yield group, item
