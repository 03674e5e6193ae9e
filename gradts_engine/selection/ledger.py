"""The run ledger: every multi-task run of a selection procedure, trained once (DESIGN.md §4).

GradTS-trial, GradTS-fg and ``gradts compare`` all train the same thing: the primary task
``P`` plus an ordered auxiliary set ``A`` (optionally only some instances of each auxiliary
task), with one seed, under fixed MTL settings and an evaluation plan. Each such run is a
store entry of kind ``trial-run`` whose key holds everything that changes it: the model, ``P``
and each task of ``A`` (spec fingerprint and data fingerprint), the probe entries the
selection read, the training settings, the precision, the seed, the evaluation plan, and for
instance subsets a digest of the kept index lists themselves. :class:`Ledger` is the only
code that builds these keys and the only place where a run is "loaded, or else trained and
written, under the key's lock"; a run asked for twice in one call is trained once, so a set
chosen by two selectors, or already trained by ``trial``, costs nothing more.
Callers ask for batches of runs (:meth:`Ledger.get_many`, :mod:`.ledger_parallel`): with one
process, each run in turn; under torchrun the batch's pending runs spread over the ranks.

The evaluation plan (:class:`EvalPlan`) says on which examples a run's best epoch is chosen
(all of ``P``'s dev split, or the selection part of it with ``--holdout-fraction``) and which
sets are scored at that epoch without influencing any choice (``P``'s labelled test split;
the held-out part of dev).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import interrupts
from ..errors import ConfigError, DataError
from ..mtl import EpochRecord, MTLResult, MTLSettings
from ..serialize import to_jsonable
from ..store import Key, Store, safe_component
from ..training import precision_name

if TYPE_CHECKING:
    from ..config import RunSettings
    from ..models import ModelRef
    from ..progress import ProgressFn
    from ..tasks.spec import TaskSpec
    from .ledger_parallel import DoneFn, StartFn, Unit

RUN_KIND = "trial-run"
SUBSETS_VERSION = 1          # the fg key format of instance subsets (was fg.FG_VERSION)

TrainFn = Callable[..., MTLResult]


# ---------------------------------------------------------------------------------------------
# the evaluation plan


@dataclass(frozen=True)
class EvalPlan:
    """Where runs are scored: best-epoch choice on ``select_index`` of dev, reports elsewhere."""

    select_index: np.ndarray | None          # (n,) dev positions choosing epochs; None: all
    report: Mapping[str, tuple[str, np.ndarray | None]]   # name -> (split, positions or None)
    sizes: Mapping[str, int]                 # name -> examples in that report set
    spec: Mapping[str, Any]                  # the part of run keys that describes the plan
    holdout_fraction: float | None = None

    @classmethod
    def build(cls, primary: TaskSpec, store: Store, holdout_fraction: float | None,
              seed: int) -> EvalPlan:
        """``P``'s test split as a report set when it is labelled; ``holdout_fraction`` of
        dev (a seeded permutation) held out as another, the rest used to choose epochs."""
        from .. import data

        report: dict[str, tuple[str, np.ndarray | None]] = {}
        sizes: dict[str, int] = {}
        if "test" in primary.splits:
            try:
                test = data.load_split(primary, "test", store=store)
                if test.has_labels:
                    report["test"] = ("test", None)
                    sizes["test"] = len(test)
            except DataError:
                pass
        spec: dict[str, Any] = {"split": "dev", "report": sorted(report)}
        if holdout_fraction is None:
            return cls(None, report, sizes, spec)
        if not 0.0 < holdout_fraction < 1.0:
            raise ConfigError(f"--holdout-fraction must be between 0 and 1, not "
                              f"{holdout_fraction}", hint="e.g. --holdout-fraction 0.5")
        n = len(data.load_split(primary, "dev", store=store))
        n_report = int(round(holdout_fraction * n))
        if n_report < 1 or n - n_report < 1:
            raise ConfigError(f"--holdout-fraction {holdout_fraction} leaves an empty part of "
                              f"'{primary.name}' dev ({n} examples)",
                              hint="choose a fraction nearer 0.5")
        perm = np.random.default_rng(seed).permutation(n)
        report["holdout"] = ("dev", np.sort(perm[:n_report]))
        sizes["holdout"] = int(n_report)
        spec.update({"holdout_fraction": float(holdout_fraction), "holdout_seed": int(seed),
                     "report": sorted(report)})
        return cls(np.sort(perm[n_report:]), report, sizes, spec, float(holdout_fraction))


# ---------------------------------------------------------------------------------------------
# keys


@dataclass(frozen=True)
class RunContext:
    """Everything in a run key besides the auxiliary set, the subsets and the seed."""

    model_id: str
    model_name: str
    primary: TaskSpec
    specs: Mapping[str, TaskSpec]
    data_fp: Mapping[str, str]
    importance: Mapping[str, str]     # task -> probe entry key path
    settings: MTLSettings
    precision: str
    eval_spec: Mapping[str, Any]


def subsets_digest(subsets: Mapping[str, np.ndarray]) -> str:
    """A digest of the kept index lists themselves (what changes the trained model)."""
    h = hashlib.sha256()
    for t in sorted(subsets):
        a = np.ascontiguousarray(np.asarray(subsets[t], dtype="<i8"))
        h.update(t.encode() + b"\0" + str(a.shape[0]).encode() + b"\0" + a.tobytes())
    return h.hexdigest()[:16]


def run_key(store: Store, ctx: RunContext, aux: Sequence[str], seed: int,
            subsets: Mapping[str, np.ndarray] | None = None) -> Key:
    """The ledger key of one run (one ordered auxiliary set, optional subsets, one seed)."""
    tasks = [ctx.primary.name, *aux]
    names = [safe_component(ctx.model_name), ctx.primary.name, "+".join(aux) or "alone",
             f"seed{seed}"]
    spec: dict[str, Any] = {
        "model": ctx.model_id,
        "primary": {"name": ctx.primary.name, "task": ctx.primary.fingerprint(),
                    "data": ctx.data_fp[ctx.primary.name]},
        "aux": [{"name": a, "task": ctx.specs[a].fingerprint(), "data": ctx.data_fp[a]}
                for a in aux],
        "importance": [ctx.importance.get(t) for t in tasks],
        "settings": ctx.settings.key(),
        "precision": ctx.precision,
        "seed": int(seed),
        "eval": dict(ctx.eval_spec),
    }
    if subsets:
        digest = subsets_digest(subsets)
        names.insert(3, "fg-" + digest)
        spec["subsets"] = {"digest": digest,
                           "sizes": {t: int(len(v)) for t, v in sorted(subsets.items())},
                           "version": SUBSETS_VERSION}
    return store.key(RUN_KIND, names, spec)


# ---------------------------------------------------------------------------------------------
# persistence of one run


def write_run(store: Store, key: Key, model_name: str, r: MTLResult,
              distributed: Mapping[str, Any] | None = None) -> None:
    """Store one trained run: its record as JSON, its evaluation predictions as arrays.

    ``distributed``: who trained it under torchrun (rank, world size, backend, ``task`` or
    ``data`` parallelism, and with DDP every rank's throughput), kept in ``info``.
    """
    seen = sum(r.examples_seen.values())
    info: dict[str, Any] = {
        "primary": r.primary, "aux": list(r.aux), "seed": r.seed, "model_name": model_name,
        "main_metric": r.main_metric, "score": to_jsonable(r.score),
        "best_epoch": r.best_epoch, "seconds": round(r.seconds, 3),
        "timings": {"train_s": round(r.seconds, 3),
                    "examples_per_s": round(seen / r.seconds, 3) if r.seconds > 0 else None}}
    if distributed is not None:
        info["distributed"] = dict(distributed)
    arrays = ("dev_predictions", "dev_labels", "dev_index", "report_predictions")
    record = to_jsonable({f.name: getattr(r, f.name) for f in dataclasses.fields(r)
                          if f.name not in arrays})
    with store.writer(key, info=info) as w:
        w.save_json("result", record)
        w.save_arrays("dev", {"predictions": np.asarray(r.dev_predictions),
                              "labels": np.asarray(r.dev_labels),
                              "index": np.asarray(r.dev_index, dtype=np.int64)})
        for name, (pred, y) in getattr(r, "report_predictions", {}).items():
            w.save_arrays(f"report-{name}", {"predictions": np.asarray(pred),
                                             "labels": np.asarray(y)})


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def read_run(store: Store, entry: Any) -> MTLResult:
    """One stored run back as the :class:`mtl.MTLResult` it was."""
    d = store.load_json(entry, "result")
    arrays = store.load_arrays(entry, "dev")
    files = entry.meta.get("files", {})
    reports = {}
    for name in d.get("report_metrics", {}):   # runs stored by earlier versions have none
        if any(str(f).startswith(f"report-{name}.") for f in files):
            a = store.load_arrays(entry, f"report-{name}")
            reports[name] = (a["predictions"], a["labels"])
    return MTLResult(
        primary=d["primary"], aux=tuple(d["aux"]), seed=int(d["seed"]),
        epochs=tuple(EpochRecord(e["epoch"], {k: _num(v) for k, v in e["train_loss"].items()},
                                 e["examples"], {k: _num(v) for k, v in e["dev_metrics"].items()},
                                 e["seconds"]) for e in d["epochs"]),
        best_epoch=int(d["best_epoch"]),
        best_metrics={k: _num(v) for k, v in d["best_metrics"].items()},
        main_metric=d["main_metric"], seconds=float(d["seconds"]),
        dev_predictions=arrays["predictions"], dev_labels=arrays["labels"],
        dev_index=arrays["index"], eval_split=d.get("eval_split", "dev"),
        report_metrics={k: {m: _num(x) for m, x in v.items()}
                        for k, v in d.get("report_metrics", {}).items()},
        train_sizes=d.get("train_sizes", {}), examples_seen=d.get("examples_seen", {}),
        report_predictions=reports)


# ---------------------------------------------------------------------------------------------
# the ledger


@dataclass(frozen=True)
class Run:
    """One run of the ledger: its result, whether it was reused, and its entry."""

    result: MTLResult
    cached: bool
    key: str


@dataclass
class Ledger:
    """Train-or-load for one primary, model, settings and evaluation plan (module docstring).

    ``force`` retrains a run found in the store once per call (a run trained earlier in the
    same call is reused); ``trained`` counts the runs trained by this ledger.
    """

    store: Store
    ctx: RunContext
    ref: ModelRef
    run: RunSettings
    plan: EvalPlan
    train: TrainFn
    progress: ProgressFn | None = None
    cap: int | None = None            # --max-train-examples: each task's first ``cap`` examples
    trained: int = 0
    _done: dict[str, Run] = field(default_factory=dict, repr=False)
    _world: Any = field(default=None, repr=False)    # distributed.World, once joined
    # under torchrun: run key -> who trained it in this call ("parallel", every rank's info)
    trained_by: dict[str, Any] = field(default_factory=dict, repr=False)
    _sizes: dict[str, int] = field(default_factory=dict, repr=False)

    def train_size(self, task: str) -> int:
        """The number of examples in ``task``'s train split."""
        if task not in self._sizes:
            from ..data import load_split

            self._sizes[task] = len(load_split(self.ctx.specs[task], "train", store=self.store))
        return self._sizes[task]

    def key(self, aux: Sequence[str], seed: int,
            subsets: Mapping[str, np.ndarray] | None = None) -> Key:
        return run_key(self.store, self.ctx, tuple(aux), seed, self.capped(aux, subsets))

    def capped(self, aux: Sequence[str], subsets: Mapping[str, np.ndarray] | None
               ) -> Mapping[str, np.ndarray] | None:
        """``subsets`` with every task of the run cut to its first :attr:`cap` examples."""
        if self.cap is None:
            return subsets
        out = dict(subsets or {})
        for t in [self.ctx.primary.name, *aux]:
            if t in out:
                out[t] = np.asarray(out[t])[np.asarray(out[t]) < self.cap]
            elif self.train_size(t) > self.cap:
                out[t] = np.arange(self.cap, dtype=np.int64)
        return out or None

    def find(self, aux: Sequence[str], seed: int,
             subsets: Mapping[str, np.ndarray] | None = None) -> Run | None:
        """The stored run, if there is one (nothing is trained)."""
        key = self.key(aux, seed, subsets)
        if str(key) in self._done:
            return self._done[str(key)]
        if not self.store.exists(key):
            return None
        return Run(read_run(self.store, self.store.entry(key)), True, str(key))

    def get(self, aux: Sequence[str], seed: int, *, label: str, force: bool = False,
            subsets: Mapping[str, np.ndarray] | None = None,
            before_training: Callable[[], None] | None = None) -> Run:
        """The run of ``P + aux`` with ``seed``: loaded, or trained and stored under the lock.

        This process alone: under torchrun, ask through :meth:`get_many` (every rank asking
        for the same batch), which shares the work between the ranks."""
        key = self.key(aux, seed, subsets)
        done = self._done.get(str(key))
        if done is not None and not (force and done.cached):  # trained in this call: reuse
            return dataclasses.replace(done, cached=True)
        interrupts.check()  # a safe point: between runs nothing is half-written
        with self.store.lock(key):
            if self.store.exists(key) and not force:
                run = Run(read_run(self.store, self.store.entry(key)), True, str(key))
            else:
                if before_training is not None:
                    before_training()
                subsets = self.capped(aux, subsets)
                extra = {"subsets": dict(subsets)} if subsets else {}
                r = self.train(self.ref, self.ctx.primary, [self.ctx.specs[a] for a in aux],
                               store=self.store, run=self.run, settings=self.ctx.settings,
                               seed=seed, eval_split="dev", eval_index=self.plan.select_index,
                               report=self.plan.report, progress=self.progress, label=label,
                               **extra)
                world = self._world
                role = None if world is None or not world.distributed else {
                    "rank": world.rank, "world_size": world.size, "backend": world.backend,
                    "parallel": "task"}
                write_run(self.store, key, self.ctx.model_name, r, distributed=role)
                self.trained += 1
                run = Run(r, False, str(key))
        self._done[str(key)] = run
        return run

    def distributed_info(self) -> dict[str, Any]:
        """For ``--json`` under torchrun: the world, and who trained each run of this call
        (``parallel`` ``task`` or ``data``; every rank's seconds and examples per second).
        Empty with one process."""
        w = self._world
        if w is None or not w.distributed:
            return {}
        return {"world_size": w.size, "backend": w.backend, "runs": dict(self.trained_by)}

    def get_many(self, units: Sequence[Unit], *, force: bool = False,
                 on_start: StartFn | None = None, on_done: DoneFn | None = None,
                 before_training: StartFn | None = None) -> list[Run]:
        """Every unit's run, in order: :meth:`get` for each with one process; under torchrun
        the pending units spread over the ranks (:func:`ledger_parallel.get_many`)."""
        from .ledger_parallel import get_many

        return get_many(self, units, force=force, on_start=on_start, on_done=on_done,
                        before_training=before_training)


def open_ledger(store: Store, ref: ModelRef, primary: TaskSpec, specs: Mapping[str, TaskSpec],
                *, settings: MTLSettings, run: RunSettings, plan: EvalPlan,
                probes: Mapping[str, str], train: TrainFn,
                progress: ProgressFn | None = None,
                max_train_examples: int | None = None) -> Ledger:
    """A :class:`Ledger` for ``primary`` with the tasks ``specs`` (data fingerprints read now)."""
    from ..data import data_fingerprint

    ctx = RunContext(
        model_id=ref.cache_id, model_name=ref.name, primary=primary, specs=dict(specs),
        data_fp={n: data_fingerprint(s, store=store) for n, s in specs.items()},
        importance=dict(probes), settings=settings, precision=precision_name(run),
        eval_spec=dict(plan.spec))
    if max_train_examples is not None and max_train_examples < 1:
        raise ConfigError(f"--max-train-examples must be at least 1, not {max_train_examples}")
    return Ledger(store, ctx, ref, run, plan, train, progress, max_train_examples)
