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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import results
from .config import ProbeSettings, RunSettings
from .errors import ConfigError, DataError, GradtsError
from .progress import ProgressFn, Stage, emit
from .signal import Measure, parse_choice
from .store import Store
from .tasks.spec import TaskSpec
from .training import precision_of

__all__ = ["DEV_EVAL_MAX", "INSTANCES_PER_CHUNK", "PROBE_VERSION", "ProbeOutcome", "ProbeRun",
           "probe_settings", "probe_tasks"]

INSTANCES_PER_CHUNK = 8192   # instance matrices per instances-NNNNN.safetensors file
DEV_EVAL_MAX = 2000          # dev examples scored after fine-tuning (a cheap sanity check)
PROBE_VERSION = 1            # bump when the computation changes: part of every probe key


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
# Settings, keys
# ---------------------------------------------------------------------------------------------
def probe_settings(probe: ProbeSettings, run: RunSettings, precision: str) -> dict[str, Any]:
    """The settings part of a probe key (``precision`` resolved: fp32, bf16 or fp16)."""
    return {
        "epochs": probe.epochs, "batch_size": probe.batch_size, "lr": probe.lr,
        "max_length": probe.max_length, "max_train_examples": probe.max_train_examples,
        "warmup": probe.warmup, "weight_decay": probe.weight_decay, "seed": run.seed,
        "precision": precision, "instances": bool(probe.instances), "version": PROBE_VERSION,
    }


def _readable_model_name(ref: Any) -> str:
    """A short human-readable model name for the store path (hub id, or the directory)."""
    if ref.commit or not Path(ref.name).expanduser().exists():
        return ref.name
    parts = Path(ref.path).resolve().parts
    return "/".join(parts[-2:]) if parts[-1] in ("model", "models") else parts[-1]


def _check_settings(probe: ProbeSettings) -> ProbeSettings:
    """``probe`` checked, its measure parsed to a :class:`Measure`."""
    measure = parse_choice(Measure, probe.measure, "importance measure", "--measure")
    for name, value, low in (("epochs", probe.epochs, 1), ("batch-size", probe.batch_size, 1),
                             ("max-length", probe.max_length, 8)):
        if value is not None and value < low:
            raise ConfigError(f"--{name} must be at least {low}, not {value}")
    if probe.max_train_examples is not None and probe.max_train_examples < 1:
        raise ConfigError(f"--max-train-examples must be at least 1, not "
                          f"{probe.max_train_examples}")
    if not (probe.lr >= 0 and math.isfinite(probe.lr)):
        raise ConfigError(f"--lr must be a finite number >= 0, not {probe.lr}")
    if not 0.0 <= probe.warmup < 1.0:
        raise ConfigError(f"probe warmup must be a fraction in [0, 1), not {probe.warmup}")
    if probe.weight_decay < 0:
        raise ConfigError(f"probe weight_decay must be >= 0, not {probe.weight_decay}")
    return dataclasses.replace(probe, measure=measure)


# ---------------------------------------------------------------------------------------------
# The run's shared context
# ---------------------------------------------------------------------------------------------
@dataclass
class ProbeContext:
    """What every task of one run shares: the model, tokenizer, device, settings."""

    ref: Any
    config: Any
    tokenizer: Any
    device: Any
    dtype: Any                  # autocast dtype or None (fp32)
    run: RunSettings
    probe: ProbeSettings
    store: Store
    settings: dict[str, Any]
    model_name: str
    timings: dict[str, float] = field(default_factory=dict)
    force: bool = False         # --force: recompute the tokens caches too (e.g. a damaged one)

    @property
    def measure(self) -> Measure:
        return Measure(self.probe.measure)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)


def context(model: str, run: RunSettings, probe: ProbeSettings, store: Store) -> ProbeContext:
    """Resolve the model, device and precision once for all tasks of a run."""
    from . import heads, models
    from .errors import UnsupportedArchitectureError

    probe = _check_settings(probe)
    t0 = time.perf_counter()
    device = models.resolve_device(run.device)
    dtype = models.resolve_precision(run.precision, device)
    ref = models.resolve_model(model, run.revision, trust_remote_code=run.trust_remote_code)
    config = models.read_config(ref)
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in heads.SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"model {ref.name} is a {model_type!r} model, which gradts cannot gate",
            hint=f"use a model of a supported family: {', '.join(heads.SUPPORTED_MODEL_TYPES)}")
    if not heads.supports_measure(model_type, probe.measure):
        raise UnsupportedArchitectureError(
            f"the {probe.measure} measure is not defined for {model_type!r} models like "
            f"{ref.name}", hint="use --measure gate or qkv")
    models.check_weights(ref)  # before anything is cached: a broken model leaves no trace
    tokenizer = models.load_tokenizer(ref)
    # the one max-length rule (models.resolve_max_length); the key records the resolved value
    probe = dataclasses.replace(probe, max_length=models.resolve_max_length(
        probe.max_length, config, tokenizer, model=ref.name))
    ctx = ProbeContext(ref, config, tokenizer, device, dtype, run, probe, store,
               probe_settings(probe, run, precision_of(dtype)), _readable_model_name(ref))
    ctx.timings["resolve_s"] = time.perf_counter() - t0
    return ctx


def _key(ctx: ProbeContext, spec: TaskSpec) -> Any:
    from . import data

    return results.probe_key(
        ctx.store, model_cache_id=ctx.ref.cache_id, model_name=ctx.model_name, task=spec.name,
        task_fingerprint=spec.fingerprint(),
        data_fingerprint=data.data_fingerprint(spec, store=ctx.store),
        measure=str(ctx.measure), settings=ctx.settings)


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
    probe = _check_settings(probe)
    if not tasks:
        raise ConfigError("no tasks to probe", hint="pass --task NAME or --suite NAME")
    ctx = context(model, run, probe, store)
    ctx.force = force
    outcomes = []
    for spec in tasks:
        interrupts.check()
        outcomes.append(_probe_one(ctx, spec, force=force, progress=progress))
    return ProbeRun(model, ctx.ref.cache_id, ctx.measure, tuple(outcomes))


def _cached(ctx: ProbeContext, spec: TaskSpec, key: Any, t0: float,
            progress: ProgressFn | None) -> ProbeOutcome:
    entry = ctx.store.entry(key, verify=True)  # a damaged entry is reported, never used
    result = results.read_result(ctx.store, entry, verify=False)
    emit(progress, Stage.CACHED, task=spec.name, done=1, total=1, message=str(entry.path))
    return ProbeOutcome(spec.name, True, time.perf_counter() - t0, result)


def _probe_one(ctx: ProbeContext, spec: TaskSpec, *, force: bool,
               progress: ProgressFn | None) -> ProbeOutcome:
    from . import data

    t0 = time.perf_counter()
    key = _key(ctx, spec)
    if not force and ctx.store.exists(key):
        return _cached(ctx, spec, key, t0, progress)
    emit(progress, Stage.LOAD, task=spec.name, message="loading data")
    split = data.load_split(spec, "train", store=ctx.store,
                            max_examples=ctx.probe.max_train_examples)
    key2 = _key(ctx, spec)  # a Hub dataset's revision is known only after its first download
    if key2 != key:
        key = key2
        if not force and ctx.store.exists(key):
            return _cached(ctx, spec, key, t0, progress)
    with ctx.store.lock(key):
        if not force and ctx.store.exists(key):  # another process finished it meanwhile
            return _cached(ctx, spec, key, t0, progress)
        encoded = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                    max_length=ctx.probe.max_length, store=ctx.store,
                                    force=force)
        _check_labels(spec, encoded.labels)
        load_s = time.perf_counter() - t0
        with ctx.store.writer(key) as w:
            info = _compute(ctx, spec, encoded, w, progress)
            info["timings"]["load_s"] = round(load_s + info["timings"].pop("build_s"), 3)
            w.info.update(info)  # type: ignore[attr-defined]
    entry = ctx.store.entry(key, verify=False)
    result = results.read_result(ctx.store, entry, verify=False)
    seconds = time.perf_counter() - t0
    emit(progress, Stage.DONE, task=spec.name, done=1, total=1, message=str(entry.path),
         metrics={"seconds": seconds})
    return ProbeOutcome(spec.name, False, seconds, result)


def _check_labels(spec: TaskSpec, labels: np.ndarray) -> None:
    """Every training label must fit the head: ids in [0, n_out), finite regression values,
    and a classification task has at least two classes among its training examples."""
    if spec.kind == "regression":
        bad = np.flatnonzero(~np.isfinite(labels))
        if bad.size:
            raise DataError(f"task '{spec.name}': train example {int(bad[0])} has no label "
                            f"({bad.size} such examples)", hint="every train example needs a "
                            "label", task=spec.name)
        return
    n_out = spec.num_outputs
    bad = np.flatnonzero((labels < 0) | (labels >= n_out))
    if bad.size:
        value = int(labels[bad[0]])
        why = ("has no label" if value < 0 else
               f"has label id {value}, which does not fit the task's {n_out} labels "
               f"({', '.join(spec.labels)})")
        raise DataError(f"task '{spec.name}': train example {int(bad[0])} {why}"
                        + (f" ({bad.size} such examples)" if bad.size > 1 else ""),
                        hint="fix the data, or redeclare the task's labels", task=spec.name)
    present = np.unique(labels)
    if labels.size > 1 and present.size < 2:
        raise DataError(f"task '{spec.name}': every train example has the one label "
                        f"'{spec.labels[int(present[0])]}', so there is no class to tell apart",
                        hint="check the label column, or use more training examples "
                             "(--max-train-examples)", task=spec.name)


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


def _compute(ctx: ProbeContext, spec: TaskSpec, encoded: Any, w: Any,
             progress: ProgressFn | None) -> dict[str, Any]:
    import torch

    from . import importance

    t0 = time.perf_counter()
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.run.seed)
        net, layout = build_probe_model(ctx, spec)
        build_s = time.perf_counter() - t0
        train = fine_tune(ctx, spec, net, layout, encoded, progress)
        dev = _dev_metrics(ctx, spec, net, progress)
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
    }


def pass_settings(ctx: ProbeContext, *, chunk_size: int | None = None) -> Any:
    """The ``after`` pass's settings of this run (:class:`importance.PassSettings`)."""
    from .importance import PassSettings

    return PassSettings(measure=ctx.measure, batch_size=ctx.probe.batch_size, pad_id=ctx.pad_id,
                        device=ctx.device, dtype=ctx.dtype,
                        keep_instances=bool(ctx.probe.instances),
                        chunk_size=chunk_size or INSTANCES_PER_CHUNK, lr=ctx.probe.lr)


def after_pass(ctx: ProbeContext, spec: TaskSpec, net: Any, layout: Any, encoded: Any, w: Any,
               progress: ProgressFn | None) -> dict[str, Any]:
    """The ``after`` pass of this run (:func:`importance.importance_pass`); ``w``: the writer."""
    from .importance import importance_pass

    return importance_pass(net, layout, encoded, spec.kind, pass_settings(ctx), writer=w,
                           task=spec.name, progress=progress)


def fine_tune(ctx: ProbeContext, spec: TaskSpec, net: Any, layout: Any, encoded: Any,
              progress: ProgressFn | None, *, during: bool = True) -> dict[str, Any]:
    """Fine-tune ``net`` on ``encoded``; returns training metrics and ``during_raw`` (L, H).

    ``during=False`` trains without gates or per-step importance (``during_raw`` stays 0): a
    plain fine-tuning run, e.g. the baseline of ``benchmarks/probe.py``.
    """
    from . import data, importance, models
    from .training import Trainer, TrainPlan, batches_of, to_device

    probe, device = ctx.probe, ctx.device
    n = len(encoded)
    total = probe.epochs * math.ceil(n / probe.batch_size)
    if not during:
        hook: Any = None
    elif ctx.measure == Measure.GATE:
        hook = importance.GateDuring(net, layout, device)
    else:
        hook = importance.WeightGradDuring(net, layout, ctx.measure, device)
    gates = hook if isinstance(hook, importance.GateDuring) else None
    plan = TrainPlan(total_steps=total, epochs=probe.epochs, lr=probe.lr,
                     weight_decay=probe.weight_decay, warmup=probe.warmup,
                     label=f"task '{spec.name}'", task=spec.name, stage=Stage.FINE_TUNE)
    trainer = Trainer(net, plan, device=device, dtype=ctx.dtype, progress=progress,
                      on_step=hook)

    def loss_of(_task: str, idx: np.ndarray) -> tuple[Any, int]:
        batch = to_device(data.collate(encoded, idx, ctx.pad_id), device)
        if gates is not None:
            gates.open(len(idx), device=device)                                  # (B, L, H)
        with trainer.autocast():
            logits = trainer.model(**_inputs(batch))
        return models.per_example_loss(logits, batch["labels"], spec.kind).mean(), len(idx)

    last = None
    try:
        for epoch in range(probe.epochs):
            order = data.batches(encoded, probe.batch_size, shuffle=True,
                                 seed=ctx.run.seed + epoch)
            last = trainer.epoch(epoch, batches_of(spec.name, order), loss_of)
    finally:
        if hook is not None:
            hook.remove()
    seconds = trainer.elapsed()
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
    import torch

    from . import data
    from .metrics import compute_metrics
    from .training import autocast, to_device

    if "dev" not in spec.splits or DEV_EVAL_MAX <= 0:
        return None
    t0 = time.perf_counter()
    try:
        split = data.load_split(spec, "dev", store=ctx.store, max_examples=DEV_EVAL_MAX)
        if not split.has_labels:
            return None
        enc = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                max_length=ctx.probe.max_length, store=ctx.store,
                                force=ctx.force)
    except GradtsError as e:  # a dev-split problem must not cost the probe
        return {"error": e.message}
    emit(progress, Stage.DEV, task=spec.name, done=0, total=len(enc))
    net.eval()
    preds = []
    order = data.batches(enc, ctx.probe.batch_size, shuffle=False, seed=0)
    with torch.no_grad():
        for idx in order:
            batch = to_device(data.collate(enc, idx, ctx.pad_id), ctx.device)
            with autocast(ctx.device, ctx.dtype):
                logits = net(**_inputs(batch)).float()
            preds.append(logits.squeeze(-1) if spec.kind == "regression"
                         else logits.argmax(-1))
    net.train()
    flat = torch.cat(preds).cpu().numpy()
    y_pred = np.empty_like(flat)
    y_pred[np.concatenate(order)] = flat
    scores = {k: (None if v is None or not math.isfinite(v) else float(v))
              for k, v in compute_metrics(spec, y_pred, enc.labels).items()}
    out: dict[str, Any] = {"n": len(enc), "metric": spec.main_metric, **scores}
    out["main"] = scores.get(spec.main_metric)
    out["seconds"] = time.perf_counter() - t0
    emit(progress, Stage.DEV, task=spec.name, done=len(enc), total=len(enc),
         metrics={spec.main_metric: out["main"] if out["main"] is not None else float("nan")})
    return out
