"""MT-DNN-style multi-task training and evaluation (DESIGN.md §1 step 3, §2 "Trial stop rule").

One shared pretrained encoder, one head per task (:func:`models.build_task_model`), as in
MT-DNN (Liu et al. 2019) and the GradTS trials. The loss of a batch of task ``t`` is the mean
cross-entropy (classification) or squared error (regression) over its examples
(:func:`models.per_example_loss`), multiplied by ``aux_weight`` when ``t`` is an auxiliary task.

Each epoch pools the mini-batches of every task and shuffles them, so each step trains one
task. With ``temperature = 1`` every batch of every task is used once per epoch (sampling in
proportion to the task sizes ``n_t``); with ``temperature = T`` task ``t`` gets a share
``p_t ∝ n_t^(1/T)`` of the same number of steps (``T > 1`` flattens towards uniform): a task
that needs more batches than it has cycles through reshuffled ones, a task that needs fewer
uses a prefix. The steps run in the one training loop (:class:`training.Trainer`): AdamW
(weight decay off for biases and LayerNorm weights), a linear warm-up over the first
``round(warmup * steps)`` steps and a linear decay to zero, gradient-norm clipping at 1.0,
bf16/fp16 autocast on CUDA (fp16 with a gradient scaler), a finite-loss check.

After every epoch the primary task is evaluated on its dev split (or ``eval_split``, or an
index subset of it) with all its metrics; the best epoch is the one with the highest main
metric (the first on ties). Extra evaluation sets (``report``: a labelled test split, the
report part of a split dev set) are scored once, with the best epoch's weights, which are kept
in memory (never written to disk). A non-finite loss raises :class:`TrainingError`.

Auxiliary (or primary) training instances may be restricted to index subsets of their train
splits (``subsets``; GradTS-fg passes the selected instances).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .metrics import compute_metrics, predictions_from_outputs
from .mtl_data import (
    MTLData,
    effective_max_length,
    epoch_batches,
    epoch_schedule,
    load_data,
    take,
)
from .progress import Stage, emit

if TYPE_CHECKING:
    from .config import RunSettings
    from .data import Encoded
    from .models import ModelRef
    from .progress import ProgressFn
    from .store import Store
    from .tasks.spec import TaskSpec

__all__ = ["EpochRecord", "MTLResult", "MTLSettings", "effective_max_length", "epoch_schedule",
           "evaluate", "take", "train_mtl"]


@dataclass(frozen=True)
class MTLSettings:
    """Training settings of one multi-task run (the trial's settings plus optimiser details)."""

    epochs: int = 7
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int | None = None  # None: the model's limit, at most 512 (resolve_max_length)
    aux_weight: float = 1.0
    temperature: float = 1.0
    warmup: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_batch_size: int | None = None

    @classmethod
    def of(cls, settings: Any, **overrides: Any) -> MTLSettings:
        """Build from any settings object with some of these fields (e.g. ``TrialSettings``)."""
        if isinstance(settings, MTLSettings) and not overrides:
            return settings
        vals = {f.name: getattr(settings, f.name) for f in fields(cls)
                if settings is not None and getattr(settings, f.name, None) is not None}
        vals.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**vals)

    def check(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, not {self.lr}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, not {self.temperature}")
        if self.aux_weight < 0:
            raise ConfigError(f"aux weight must be non-negative, not {self.aux_weight}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warm-up fraction must be in [0, 1), not {self.warmup}")

    def key(self) -> dict[str, Any]:
        """The settings that change a trained model (for cache keys)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.pop("eval_batch_size")
        if d["max_length"] is None:
            # "the model's limit, at most 512" is 512 wherever an explicit 512 is valid (a
            # model of 512 positions or more), so it keeps the key runs were stored under;
            # on a shorter model an explicit 512 is refused, so the two never collide
            d["max_length"] = 512
        return d


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss per task, the primary's eval metrics, time."""

    epoch: int                               # 1-based
    train_loss: Mapping[str, float]          # task -> mean loss of its batches
    examples: Mapping[str, int]              # task -> training examples seen this epoch
    dev_metrics: Mapping[str, float]         # the primary's metrics on the eval set
    seconds: float


@dataclass(frozen=True)
class MTLResult:
    """A finished multi-task run (see the module docstring)."""

    primary: str
    aux: tuple[str, ...]
    seed: int
    epochs: tuple[EpochRecord, ...]
    best_epoch: int                          # 1-based
    best_metrics: Mapping[str, float]        # the primary's eval metrics at the best epoch
    main_metric: str
    seconds: float
    dev_predictions: np.ndarray              # (N,) best epoch: label ids or regression values
    dev_labels: np.ndarray                   # (N,)
    dev_index: np.ndarray                    # (N,) positions in the eval split
    eval_split: str = "dev"
    report_metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    train_sizes: Mapping[str, int] = field(default_factory=dict)
    examples_seen: Mapping[str, int] = field(default_factory=dict)
    # report set -> (predictions (n,), labels (n,)) at the best epoch (scored, never chosen on)
    report_predictions: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The best epoch's main metric (what trials compare)."""
        return float(self.best_metrics.get(self.main_metric, math.nan))

    @property
    def test_metrics(self) -> Mapping[str, float] | None:
        return self.report_metrics.get("test")


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate(model: Any, spec: TaskSpec, encoded: Encoded, *, batch_size: int, pad_id: int,
             device: Any, dtype: Any = None) -> tuple[dict[str, float], np.ndarray]:
    """All metrics of ``spec`` on ``encoded`` and the predictions (N,) in its order."""
    from .training import predict

    if len(encoded) == 0:
        return {m: math.nan for m in spec.metrics}, np.zeros(0)
    model.eval()
    logits = predict(lambda inputs: model(spec.name, **inputs), encoded,
                     batch_size=batch_size, pad_id=pad_id, device=device, dtype=dtype)
    model.train()
    preds = predictions_from_outputs(spec, logits)
    preds = preds.astype(np.float64 if spec.kind == "regression" else np.int64)
    return compute_metrics(spec, preds, encoded.labels), preds


# ---------------------------------------------------------------------------------------------
# training


def _check_call(primary: TaskSpec, aux: Sequence[TaskSpec],
                subsets: Mapping[str, np.ndarray] | None) -> list[str]:
    names = [primary.name, *[a.name for a in aux]]
    if len(set(names)) != len(names):
        raise ConfigError(f"a task appears twice in the multi-task set {names}")
    unknown = set(subsets or {}) - set(names)
    if unknown:
        raise ConfigError("subsets given for tasks not being trained: "
                          + ", ".join(sorted(unknown)))
    return names


def train_mtl(model: str | ModelRef, primary: TaskSpec, aux: Sequence[TaskSpec] = (), *,
              store: Store | None = None, run: RunSettings | None = None,
              settings: Any = None, seed: int | None = None,
              subsets: Mapping[str, np.ndarray] | None = None,
              eval_split: str = "dev", eval_index: np.ndarray | None = None,
              report: Mapping[str, tuple[str, np.ndarray | None]] | None = None,
              progress: ProgressFn | None = None, label: str | None = None,
              data_parallel: bool = False) -> MTLResult:
    """Train ``primary`` with the auxiliary tasks ``aux`` (see the module docstring).

    ``model``: a :class:`ModelRef` or a name for :func:`models.resolve_model`. ``settings``:
    :class:`MTLSettings` or any object with its fields (``TrialSettings``). ``seed`` defaults to
    ``run.seed``. ``subsets``: task -> train-split indices to use. ``eval_index``: positions
    in ``eval_split`` used for choosing the best epoch. ``report``: name -> (split, indices or
    None) scored with the best epoch's weights. ``label`` names the run in progress events.
    ``data_parallel``: under torchrun, all ranks train this one run together (DDP, each rank
    its slice of every global batch; the same result as one process); otherwise every process
    trains alone.
    """
    import torch

    from .config import RunSettings
    from .models import build_task_model, resolve_device, resolve_model, resolve_precision

    t_start = time.perf_counter()
    run = run or RunSettings()
    s = MTLSettings.of(settings)
    s.check()
    seed = run.seed if seed is None else int(seed)
    names = _check_call(primary, aux, subsets)
    ref = model if not isinstance(model, str) else resolve_model(
        model, run.revision, trust_remote_code=run.trust_remote_code)
    device = resolve_device(run.device)
    dtype = resolve_precision(run.precision, device)
    d = load_data(ref, primary, aux, s.max_length, store, subsets, eval_split, eval_index,
                  report)
    torch.manual_seed(seed)
    net = build_task_model(ref, {t: td.spec.num_outputs for t, td in d.tasks.items()},
                           seed=seed)
    net.to(device)
    from . import distributed

    world = distributed.current() if data_parallel else distributed.World()
    run_ = _Run(primary, names, s, seed, device, dtype, label or " + ".join(names), progress,
                world)
    records, best, best_state = run_.train(net, d)
    report_metrics: dict[str, dict[str, float]] = {}
    report_preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if d.report_sets:
        if best_state is not None and best[1] != s.epochs:
            net.load_state_dict(best_state)
        for name, enc in d.report_sets.items():
            report_metrics[name], pred = evaluate(net, primary, enc, batch_size=run_.eval_bs,
                                                  pad_id=d.pad_id, device=device, dtype=dtype)
            report_preds[name] = (pred, np.asarray(enc.labels))
    del net, best_state
    sizes = {t: td.n for t, td in d.tasks.items()}
    seen_total = {t: sum(r.examples.get(t, 0) for r in records) for t in d.tasks}
    return MTLResult(
        primary=primary.name, aux=tuple(a.name for a in aux), seed=seed,
        epochs=tuple(records), best_epoch=best[1], best_metrics=best[2],
        main_metric=primary.main_metric, seconds=time.perf_counter() - t_start,
        dev_predictions=best[3], dev_labels=np.asarray(d.eval_enc.labels),
        dev_index=d.dev_index, eval_split=eval_split, report_metrics=report_metrics,
        train_sizes=sizes, examples_seen=seen_total, report_predictions=report_preds)


_Best = tuple[float, int, dict[str, float], np.ndarray]   # (score, epoch, metrics, predictions)


@dataclass
class _Run:
    """One multi-task training run's settings, and its epochs on the training core."""

    primary: TaskSpec
    names: list[str]
    s: MTLSettings
    seed: int
    device: Any
    dtype: Any
    label: str
    progress: ProgressFn | None
    world: Any = None                # distributed.World: DDP over its ranks when several

    @property
    def eval_bs(self) -> int:
        return self.s.eval_batch_size or max(self.s.batch_size, 64)

    def train(self, net: Any, d: MTLData) -> tuple[list[EpochRecord], _Best, dict[str, Any] | None]:
        """Every epoch: train on the pooled batches, evaluate the primary, keep the best."""
        from . import distributed, models
        from .data import collate
        from .training import Trainer, TrainPlan, to_device

        s, primary = self.s, self.primary
        sizes = {t: td.n for t, td in d.tasks.items()}
        per_epoch = epoch_schedule(sizes, s.batch_size, s.temperature,
                                   np.random.default_rng(self.seed))
        plan = TrainPlan(total_steps=sum(per_epoch.values()) * s.epochs, epochs=s.epochs,
                         lr=s.lr, weight_decay=s.weight_decay, warmup=s.warmup,
                         label=f"multi-task run {self.label}", task=primary.name,
                         stage=Stage.MTL,
                         message=self.label, grad_clip=s.grad_clip,
                         some_parameters_unused=len(d.tasks) > 1)
        last_dev: dict[str, float] = {}
        world = self.world if self.world is not None else distributed.World()
        trainer = Trainer(net, plan, device=self.device, dtype=self.dtype,
                          progress=self.progress,
                          extra_metrics=lambda: {"epoch": float(trainer.current_epoch + 1),
                                                 **last_dev},
                          data_parallel=world.distributed)

        def loss_of(t: str, idx: np.ndarray) -> tuple[Any, int]:
            td = d.tasks[t]
            local, weight = distributed.rank_part(idx, world)   # all of idx in 1 process
            b = to_device(collate(td.train, local, d.pad_id), self.device)
            with trainer.autocast():
                logits = trainer.model(t, **{k: v for k, v in b.items() if k != "labels"})
            losses = models.per_example_loss(logits, b["labels"], td.spec.kind)   # (B,)
            loss = losses.mean() if not world.distributed else losses.sum() * weight
            return (loss * s.aux_weight if t != primary.name else loss), len(idx)

        rng = np.random.default_rng(self.seed)
        records: list[EpochRecord] = []
        best: _Best | None = None
        best_state: dict[str, Any] | None = None
        try:
            for epoch in range(1, s.epochs + 1):
                t0 = time.perf_counter()
                batches = epoch_batches(d, per_epoch, s.batch_size, self.seed, epoch, self.names,
                                        rng)
                stats = trainer.epoch(epoch - 1, batches, loss_of)
                metrics, preds = evaluate(net, primary, d.eval_enc, batch_size=self.eval_bs,
                                          pad_id=d.pad_id, device=self.device, dtype=self.dtype)
                trainer.log_metrics({f"dev/{k}": v for k, v in metrics.items()
                                     if isinstance(v, (int, float)) and math.isfinite(v)})
                score = metrics.get(primary.main_metric, math.nan)
                last_dev[primary.main_metric] = score
                if best is None or (math.isfinite(score)
                                    and (not math.isfinite(best[0]) or score > best[0])):
                    best = (score, epoch, metrics, preds)
                    if d.report_sets:
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in
                                      net.state_dict().items()}
                seen = {t: int(stats.examples.get(t, 0)) for t in d.tasks}
                train_loss = {t: stats.mean_loss[t] for t in d.tasks if t in stats.mean_loss}
                records.append(EpochRecord(epoch, train_loss, seen, metrics,
                                           time.perf_counter() - t0))
                emit(self.progress, Stage.MTL_EPOCH, task=primary.name, done=epoch,
                     total=s.epochs, message=self.label,
                     metrics={**{f"loss_{k}": v for k, v in train_loss.items()}, **metrics})
        finally:
            trainer.finish()   # closes the tracker, if any
        assert best is not None
        return records, best, best_state
