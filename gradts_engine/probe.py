"""Probe: fine-tune on one task, then measure how important each attention head is (DESIGN.md §2).

For every task ``T`` of a comparison, starting from the same pretrained weights and the same
seeded initialisation of a fresh task head (:func:`models.build_task_model`):

1. **Fine-tune** the encoder and the head on ``T``'s train split: AdamW (no weight decay on
   biases and normalisation weights), linear warm-up over ``warmup`` (10%) of the steps then
   linear decay to 0, gradient clipping at 1.0, length-grouped shuffled batches with dynamic
   padding (:func:`data.batches`, :func:`data.collate`), mean cross-entropy (squared error for
   regression) per batch; bf16/fp16 autocast on CUDA (a ``GradScaler`` for fp16).
   With the ``gate`` measure the head gates ``xi`` (B, L, H) are open during training, so
   every step's backward also gives ``d(batch loss)/dxi``; the ``during`` estimator is::

       during_raw[l, h] = sum_steps | sum_b d(batch loss)/dxi[b, l, h] |       # (L, H)
       during           = layer_l1(during_raw)

   accumulated on the device (no host copy per step). With ``qkv`` / ``legacy`` the step's
   parameter gradients of ``W_Q``, ``W_K``, ``W_V`` (which the step computes anyway) take the
   place of the gate gradient: per head, the mean absolute gradient over its rows of W_Q, W_K
   and W_V (``qkv``), or ``mean(|dW_K| + |dW_V|)`` over its input columns (``legacy``); these
   are gradients of the batch loss, not per-example. (ALBERT shares one set of projections
   across layers, so its per-step weight gradients cannot be split by layer: every layer that
   shares a module gets the same ``during`` row. Its ``gate`` and ``after`` results are exact.)
   Gradients are taken before clipping (the gradient of the batch loss itself).
2. **Importance pass** (the ``after`` estimator, the original GradTS's): the fine-tuned model
   in eval mode, no update, one pass over the same train split with the measure's per-example
   function (:func:`heads.gate_importance`: one forward and one backward per batch;
   :func:`heads.qkv_importance`; :func:`heads.legacy_importance`), giving the raw instance
   matrices ``R_i`` (N, L, H) and::

       after_raw = mean_i R_i            after = minmax(layer_l1(after_raw))

   The pass walks the split in contiguous chunks of :data:`INSTANCES_PER_CHUNK` examples
   (sorted by length inside a chunk, for little padding); each chunk's ``R`` is gathered on
   the device and moved to the host once, then written as ``instances-NNNNN.safetensors`` with
   the examples' split indices (sorted), so memory stays bounded for MNLI-size tasks.
3. Optionally the fine-tuned probe's dev-split metrics (at most :data:`DEV_EVAL_MAX` examples).

The entry is written under :func:`results.probe_key` while holding the key's lock; it becomes
visible only when complete, so an interrupted run leaves the finished tasks cached and nothing
half-written, and the next run continues with the rest. A finite loss is checked every few
steps (without a device sync per step); NaN or infinity stops with :class:`TrainingError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import results
from .config import ProbeSettings, RunSettings
from .errors import ConfigError, DataError, GradtsError, TrainingError, did_you_mean
from .progress import ProgressFn, emit
from .store import Store
from .tasks.spec import TaskSpec

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["DEV_EVAL_MAX", "INSTANCES_PER_CHUNK", "PROBE_VERSION", "ProbeOutcome", "ProbeRun",
           "probe_settings", "probe_tasks"]

INSTANCES_PER_CHUNK = 8192   # instance matrices per instances-NNNNN.safetensors file
DEV_EVAL_MAX = 2000          # dev examples scored after fine-tuning (a cheap sanity check)
PROBE_VERSION = 1            # bump when the computation changes: part of every probe key
GRAD_CLIP = 1.0
_EMIT_SECONDS = 0.5          # progress (and the finite-loss check) at most this often ...
_CHECK_STEPS = 50            # ... and at least every this many steps


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
    measure: str
    outcomes: tuple[ProbeOutcome, ...]


# ---------------------------------------------------------------------------------------------
# Settings, keys
# ---------------------------------------------------------------------------------------------
def _precision_name(dtype: Any) -> str:
    if dtype is None:
        return "fp32"
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), str(dtype))


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


def _check_settings(probe: ProbeSettings) -> None:
    from .heads import MEASURES

    if probe.measure not in MEASURES:
        raise ConfigError(f"unknown importance measure {probe.measure!r}",
                          hint=did_you_mean(probe.measure, MEASURES)
                          or f"choose --measure from {', '.join(MEASURES)}")
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


# ---------------------------------------------------------------------------------------------
# The run's shared context
# ---------------------------------------------------------------------------------------------
@dataclass
class _Ctx:
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

    def autocast(self) -> Any:
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def _context(model: str, run: RunSettings, probe: ProbeSettings, store: Store) -> _Ctx:
    from . import heads, models
    from .errors import UnsupportedArchitectureError

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
    tokenizer = models.load_tokenizer(ref)
    # the one max-length rule (models.resolve_max_length); the key records the resolved value
    probe = dataclasses.replace(probe, max_length=models.resolve_max_length(
        probe.max_length, config, tokenizer, model=ref.name))
    ctx = _Ctx(ref, config, tokenizer, device, dtype, run, probe, store,
               probe_settings(probe, run, _precision_name(dtype)), _readable_model_name(ref))
    ctx.timings["resolve_s"] = time.perf_counter() - t0
    return ctx


def _key(ctx: _Ctx, spec: TaskSpec) -> Any:
    from . import data

    return results.probe_key(
        ctx.store, model_cache_id=ctx.ref.cache_id, model_name=ctx.model_name, task=spec.name,
        task_fingerprint=spec.fingerprint(),
        data_fingerprint=data.data_fingerprint(spec, store=ctx.store),
        measure=ctx.probe.measure, settings=ctx.settings)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def probe_tasks(model: str, tasks: Sequence[TaskSpec], *, store: Store, run: RunSettings,
                probe: ProbeSettings, force: bool = False,
                progress: ProgressFn | None = None) -> ProbeRun:
    """Probe every task in ``tasks`` with ``model`` (see the module docstring).

    Cached results are reused at once (unless ``force``); the others are computed one after
    another, each written to the store as soon as it is finished.
    """
    _check_settings(probe)
    if not tasks:
        raise ConfigError("no tasks to probe", hint="pass --task NAME or --suite NAME")
    ctx = _context(model, run, probe, store)
    outcomes = []
    for spec in tasks:
        outcomes.append(_probe_one(ctx, spec, force=force, progress=progress))
    return ProbeRun(model, ctx.ref.cache_id, probe.measure, tuple(outcomes))


def _cached(ctx: _Ctx, spec: TaskSpec, key: Any, t0: float,
            progress: ProgressFn | None) -> ProbeOutcome:
    entry = ctx.store.entry(key, verify=True)  # a damaged entry is reported, never used
    result = results.read_result(ctx.store, entry, verify=False)
    emit(progress, "cached", task=spec.name, done=1, total=1, message=str(entry.path))
    return ProbeOutcome(spec.name, True, time.perf_counter() - t0, result)


def _probe_one(ctx: _Ctx, spec: TaskSpec, *, force: bool,
               progress: ProgressFn | None) -> ProbeOutcome:
    from . import data

    t0 = time.perf_counter()
    key = _key(ctx, spec)
    if not force and ctx.store.exists(key):
        return _cached(ctx, spec, key, t0, progress)
    emit(progress, "load", task=spec.name, message="loading data")
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
                                    max_length=ctx.probe.max_length, store=ctx.store)
        _check_labels(spec, encoded.labels)
        load_s = time.perf_counter() - t0
        with ctx.store.writer(key) as w:
            info = _compute(ctx, spec, encoded, w, progress)
            info["timings"]["load_s"] = round(load_s + info["timings"].pop("build_s"), 3)
            w.info.update(info)  # type: ignore[attr-defined]
    entry = ctx.store.entry(key, verify=False)
    result = results.read_result(ctx.store, entry, verify=False)
    seconds = time.perf_counter() - t0
    emit(progress, "done", task=spec.name, done=1, total=1, message=str(entry.path),
         metrics={"seconds": seconds})
    return ProbeOutcome(spec.name, False, seconds, result)


def _check_labels(spec: TaskSpec, labels: np.ndarray) -> None:
    """Every training label must fit the head: ids in [0, n_out), finite regression values."""
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


def build_probe_model(ctx: _Ctx, spec: TaskSpec) -> tuple[Any, Any]:
    """The pretrained encoder plus a fresh seeded head for ``spec``, on the device; its layout."""
    from . import heads, models

    task_model = models.build_task_model(ctx.ref, {spec.name: spec.num_outputs},
                                         seed=ctx.run.seed)
    net = _single_task_module(task_model, spec.name).to(ctx.device)
    return net, heads.head_layout(net)


def _compute(ctx: _Ctx, spec: TaskSpec, encoded: Any, w: Any,
             progress: ProgressFn | None) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.run.seed)
        net, layout = build_probe_model(ctx, spec)
        build_s = time.perf_counter() - t0
        train = fine_tune(ctx, spec, net, layout, encoded, progress)
        dev = _dev_metrics(ctx, spec, net, progress)
        imp = importance_pass(ctx, spec, net, layout, encoded, w, progress)
    during_raw = train.pop("during_raw")                  # (L, H) float64
    after_raw = imp.pop("after_raw")                      # (L, H) float64
    during, after = _normalise(during_raw, after_raw)
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
    return {
        "task_name": spec.name, "model_name": ctx.ref.name, "model_type": layout.model_type,
        "num_instances": len(encoded), "num_layers": layout.num_layers,
        "num_heads": layout.num_heads, "chunks": imp["chunks"], "measure": ctx.probe.measure,
        "during_source": ("gate gradients of each step's batch loss"
                          if ctx.probe.measure == "gate" else
                          f"per-head {ctx.probe.measure} weight gradients of each step's batch "
                          "loss"),
        "timings": timings, "train": train, "dev": dev, "device": str(ctx.device),
        "precision": ctx.settings["precision"], "seed": ctx.run.seed,
        "max_length_seen": int(encoded.lengths().max()) if len(encoded) else 0,
    }


def _normalise(during_raw: np.ndarray, after_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``during = layer_l1(during_raw)``, ``after = minmax(layer_l1(after_raw))`` (float64)."""
    try:
        from .correlate import layer_l1, minmax
    except ImportError:  # pragma: no cover - correlate is part of the package
        def layer_l1(m: np.ndarray) -> np.ndarray:
            m = np.asarray(m, dtype=np.float64)
            total = m.sum(axis=-1, keepdims=True)
            return np.divide(m, total, out=np.zeros_like(m), where=total != 0)

        def minmax(m: np.ndarray) -> np.ndarray:
            m = np.asarray(m, dtype=np.float64)
            lo, span = m.min(), m.max() - m.min()
            return (m - lo) / span if span > 0 else np.zeros_like(m)
    return layer_l1(during_raw), minmax(layer_l1(after_raw))


def _to_device(batch: Mapping[str, Any], device: Any) -> dict[str, Any]:
    nb = getattr(device, "type", "cpu") == "cuda"
    return {k: v.to(device, non_blocking=nb) for k, v in batch.items()}


def _inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _optimizer(net: Any, probe: ProbeSettings, device: Any) -> Any:
    """AdamW; no weight decay on biases and normalisation weights (1-d parameters)."""
    import torch

    decay = [p for p in net.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in net.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": probe.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"lr": probe.lr}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def linear_schedule(total_steps: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor of step ``s``: linear warm-up, then linear decay to 0."""
    warm = int(round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


def _weight_grad_importance(net: Any, layout: Any, measure: str) -> Callable[[], Any]:
    """For ``qkv``/``legacy`` ``during``: per-head |grad| of W_Q/W_K/W_V rows from ``.grad``.

    Returns a function computing the current step's (L, H) matrix on the device.
    """
    import torch

    from .heads import _qkv_blocks

    H, d = layout.num_heads, layout.head_dim
    blocks = _qkv_blocks(net, layout)
    modules = {b.name: net.get_submodule(b.name) for layer in blocks for b in layer}

    def rows_grad(name: str) -> Any:
        module = modules[name]
        g = module.weight.grad
        if g is None:
            return None
        return g.t() if type(module).__name__ == "Conv1D" else g   # (out, in)

    def step_matrix() -> Any:
        out = []
        for q, k, v in blocks:
            if measure == "legacy":
                gk, gv = rows_grad(k.name), rows_grad(v.name)
                if gk is None or gv is None:
                    out.append(torch.zeros(H, device=next(net.parameters()).device))
                    continue
                kv = gk.abs() + gv.abs()                                  # (out, H*d)
                out.append(kv.view(kv.shape[0], H, d).mean(dim=(0, 2)).float())
                continue
            means = []
            for b in (q, k, v):
                g = rows_grad(b.name)
                if g is None:
                    means.append(torch.zeros(H, device=next(net.parameters()).device))
                    continue
                rows = g[b.start:b.start + b.heads * d]                   # (heads*d, in)
                m = rows.abs().reshape(b.heads, -1).mean(-1).float()      # (heads,)
                means.append(m.repeat_interleave(H // b.heads))           # (H,)
            out.append(sum(means) / 3.0)
        return torch.stack(out)                                           # (L, H)

    return step_matrix


def fine_tune(ctx: _Ctx, spec: TaskSpec, net: Any, layout: Any, encoded: Any,
              progress: ProgressFn | None, *, during: bool = True) -> dict[str, Any]:
    """Fine-tune ``net`` on ``encoded``; returns training metrics and ``during_raw`` (L, H).

    ``during=False`` trains without gates or per-step importance (``during_raw`` stays 0): a
    plain fine-tuning run, e.g. the baseline of ``benchmarks/probe.py``.
    """
    import torch

    from . import data, heads, models

    probe, device = ctx.probe, ctx.device
    n = len(encoded)
    steps_per_epoch = math.ceil(n / probe.batch_size)
    total = probe.epochs * steps_per_epoch
    optimizer = _optimizer(net, probe, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, probe.warmup))
    scaler = torch.amp.GradScaler(device.type) if ctx.dtype == torch.float16 else None
    params = [p for p in net.parameters() if p.requires_grad]
    during_sum = torch.zeros(layout.num_layers, layout.num_heads, dtype=torch.float64,
                         device=device)                                      # (L, H)
    gates = heads.HeadGates(net, layout) if during and probe.measure == "gate" else None
    weight_grads = (_weight_grad_importance(net, layout, probe.measure)
                    if during and probe.measure != "gate" else None)
    pad = _pad_id(ctx.tokenizer)
    net.train()
    step = seen = 0
    pending: list[Any] = []      # device scalars: losses not yet checked for finiteness
    recent: list[float] = []
    last_emit = -math.inf
    emitted_step = -1
    epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
    t_start = time.perf_counter()

    def check(epoch: int, force_emit: bool) -> None:
        nonlocal last_emit, emitted_step
        if pending:
            values = torch.stack(pending).float().cpu().numpy()
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                at = step - len(values) + int(bad[0]) + 1
                raise TrainingError(
                    f"task '{spec.name}': the training loss became {values[bad[0]]} at step "
                    f"{at} of {total} (epoch {epoch + 1}) with learning rate {probe.lr:g}",
                    hint=f"lower --lr (e.g. --lr {probe.lr / 10:g})"
                    + (" or use --precision bf16/fp32" if ctx.dtype == torch.float16 else ""),
                    task=spec.name, step=at, lr=probe.lr)
            recent.extend(float(v) for v in values)
            del recent[:-20]
            pending.clear()
        now = time.perf_counter()
        if (force_emit and step != emitted_step) or now - last_emit >= _EMIT_SECONDS:
            last_emit, emitted_step = now, step
            metrics = {"loss": float(np.mean(recent))} if recent else {}
            if step:
                metrics["ex/s"] = seen / max(now - t_start, 1e-9)
            emit(progress, "fine-tune", task=spec.name, done=step, total=total,
                 message=f"epoch {epoch + 1}/{probe.epochs}", metrics=metrics)

    try:
        check(0, True)
        for epoch in range(probe.epochs):
            epoch_loss.zero_()
            order = data.batches(encoded, probe.batch_size, shuffle=True,
                                 seed=ctx.run.seed + epoch)
            for idx in order:
                batch = _to_device(data.collate(encoded, idx, pad), device)
                B = len(idx)
                xi = gates.open(B, device=device) if gates is not None else None   # (B, L, H)
                with ctx.autocast():
                    logits = net(**_inputs(batch))
                losses = models.per_example_loss(logits, batch["labels"], spec.kind)  # (B,)
                loss = losses.mean()
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if xi is not None and xi.grad is not None:
                    g = xi.grad.sum(0, dtype=torch.float64)                      # (L, H)
                    if scaler is not None:
                        g = g / scaler.get_scale()
                    during_sum += torch.where(torch.isfinite(g).all(), g.abs(), 0.0)
                elif weight_grads is not None:
                    g = weight_grads().double()                                  # (L, H)
                    during_sum += torch.where(torch.isfinite(g).all(), g, 0.0)
                torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                if gates is not None:
                    gates.close()
                step += 1
                seen += B
                detached = loss.detach()
                pending.append(detached)
                epoch_loss += detached.double() * B
                if len(pending) >= _CHECK_STEPS or (time.perf_counter() - last_emit
                                                    >= _EMIT_SECONDS):
                    check(epoch, False)
            check(epoch, True)
    finally:
        if gates is not None:
            gates.remove()
    seconds = time.perf_counter() - t_start
    return {"during_raw": during_sum.cpu().numpy(), "seconds": seconds,
            "examples_per_s": n * probe.epochs / max(seconds, 1e-9),
            "final_loss": float(epoch_loss.item()) / max(n, 1), "steps": step,
            "epochs": probe.epochs}


def _dev_metrics(ctx: _Ctx, spec: TaskSpec, net: Any,
                 progress: ProgressFn | None) -> dict[str, Any] | None:
    """The fine-tuned probe's metrics on (at most DEV_EVAL_MAX examples of) the dev split."""
    import torch

    from . import data

    if "dev" not in spec.splits or DEV_EVAL_MAX <= 0:
        return None
    t0 = time.perf_counter()
    try:
        split = data.load_split(spec, "dev", store=ctx.store, max_examples=DEV_EVAL_MAX)
        if not split.has_labels:
            return None
        enc = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                                max_length=ctx.probe.max_length, store=ctx.store)
    except GradtsError as e:  # a dev-split problem must not cost the probe
        return {"error": e.message}
    emit(progress, "dev", task=spec.name, done=0, total=len(enc))
    net.eval()
    preds = []
    order = data.batches(enc, ctx.probe.batch_size, shuffle=False, seed=0)
    pad = _pad_id(ctx.tokenizer)
    with torch.no_grad():
        for idx in order:
            batch = _to_device(data.collate(enc, idx, pad), ctx.device)
            with ctx.autocast():
                logits = net(**_inputs(batch)).float()
            preds.append(logits.squeeze(-1) if spec.kind == "regression"
                         else logits.argmax(-1))
    net.train()
    flat = torch.cat(preds).cpu().numpy()
    y_pred = np.empty_like(flat)
    y_pred[np.concatenate(order)] = flat
    try:
        from .metrics import compute_metrics
    except ImportError:  # pragma: no cover - metrics.py is part of the package
        compute_metrics = _metrics  # type: ignore[assignment]
    scores = {k: (None if v is None or not math.isfinite(v) else float(v))
              for k, v in compute_metrics(spec, y_pred, enc.labels).items()}
    out: dict[str, Any] = {"n": len(enc), "metric": spec.main_metric, **scores}
    out["main"] = scores.get(spec.main_metric)
    out["seconds"] = time.perf_counter() - t0
    emit(progress, "dev", task=spec.name, done=len(enc), total=len(enc),
         metrics={spec.main_metric: out["main"] if out["main"] is not None else float("nan")})
    return out


def _metrics(spec: TaskSpec, y_pred: np.ndarray, y_true: np.ndarray) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for m in spec.metrics:
        value: float | None
        if m == "accuracy":
            value = float(np.mean(y_true == y_pred))
        elif m == "f1":
            tp = float(np.sum((y_pred == 1) & (y_true == 1)))
            fp = float(np.sum((y_pred == 1) & (y_true != 1)))
            fn = float(np.sum((y_pred != 1) & (y_true == 1)))
            value = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        elif m == "matthews":
            from sklearn.metrics import matthews_corrcoef

            value = float(matthews_corrcoef(y_true, y_pred))
        elif m in ("pearson", "spearman"):
            from scipy import stats

            if np.std(y_pred) == 0 or np.std(y_true) == 0:
                value = None
            else:
                fn_ = stats.pearsonr if m == "pearson" else stats.spearmanr
                value = float(fn_(y_true.astype(np.float64), y_pred.astype(np.float64))[0])
        else:  # pragma: no cover - TaskSpec validates metric names
            continue
        out[m] = value
    return out


def importance_pass(ctx: _Ctx, spec: TaskSpec, net: Any, layout: Any, encoded: Any, w: Any,
                    progress: ProgressFn | None, *, chunk_size: int | None = None
                    ) -> dict[str, Any]:
    """The ``after`` pass: per-example matrices R (N, L, H) in chunks; ``after_raw = mean R``.

    ``w`` is the entry writer (``None`` keeps nothing but the mean).
    """
    import torch

    from . import data, heads, models

    probe, device = ctx.probe, ctx.device
    n = len(encoded)
    chunk_size = chunk_size or INSTANCES_PER_CHUNK
    L, H = layout.num_layers, layout.num_heads
    keep = bool(probe.instances) and w is not None
    pad = _pad_id(ctx.tokenizer)
    kind = spec.kind

    def loss_fn(output: Any, batch: Mapping[str, Any]) -> Any:
        return models.per_example_loss(output, batch["labels"], kind)        # (B,)

    gates = heads.HeadGates(net, layout) if probe.measure == "gate" else None
    if gates is not None:
        def measure(batch: Mapping[str, Any]) -> Any:
            return heads.gate_importance(net, batch, loss_fn, gates)
    elif probe.measure == "qkv":
        def measure(batch: Mapping[str, Any]) -> Any:
            return heads.qkv_importance(net, batch, loss_fn, layout)
    else:
        def measure(batch: Mapping[str, Any]) -> Any:
            return heads.legacy_importance(net, batch, loss_fn, layout)

    net.eval()
    total = torch.zeros(L, H, dtype=torch.float64, device=device)           # sum_i R_i
    lengths = encoded.lengths()
    chunks: list[str] = []
    done = 0
    last_emit = -math.inf
    t0 = time.perf_counter()
    emit(progress, "importance", task=spec.name, done=0, total=n)
    try:
        for c, start in enumerate(range(0, n, chunk_size)):
            idx = np.arange(start, min(n, start + chunk_size))
            order = idx[np.argsort(-lengths[idx], kind="stable")]            # longest first
            buf = torch.empty(len(idx), L, H, device=device) if keep else None  # (n_c, L, H)
            for s in range(0, len(order), probe.batch_size):
                b_idx = order[s:s + probe.batch_size]
                batch = _to_device(data.collate(encoded, b_idx, pad), device)
                with ctx.autocast():
                    R = measure(batch).to(device)                             # (B, L, H)
                total += R.sum(0, dtype=torch.float64)
                if buf is not None:
                    buf[torch.as_tensor(b_idx - start, device=device)] = R.float()
                done += len(b_idx)
                now = time.perf_counter()
                if now - last_emit >= _EMIT_SECONDS or done == n:
                    last_emit = now
                    emit(progress, "importance", task=spec.name, done=done, total=n,
                         metrics={"ex/s": done / max(now - t0, 1e-9)})
            if buf is not None:
                name = f"instances-{c:05d}"
                w.save_arrays(name, {"R": buf.cpu().numpy(), "index": idx.astype(np.int64)})
                chunks.append(f"{name}.safetensors")
    finally:
        if gates is not None:
            gates.remove()
    after_raw = (total / max(n, 1)).cpu().numpy()
    if not np.isfinite(after_raw).all():
        raise TrainingError(f"task '{spec.name}': the importance pass produced non-finite "
                            "gradients", hint=f"lower --lr (now {probe.lr:g})", task=spec.name)
    seconds = time.perf_counter() - t0
    return {"after_raw": after_raw, "chunks": chunks, "seconds": seconds,
            "examples_per_s": n / max(seconds, 1e-9)}
