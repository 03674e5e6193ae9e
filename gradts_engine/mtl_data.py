"""The data of a multi-task run: encoded splits, index subsets and the epoch schedule (§1 step 3).

:func:`load_data` tokenises every training task (restricted to an index subset where GradTS-fg
selected instances, :func:`take`), the primary's evaluation split (or an index subset of it)
and the report sets. :func:`epoch_schedule` gives each task's number of batches per epoch
(``p_t ∝ n_t^(1/T)`` at temperature ``T``, see :mod:`mtl`) and :func:`epoch_batches` the
epoch's pooled, shuffled ``(task, batch indices)`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from .data import Encoded
    from .models import ModelRef
    from .store import Store
    from .tasks.spec import TaskSpec

__all__ = ["MTLData", "TaskData", "effective_max_length", "epoch_batches", "epoch_schedule",
           "load_data", "take"]


# ---------------------------------------------------------------------------------------------
# data


def take(encoded: Encoded, idx: np.ndarray) -> Encoded:
    """The examples ``idx`` of a ragged :class:`data.Encoded`, as a new (smaller) one."""
    from .data import Encoded

    idx = np.asarray(idx, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(encoded)):
        raise DataError(f"index subset of {encoded.task}/{encoded.split} is out of range "
                        f"(0..{len(encoded) - 1})")
    starts = encoded.offsets[idx]                                   # (n,)
    lens = encoded.offsets[idx + 1] - starts                        # (n,)
    offsets = np.zeros(idx.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.repeat(starts - offsets[:-1], lens) + np.arange(int(offsets[-1]))  # (tokens,)
    tt = encoded.token_type_ids[flat] if encoded.token_type_ids is not None else None
    return Encoded(encoded.input_ids[flat], tt, offsets, encoded.labels[idx], encoded.task,
                   encoded.split, encoded.fingerprint)


@dataclass
class TaskData:
    spec: TaskSpec
    train: Encoded            # possibly a subset
    n: int                    # training examples used


def _encode(spec: TaskSpec, split: str, tokenizer: Any, ref: ModelRef, max_length: int,
            store: Store | None) -> Encoded:
    from . import data

    s = data.load_split(spec, split, store=store)
    return data.encode_split(s, tokenizer, tokenizer_id=ref.cache_id, max_length=max_length,
                             store=store)


def effective_max_length(ref: ModelRef, tokenizer: Any, max_length: int | None) -> int:
    """The one max-length rule of every stage (:func:`models.resolve_max_length`): the given
    length (an error when the model accepts less), else the model's limit capped at 512."""
    from .models import read_config, resolve_max_length

    return resolve_max_length(max_length, read_config(ref), tokenizer, model=ref.name)


# ---------------------------------------------------------------------------------------------
# the epoch schedule


def epoch_schedule(sizes: Mapping[str, int], batch_size: int, temperature: float,
                   rng: np.random.Generator) -> dict[str, int]:
    """Batches per task in one epoch (see the module docstring): ``{task: n_batches}``."""
    natural = {t: math.ceil(n / batch_size) for t, n in sizes.items() if n > 0}
    if temperature == 1.0 or len(natural) < 2:
        return natural
    total = sum(natural.values())
    w = np.array([sizes[t] ** (1.0 / temperature) for t in natural], dtype=np.float64)
    share = w / w.sum() * total
    counts = np.floor(share).astype(int)
    rest = total - int(counts.sum())  # largest remainders, ties broken by the seeded rng
    order = np.lexsort((rng.random(len(share)), -(share - counts)))
    counts[order[:rest]] += 1
    return {t: max(1, int(c)) for t, c in zip(natural, counts, strict=True)}


def _task_batches(td: TaskData, n_batches: int, batch_size: int, seed: int) -> list[np.ndarray]:
    from .data import batches

    out: list[np.ndarray] = []
    k = 0
    while len(out) < n_batches:
        out.extend(batches(td.train, batch_size, shuffle=True, seed=seed + 7919 * k))
        k += 1
    return out[:n_batches]


@dataclass
class MTLData:
    """The encoded splits of one run: training tasks, the evaluation set, the report sets."""

    tasks: dict[str, TaskData]
    eval_enc: Encoded
    dev_index: np.ndarray
    report_sets: dict[str, Encoded]
    pad_id: int


def load_data(ref: ModelRef, primary: TaskSpec, aux: Sequence[TaskSpec], max_length: int | None,
               store: Store | None, subsets: Mapping[str, np.ndarray] | None, eval_split: str,
               eval_index: np.ndarray | None,
               report: Mapping[str, tuple[str, np.ndarray | None]] | None) -> MTLData:
    """Tokenise the training tasks (subsets applied), the evaluation and the report sets."""
    from .models import load_tokenizer

    tokenizer = load_tokenizer(ref)
    max_len = effective_max_length(ref, tokenizer, max_length)
    tasks: dict[str, TaskData] = {}
    for spec in [primary, *aux]:
        enc = _encode(spec, "train", tokenizer, ref, max_len, store)
        if subsets and spec.name in subsets:
            enc = take(enc, np.unique(np.asarray(subsets[spec.name], dtype=np.int64)))
        if len(enc) == 0 and spec.name == primary.name:
            raise DataError(f"task '{primary.name}' has no training examples")
        tasks[spec.name] = TaskData(spec, enc, len(enc))
    eval_full = _encode(primary, eval_split, tokenizer, ref, max_len, store)
    dev_index = (np.arange(len(eval_full)) if eval_index is None
                 else np.asarray(eval_index, dtype=np.int64))
    eval_enc = eval_full if eval_index is None else take(eval_full, dev_index)
    if len(eval_enc) == 0:
        raise DataError(f"task '{primary.name}': the {eval_split} split used for evaluation "
                        "is empty")
    y_eval = eval_enc.labels
    if (y_eval.dtype.kind == "f" and not np.isfinite(y_eval).all()) or \
            (y_eval.dtype.kind != "f" and (y_eval < 0).any()):
        raise DataError(f"task '{primary.name}': its {eval_split} split has no labels, so it "
                        "cannot be used to evaluate", hint="use a labelled split")
    report_sets: dict[str, Encoded] = {}
    for name, (split, idx) in (report or {}).items():
        enc = eval_full if split == eval_split else _encode(primary, split, tokenizer, ref,
                                                             max_len, store)
        report_sets[name] = enc if idx is None else take(enc, np.asarray(idx, dtype=np.int64))
    return MTLData(tasks, eval_enc, dev_index, report_sets, int(tokenizer.pad_token_id))


def epoch_batches(d: MTLData, per_epoch: Mapping[str, int], batch_size: int, seed: int,
                  epoch: int, names: list[str],
                  rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One epoch's (task, batch indices) in training order: every task's batches, shuffled."""
    schedule: list[tuple[str, np.ndarray]] = []
    for t, nb in per_epoch.items():
        for b in _task_batches(d.tasks[t], nb, batch_size, seed * 1009 + epoch * 31
                               + names.index(t)):
            schedule.append((t, b))
    return [schedule[i] for i in rng.permutation(len(schedule))]


