"""The shared context of one probe run: model, tokenizer, device, settings and keys (DESIGN.md §4).

:func:`context` resolves the model, its tokenizer, the device and the precision once for all
tasks of a run and checks the settings against the model (supported family and measure, max
length); :func:`probe_settings` is the settings part of every probe key, :func:`probe_key`
the whole key of one task (model, task spec and data fingerprints, measure, settings).
:func:`check_labels` rejects training labels that do not fit the task head.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import results
from .config import ProbeSettings, RunSettings
from .errors import ConfigError, DataError
from .signal import Measure, parse_choice
from .store import Store
from .tasks.spec import TaskSpec
from .training import precision_of

__all__ = ["PROBE_VERSION", "ProbeContext", "check_labels", "check_settings", "context",
           "probe_key", "probe_settings"]

PROBE_VERSION = 1            # bump when the computation changes: part of every probe key


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


def check_settings(probe: ProbeSettings) -> ProbeSettings:
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
    world: Any = None           # distributed.World: this process's rank (None: one process)
    data_parallel: bool = False  # all ranks train one task together (DDP, sharded pass)

    @property
    def measure(self) -> Measure:
        return Measure(self.probe.measure)

    @property
    def max_length(self) -> int:
        """The resolved max length (:func:`models.resolve_max_length` ran in :func:`context`)."""
        assert self.probe.max_length is not None
        return int(self.probe.max_length)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)


def context(model: str, run: RunSettings, probe: ProbeSettings, store: Store) -> ProbeContext:
    """Resolve the model, device and precision once for all tasks of a run."""
    from . import heads, models
    from .errors import UnsupportedArchitectureError

    probe = check_settings(probe)
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
    ctx = ProbeContext(ref, config, tokenizer, device, dtype, run, probe, store,
               probe_settings(probe, run, precision_of(dtype)), ref.store_name)
    ctx.timings["resolve_s"] = time.perf_counter() - t0
    return ctx


def probe_key(ctx: ProbeContext, spec: TaskSpec) -> Any:
    """The store key of ``spec``'s probe in this run."""
    from . import data

    return results.probe_key(
        ctx.store, model_cache_id=ctx.ref.cache_id, model_name=ctx.model_name, task=spec.name,
        task_fingerprint=spec.fingerprint(),
        data_fingerprint=data.data_fingerprint(spec, store=ctx.store),
        measure=str(ctx.measure), settings=ctx.settings)


def check_labels(spec: TaskSpec, labels: np.ndarray) -> None:
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


def world_info(ctx: ProbeContext) -> dict[str, Any]:
    """Which rank computed an entry, out of how many, and how (recorded in its info)."""
    world = ctx.world
    if world is None or not world.distributed:
        return {}
    return {"distributed": {"rank": world.rank, "world_size": world.size,
                            "backend": world.backend,
                            "parallel": "data" if ctx.data_parallel else "task"}}
