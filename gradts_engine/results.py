"""Importance results in the store: the contract between probe and corr/trial/fg/report.

A probe entry (kind ``"probe"``) holds, for one (model, task, measure, settings):

``task.safetensors``
    ``during`` (L, H) and ``after`` (L, H): the two task-level estimators of DESIGN.md §2,
    already normalised (``during = layer_l1(sum_steps |dL/dxi|)``,
    ``after = minmax(layer_l1(mean_i R_i))``); ``during_raw`` and ``after_raw`` (L, H), the
    sums/means before normalisation.
``instances-NNNNN.safetensors`` (absent with ``--no-instances``)
    ``R`` (n, L, H) float32 raw per-instance matrices and ``index`` (n,) int64: each row's
    position in the task's train split. Written in chunks, so memory stays bounded.

``meta.json``'s ``spec`` (the key) holds ``model`` (:attr:`ModelRef.cache_id`), ``task`` (the
task spec fingerprint), ``data`` (its data fingerprint), ``measure`` and ``settings``; its
``info`` holds ``task_name``, ``model_name``, ``num_instances``, ``num_layers``,
``num_heads``, ``model_type``, ``chunks``, timings and training metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IncompatibleResultsError, MissingResultError
from .signal import Estimator
from .store import Entry, Store, safe_component

KIND = "probe"
ESTIMATORS = Estimator.names()  # ("during", "after")
MEASURES = ("gate", "qkv", "legacy")


def model_lookup_id(model: str) -> str:
    """How a user's ``--model`` is matched against stored entries without network access
    (``minilm`` and the bundled MiniLM's Hub id match entries of the bundled copy)."""
    from .errors import ModelError
    from .models import resolve_model_name

    with contextlib.suppress(ModelError):  # "minilm" without the demo extra: by name only
        model = resolve_model_name(model)
    p = Path(model).expanduser()
    if p.exists():
        return str(p.resolve())
    return model


def model_matches(entry: Entry, model: str) -> bool:
    """Whether a stored entry was computed with ``model`` (a local path, or a Hub id at any
    commit), read from its key's ``model`` and its ``model_name``."""
    want = model_lookup_id(model)
    stored = str(entry.spec.get("model", ""))
    return stored == want or stored.startswith(want + "@") or entry.info.get("model_name") == model


def newest_entry(store: Store, kind: str, model: str, **info: Any) -> Entry | None:
    """The newest verified entry of ``kind`` for ``model`` whose ``info`` has these values."""
    found = [e for e in store.entries(kind) if model_matches(e, model)
             and all(e.info.get(k) == v for k, v in info.items())]
    if not found:
        return None
    newest = max(found, key=lambda e: str(e.meta.get("created", "")))
    store.verify_path(newest.path, newest.meta)
    return newest


def probe_key(store: Store, *, model_cache_id: str, model_name: str, task: str,
              task_fingerprint: Mapping[str, Any], data_fingerprint: str, measure: str,
              settings: Mapping[str, Any]) -> Any:
    """The store key of one probe (see module docstring)."""
    return store.key(KIND, [safe_component(model_name), task, measure], {
        "model": model_cache_id, "task": dict(task_fingerprint), "data": data_fingerprint,
        "measure": measure, "settings": dict(settings),
    })


@dataclass(frozen=True)
class ImportanceResult:
    """One probed task, read back from the store (arrays loaded lazily where large)."""

    task: str
    model: str          # cache id
    model_name: str
    measure: str
    num_layers: int
    num_heads: int
    num_instances: int
    matrices: Mapping[str, Any]   # estimator -> (L, H) float32 numpy array
    entry: Entry
    store: Store

    @property
    def info(self) -> Mapping[str, Any]:
        return self.entry.info

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.entry.spec.get("settings", {})

    @property
    def has_instances(self) -> bool:
        return bool(self.entry.info.get("chunks"))

    def matrix(self, estimator: str) -> Any:
        if estimator not in self.matrices:
            raise MissingResultError(f"probe of '{self.task}' has no '{estimator}' matrix",
                                     hint=f"choose --estimator from {', '.join(self.matrices)}")
        return self.matrices[estimator]

    def iter_instances(self) -> Iterator[tuple[Any, Any]]:
        """``(index (n,), R (n, L, H))`` chunk by chunk; an error at once (not on the first
        ``next``) when the probe kept no instance matrices."""
        if not self.has_instances:
            raise MissingResultError(
                f"probe of '{self.task}' was run with --no-instances",
                hint=f"rerun: gradts probe --model {self.model_name} --task {self.task} --force")
        return ((a["index"], a["R"]) for a in (self.store.load_arrays(self.entry, name)
                                               for name in self.entry.info["chunks"]))

    def instances(self) -> tuple[Any, Any]:
        """All instance matrices at once: ``(index (N,), R (N, L, H))``."""
        import numpy as np

        idx, rs = zip(*self.iter_instances(), strict=True)
        return np.concatenate(idx), np.concatenate(rs)


def read_result(store: Store, entry: Entry, verify: bool = True) -> ImportanceResult:
    if verify:
        store.verify_path(entry.path, entry.meta)
    arrays = store.load_arrays(entry, "task")
    info = entry.info
    return ImportanceResult(
        task=str(info.get("task_name")), model=str(entry.spec.get("model")),
        model_name=str(info.get("model_name")), measure=str(entry.spec.get("measure")),
        num_layers=int(info.get("num_layers", 0)), num_heads=int(info.get("num_heads", 0)),
        num_instances=int(info.get("num_instances", 0)),
        matrices={k: arrays[k] for k in ESTIMATORS if k in arrays}, entry=entry, store=store)


def find_results(store: Store, model: str | None = None, measure: str | None = None,
                 task: str | None = None) -> list[Entry]:
    """Probe entries matching a model (id or path), measure and task; newest first."""
    out = []
    for e in store.entries(KIND):
        if model is not None and not model_matches(e, model):
            continue
        if measure is not None and e.spec.get("measure") != measure:
            continue
        if task is not None and e.info.get("task_name") != task:
            continue
        out.append(e)
    return sorted(out, key=lambda e: str(e.meta.get("created", "")), reverse=True)


def load_result(store: Store, model: str, task: str, measure: str = "gate",
                data_fingerprint: str | None = None) -> ImportanceResult:
    """The newest probe of ``task`` with ``model`` and ``measure``; a helpful error if none."""
    entries = find_results(store, model, measure, task)
    if data_fingerprint is not None:
        entries = [e for e in entries if e.spec.get("data") == data_fingerprint] or entries
    if not entries:
        raise MissingResultError(
            f"task '{task}' has not been probed with model {model} (measure {measure})",
            hint=f"run: gradts probe --model {model} --task {task}"
                 + ("" if measure == "gate" else f" --measure {measure}"),
            task=task)
    return read_result(store, entries[0])


def _settings_id(entry: Entry) -> str:
    from .store import canonical_json

    return canonical_json({"settings": entry.spec.get("settings", {}),
                           "model": entry.spec.get("model")})


@dataclass(frozen=True)
class ProbeChoice:
    """Which probe entry of each task a comparison uses (:func:`choose_probes`)."""

    entries: Mapping[str, Entry]     # task -> the probe entry used
    n_groups: int                    # settings groups among the tasks' probes
    complete: bool                   # one settings group covers every task
    warning: str | None = None

    @property
    def keys(self) -> dict[str, str]:
        """task -> key path of the probe entry used (the provenance every output names)."""
        return {t: e.key_path for t, e in self.entries.items()}


def choose_probes(store: Store, model: str, tasks: Sequence[str], measure: str = "gate",
                  current_data: Mapping[str, str] | None = None) -> ProbeChoice:
    """THE rule for which probe of each task is used (corr, trial, fg, compare, report).

    A task probed more than once (say with other ``--epochs``) has one entry per settings
    group. Per task, only its probes of the current data are candidates when
    ``current_data`` (task -> data fingerprint) is given and such probes exist. Then the
    newest settings group that covers every task is used, so all matrices come from the same
    fine-tuning recipe; if none covers every task, the newest probe of each task is used. When
    the tasks' probes fall into several settings groups, ``warning`` says which were used.
    A task without any probe is a :class:`MissingResultError` naming the command to run.
    """
    per_task = {t: find_results(store, model, measure, t) for t in tasks}
    missing = [t for t, entries in per_task.items() if not entries]
    if missing:
        raise MissingResultError(
            f"{len(missing)} task{'s' if len(missing) > 1 else ''} not probed with model "
            f"{model} (measure {measure}): {', '.join(missing)}",
            hint=f"run: gradts probe --model {model} " + " ".join(f"--task {t}" for t in missing)
                 + ("" if measure == "gate" else f" --measure {measure}"),
            tasks=missing)
    if current_data:
        per_task = {t: [e for e in es if e.spec.get("data") == current_data.get(t)] or es
                    for t, es in per_task.items()}
    groups: dict[str, dict[str, Entry]] = {}
    for t, entries in per_task.items():
        for e in entries:  # newest first: keep the newest entry of each settings group
            groups.setdefault(_settings_id(e), {}).setdefault(t, e)
    full = [g for g in groups.values() if len(g) == len(per_task)]
    if full:
        best = max(full, key=lambda g: max(str(e.meta.get("created", "")) for e in g.values()))
        chosen = {t: best[t] for t in per_task}
    else:
        chosen = {t: es[0] for t, es in per_task.items()}
    warning = None
    if len(groups) > 1:
        several = sorted(t for t, es in per_task.items() if len(es) > 1)
        warning = (f"the probes of these tasks fall into {len(groups)} settings groups"
                   + (f" ({', '.join(several)} probed more than once)" if several else "")
                   + ("; using the newest group that covers every task" if full else
                      "; no group covers every task, so the newest probe of each is used")
                   + ": " + ", ".join(f"{t} {e.key_path}" for t, e in chosen.items()))
    return ProbeChoice(chosen, len(groups), bool(full), warning)


def load_results(store: Store, model: str, tasks: list[str], measure: str = "gate",
                 current_data: Mapping[str, str] | None = None) -> list[ImportanceResult]:
    """Several tasks' results chosen by :func:`choose_probes`, checked to be comparable."""
    choice = choose_probes(store, model, tasks, measure, current_data)
    results = [read_result(store, choice.entries[t]) for t in tasks]
    check_comparable(results)
    return results


def check_comparable(results: list[ImportanceResult]) -> None:
    """Matrices of different models, measures or shapes are never compared (DESIGN.md §2)."""
    if not results:
        return
    first = results[0]
    for r in results[1:]:
        if r.model != first.model:
            raise IncompatibleResultsError(
                f"'{r.task}' was probed with {r.model}, '{first.task}' with {first.model}",
                hint="probe every task with the same model (and revision)")
        if r.measure != first.measure:
            raise IncompatibleResultsError(
                f"'{r.task}' uses measure {r.measure}, '{first.task}' {first.measure}")
        if (r.num_layers, r.num_heads) != (first.num_layers, first.num_heads):
            raise IncompatibleResultsError(
                f"'{r.task}' has {r.num_layers}x{r.num_heads} heads, '{first.task}' "
                f"{first.num_layers}x{first.num_heads}")
