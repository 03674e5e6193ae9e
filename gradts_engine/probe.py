"""Probe: fine-tune on one task, then measure how important each attention head is (DESIGN.md §2).

For every task ``T`` of a comparison, starting from the same pretrained weights and the same
seeded initialisation of a fresh task head (:func:`models.build_task_model`):

1. **Fine-tune** the encoder and the head on ``T``'s train split with the one training loop
   (:class:`training.Trainer`: AdamW, warm-up and linear decay, clipping, mixed precision,
   finite-loss check): length-grouped shuffled batches with dynamic padding
   (:func:`data.batches`, :func:`data.collate`), mean cross-entropy (squared error for
   regression) per batch. The trainer's per-step hook accumulates the ``during`` estimator
   (:class:`importance.GateDuring` with the ``gate`` measure, whose gates ``xi`` (B, L, H) are
   open during training; :class:`importance.WeightGradDuring` with ``qkv`` / ``legacy``).
2. **Importance pass** (the ``after`` estimator, the original GradTS's):
   :func:`importance.importance_pass`, the raw instance matrices ``R_i`` (N, L, H) written in
   chunks of :data:`INSTANCES_PER_CHUNK` with their split indices, and ``after_raw = mean_i
   R_i``. Task matrices: ``during = layer_l1(during_raw)``, ``after =
   minmax(layer_l1(after_raw))`` (:func:`importance.normalise`).
3. Optionally the fine-tuned probe's dev-split metrics (at most :data:`DEV_EVAL_MAX` examples,
   :func:`metrics.compute_metrics`).

The entry is written under :func:`results.probe_key` while holding the key's lock; it becomes
visible only when complete, so an interrupted run leaves the finished tasks cached and nothing
half-written, and the next run continues with the rest.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import results
from .config import ProbeSettings, RunSettings
from .errors import ConfigError, GradtsError
from .probe_context import (
    PROBE_VERSION,
    ProbeContext,
    check_labels,
    check_settings,
    context,
    probe_key,
    probe_settings,
    world_info,
)
from .progress import ProgressFn, Stage, emit
from .signal import Measure
from .store import Store
from .tasks.spec import TaskSpec

__all__ = ["DEV_EVAL_MAX", "INSTANCES_PER_CHUNK", "PROBE_VERSION", "ProbeContext", "ProbeOutcome",
           "ProbeRun", "after_pass", "build_probe_model", "check_labels", "context", "fine_tune",
           "pass_settings", "probe_settings", "probe_tasks"]

INSTANCES_PER_CHUNK = 8192   # instance matrices per instances-NNNNN.safetensors file
DEV_EVAL_MAX = 2000          # dev examples scored after fine-tuning (a cheap sanity check)


@dataclass(frozen=True)
class ProbeOutcome:
    """One task of a probe run: computed now or reused from the cache."""

    task: str
    cached: bool
    seconds: float
    result: results.ImportanceResult


@dataclass(frozen=True)
class ProbeRun:
    """Every task probed with one model, measure and settings."""

    model: str
    model_cache_id: str
    measure: Measure             # a str enum: == "gate"
    outcomes: tuple[ProbeOutcome, ...]


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def probe_tasks(model: str, tasks: Sequence[TaskSpec], *, store: Store, run: RunSettings,
                probe: ProbeSettings, force: bool = False,
                progress: ProgressFn | None = None,
                measure: Measure | str | None = None) -> ProbeRun:
    """Probe every task in ``tasks`` with ``model`` (see the module docstring).

    Cached results are reused at once (unless ``force``); the others are computed one after
    another, each written to the store as soon as it is finished. ``measure`` (a
    :class:`Measure` or its name) overrides ``probe.measure``.
    """
    from . import interrupts

    if measure is not None:
        probe = dataclasses.replace(probe, measure=measure)
    probe = check_settings(probe)
    if not tasks:
        raise ConfigError("no tasks to probe", hint="pass --task NAME or --suite NAME")
    ctx = context(model, run, probe, store)
    ctx.force = force
    from . import distributed

    ctx.world = distributed.init(ctx.device.type)
    if ctx.world.distributed:
        from .probe_parallel import probe_parallel

        return probe_parallel(ctx, model, tasks, force=force, progress=progress)
    outcomes = []
    for spec in tasks:
        interrupts.check()
        outcomes.append(probe_one(ctx, spec, force=force, progress=progress))
    return ProbeRun(model, ctx.ref.cache_id, ctx.measure, tuple(outcomes))


def cached_outcome(ctx: ProbeContext, spec: TaskSpec, key: Any, t0: float,
            progress: ProgressFn | None) -> ProbeOutcome:
    entry = ctx.store.entry(key, verify=True)  # a damaged entry is reported, never used
    result = results.read_result(ctx.store, entry, verify=False)
    emit(progress, Stage.CACHED, task=spec.name, done=1, total=1, message=str(entry.path))
    return ProbeOutcome(spec.name, True, time.perf_counter() - t0, result)


def probe_one(ctx: ProbeContext, spec: TaskSpec, *, force: bool,
               progress: ProgressFn | None) -> ProbeOutcome:
    from . import data

    t0 = time.perf_counter()
    key = probe_key(ctx, spec)
    if not force and ctx.store.exists(key):
        return cached_outcome(ctx, spec, key, t0, progress)
    emit(progress, Stage.LOAD, task=spec.name, message="loading data")
    split = data.load_split(spec, "train", store=ctx.store,
                            max_examples=ctx.probe.max_train_examples)
    key2 = probe_key(ctx, spec)  # a Hub dataset's revision is known only after its first download
    if key2 != key:
        key = key2
        if not force and ctx.store.exists(key):
            return cached_outcome(ctx, spec, key, t0, progress)
    with ctx.store.lock(key):
        if not force and ctx.store.exists(key):  # another process finished it meanwhile
            return cached_outcome(ctx, spec, key, t0, progress)
        encoded = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                    max_length=ctx.max_length, store=ctx.store, force=force)
        check_labels(spec, encoded.labels)
        load_s = time.perf_counter() - t0
        with ctx.store.writer(key) as w:
            info = compute(ctx, spec, encoded, w, progress)
            info["timings"]["load_s"] = round(load_s + info["timings"].pop("build_s"), 3)
            w.info.update(info)  # type: ignore[attr-defined]
    entry = ctx.store.entry(key, verify=False)
    result = results.read_result(ctx.store, entry, verify=False)
    seconds = time.perf_counter() - t0
    emit(progress, Stage.DONE, task=spec.name, done=1, total=1, message=str(entry.path),
         metrics={"seconds": seconds})
    return ProbeOutcome(spec.name, False, seconds, result)


# ---------------------------------------------------------------------------------------------
# One task: model, fine-tuning, dev metrics, importance pass
# ---------------------------------------------------------------------------------------------
def _single_task_module(task_model: Any, task: str) -> Any:
    """``task_model`` as a module whose forward takes the batch by name (what heads.* call)."""
    from torch import nn

    class SingleTask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tm = task_model
            self.config = task_model.config

        def forward(self, input_ids: Any, attention_mask: Any,
                    token_type_ids: Any = None) -> Any:
            return self.tm(task, input_ids, attention_mask, token_type_ids)

    return SingleTask()


def build_probe_model(ctx: ProbeContext, spec: TaskSpec) -> tuple[Any, Any]:
    """The pretrained encoder plus a fresh seeded head for ``spec``, on the device; its layout."""
    from . import heads, models

    task_model = models.build_task_model(ctx.ref, {spec.name: spec.num_outputs},
                                         seed=ctx.run.seed)
    net = _single_task_module(task_model, spec.name).to(ctx.device)
    return net, heads.head_layout(net)


def compute(ctx: ProbeContext, spec: TaskSpec, encoded: Any, w: Any,
             progress: ProgressFn | None) -> dict[str, Any]:
    import torch

    from . import importance

    t0 = time.perf_counter()
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.run.seed)
        net, layout = build_probe_model(ctx, spec)
        build_s = time.perf_counter() - t0
        got: dict[str, Any] = {}

        def dev_then_log(trainer: Any) -> None:   # the dev metrics, also to the tracker
            got["dev"] = d = _dev_metrics(ctx, spec, net, progress)
            trainer.log_metrics({f"dev/{k}": v for k, v in (d or {}).items() if k != "n"
                                 and isinstance(v, (int, float)) and k != "seconds"})

        train = fine_tune(ctx, spec, net, layout, encoded, progress, on_trained=dev_then_log)
        dev = got.get("dev")
        imp = after_pass(ctx, spec, net, layout, encoded, w, progress)
    during_raw = train.pop("during_raw")                  # (L, H) float64
    after_raw = imp.pop("after_raw")                      # (L, H) float64
    during, after = importance.normalise(during_raw, after_raw)
    w.save_arrays("task", {"during": during.astype(np.float32),
                           "after": after.astype(np.float32),
                           "during_raw": during_raw.astype(np.float32),
                           "after_raw": after_raw.astype(np.float32)})
    timings = {"build_s": build_s, "fine_tune_s": round(train.pop("seconds"), 3),
               "examples_per_s": round(train.pop("examples_per_s"), 2),
               "importance_s": round(imp.pop("seconds"), 3),
               "importance_examples_per_s": round(imp.pop("examples_per_s"), 2)}
    if dev is not None and "seconds" in dev:
        timings["dev_s"] = round(dev.pop("seconds"), 3)
    measure = ctx.measure
    return {
        "task_name": spec.name, "model_name": ctx.ref.name, "model_type": layout.model_type,
        "num_instances": len(encoded), "num_layers": layout.num_layers,
        "num_heads": layout.num_heads, "chunks": imp["chunks"], "measure": str(measure),
        "during_source": ("gate gradients of each step's batch loss"
                          if measure == Measure.GATE else
                          f"per-head {measure} weight gradients of each step's batch loss"),
        "timings": timings, "train": train, "dev": dev, "device": str(ctx.device),
        "precision": ctx.settings["precision"], "seed": ctx.run.seed,
        "max_length_seen": int(encoded.lengths().max()) if len(encoded) else 0,
        **world_info(ctx),
    }


def pass_settings(ctx: ProbeContext, *, chunk_size: int | None = None) -> Any:
    """The ``after`` pass's settings of this run (:class:`importance.PassSettings`)."""
    from .importance import PassSettings

    return PassSettings(measure=ctx.measure, batch_size=ctx.probe.batch_size, pad_id=ctx.pad_id,
                        device=ctx.device, dtype=ctx.dtype,
                        keep_instances=bool(ctx.probe.instances),
                        chunk_size=chunk_size or INSTANCES_PER_CHUNK, lr=ctx.probe.lr,
                        world=ctx.world if ctx.data_parallel else None)


def after_pass(ctx: ProbeContext, spec: TaskSpec, net: Any, layout: Any, encoded: Any, w: Any,
               progress: ProgressFn | None) -> dict[str, Any]:
    """The ``after`` pass of this run (:func:`importance.importance_pass`); ``w``: the writer."""
    from .importance import importance_pass

    return importance_pass(net, layout, encoded, spec.kind, pass_settings(ctx), writer=w,
                           task=spec.name, progress=progress)


def fine_tune(ctx: ProbeContext, spec: TaskSpec, net: Any, layout: Any, encoded: Any,
              progress: ProgressFn | None, *, during: bool = True,
              on_trained: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``net`` on ``encoded``; returns training metrics and ``during_raw`` (L, H).

    ``on_trained(trainer)`` runs after the last epoch, before the trainer's tracker is closed
    (the dev evaluation, whose metrics it may log with ``trainer.log_metrics``).

    ``during=False`` trains without gates or per-step importance (``during_raw`` stays 0): a
    plain fine-tuning run, e.g. the baseline of ``benchmarks/probe.py``. With
    ``ctx.data_parallel`` every rank takes its slice of each global batch (DDP, see
    :func:`distributed.rank_part`) and the gate gradients are summed over ranks before ``|.|``.
    """
    from . import data, distributed, importance, models
    from .training import Trainer, TrainPlan, batches_of, to_device

    probe, device = ctx.probe, ctx.device
    n = len(encoded)
    total = probe.epochs * math.ceil(n / probe.batch_size)
    world = ctx.world if ctx.data_parallel and ctx.world is not None else distributed.World()
    W = world.size

    def across_ranks(g: Any) -> Any:       # the global batch's gate gradient (L, H)
        return distributed.all_reduce_sum_(g, world) / W

    if not during:
        hook: Any = None
    elif ctx.measure == Measure.GATE:
        hook = importance.GateDuring(net, layout, device,
                                     reduce=across_ranks if W > 1 else None)
    else:  # DDP has averaged the weight gradients already
        hook = importance.WeightGradDuring(net, layout, ctx.measure, device)
    gates = hook if isinstance(hook, importance.GateDuring) else None
    plan = TrainPlan(total_steps=total, epochs=probe.epochs, lr=probe.lr,
                     weight_decay=probe.weight_decay, warmup=probe.warmup,
                     label=f"task '{spec.name}'", task=spec.name, stage=Stage.FINE_TUNE)
    trainer = Trainer(net, plan, device=device, dtype=ctx.dtype, progress=progress,
                      on_step=hook, data_parallel=W > 1)

    def loss_of(_task: str, idx: np.ndarray) -> tuple[Any, int]:
        local, weight = distributed.rank_part(idx, world)
        batch = to_device(data.collate(encoded, local, ctx.pad_id), device)
        if gates is not None:
            gates.open(len(local), device=device)                                # (B, L, H)
        with trainer.autocast():
            logits = trainer.model(**_inputs(batch))
        losses = models.per_example_loss(logits, batch["labels"], spec.kind)     # (B,)
        if W == 1:
            return losses.mean(), len(idx)
        return losses.sum() * weight, len(idx)

    last = None
    try:
        try:
            for epoch in range(probe.epochs):
                order = data.batches(encoded, probe.batch_size, shuffle=True,
                                     seed=ctx.run.seed + epoch)
                last = trainer.epoch(epoch, batches_of(spec.name, order), loss_of)
        finally:
            if hook is not None:
                hook.remove()
        seconds = trainer.elapsed()
        if on_trained is not None:
            on_trained(trainer)
    finally:
        trainer.finish()
    during_raw = (hook.sum.cpu().numpy() if hook is not None
                  else np.zeros((layout.num_layers, layout.num_heads)))
    final = last.example_loss.get(spec.name, math.nan) if last is not None else math.nan
    return {"during_raw": during_raw, "seconds": seconds,
            "examples_per_s": n * probe.epochs / max(seconds, 1e-9),
            "final_loss": float(final), "steps": trainer.step, "epochs": probe.epochs}


def _inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _dev_metrics(ctx: ProbeContext, spec: TaskSpec, net: Any,
                 progress: ProgressFn | None) -> dict[str, Any] | None:
    """The fine-tuned probe's metrics on (at most DEV_EVAL_MAX examples of) the dev split."""
    from . import data
    from .metrics import compute_metrics, predictions_from_outputs
    from .training import predict

    if "dev" not in spec.splits or DEV_EVAL_MAX <= 0:
        return None
    t0 = time.perf_counter()
    try:
        split = data.load_split(spec, "dev", store=ctx.store, max_examples=DEV_EVAL_MAX)
        if not split.has_labels:
            return None
        enc = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                max_length=ctx.max_length, store=ctx.store, force=ctx.force)
    except GradtsError as e:  # a dev-split problem must not cost the probe
        return {"error": e.message}
    emit(progress, Stage.DEV, task=spec.name, done=0, total=len(enc))
    net.eval()
    logits = predict(lambda inputs: net(**inputs), enc, batch_size=ctx.probe.batch_size,
                     pad_id=ctx.pad_id, device=ctx.device, dtype=ctx.dtype)     # (N, C)
    net.train()
    y_pred = predictions_from_outputs(spec, logits)
    scores = {k: (None if v is None or not math.isfinite(v) else float(v))
              for k, v in compute_metrics(spec, y_pred, enc.labels).items()}
    out: dict[str, Any] = {"n": len(enc), "metric": spec.main_metric, **scores}
    out["main"] = scores.get(spec.main_metric)
    out["seconds"] = time.perf_counter() - t0
    emit(progress, Stage.DEV, task=spec.name, done=len(enc), total=len(enc),
         metrics={spec.main_metric: out["main"] if out["main"] is not None else float("nan")})
    return out
