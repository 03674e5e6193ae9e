"""GradTS-fg's instance filter: instance taus, cuts, and the stored selections (§1 step 4).

For a primary task ``P`` with task matrix ``I_P`` (L, H) and an auxiliary task ``a`` with raw
instance matrices ``R_i`` (N_a, L, H) (stored by ``a``'s own probe, the ``after`` pass),
GradTS-fg (Ma et al., EMNLP 2021, §3.3) scores every instance::

    tau_i = tau_b( vec(I_P), vec(layer_l1(R_i)) )              # (N_a,)  Kendall by default

(:func:`correlate.instance_vectors` and :func:`correlate.correlate_many`, chunk by chunk). A
*cut* (:class:`records.Cut`) keeps, per auxiliary task,

- ``threshold t``: the instances with ``tau_i >= t`` (0.62 in the original,
  :data:`signal.FG_THRESHOLD`; ``>=`` so that an instance exactly at the threshold is kept);
- ``keep_fraction f``: the ``round(f * N_a)`` instances of highest tau (ties broken by the
  lower index; at most the instances that have a tau).

An instance whose tau is undefined (a constant matrix) is never kept. Only the probed
instances can be kept: a probe run with ``--max-train-examples n`` covers the first n.

Every selection is a store entry (kind ``fg-selection``) holding, per auxiliary task, the kept
train-split indices as an int64 safetensors array (never copies of the data), keyed by the
primary's probe entry, the auxiliary probe entries, the estimator, the method and the cut.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, UsageError
from ..serialize import to_jsonable
from ..signal import FG_THRESHOLD, ImportanceSignal
from ..store import Entry, Key, Store, canonical_json, safe_component
from .records import AuxKept, Cut, TauSummary, decode

if TYPE_CHECKING:
    from ..config import FgSettings
    from ..results import ImportanceResult

SELECTION_KIND = "fg-selection"
FG_VERSION = 1
CUT_KINDS = ("threshold", "keep_fraction")


def make_cuts(thresholds: Sequence[float] | None, keep_fraction: float | Sequence[float] | None,
              fg_settings: FgSettings | None = None) -> tuple[Cut, ...]:
    """The cuts of one run: the given thresholds, or keep fractions, or the config default."""
    fracs: list[float] = []
    if keep_fraction is not None:
        fracs = ([float(keep_fraction)] if isinstance(keep_fraction, (int, float))
                 else [float(f) for f in keep_fraction])
    if thresholds is not None and fracs:
        raise UsageError("give thresholds (--threshold/--sweep) or --keep-fraction, not both",
                         hint="e.g. --sweep 0.4,0.5,0.62 or --keep-fraction 0.25,0.5")
    if thresholds is not None:
        cuts = [Cut("threshold", float(t)) for t in thresholds]
    elif fracs:
        cuts = [Cut("keep_fraction", f) for f in fracs]
    elif fg_settings is not None and fg_settings.keep_fraction is not None:
        cuts = [Cut("keep_fraction", float(fg_settings.keep_fraction))]
    else:
        t = fg_settings.threshold if fg_settings is not None else FG_THRESHOLD
        cuts = [Cut("threshold", float(t))]
    if not cuts:
        raise UsageError("no threshold given", hint="e.g. --threshold 0.62 or --sweep 0.4,0.62")
    for c in cuts:
        if not math.isfinite(c.value):
            raise ConfigError(f"the {c.kind.replace('_', ' ')} must be a number, not {c.value}")
        if c.kind == "threshold" and not -1.0 <= c.value <= 1.0:
            raise ConfigError(f"threshold {c.value:g} is outside [-1, 1], the range of a "
                              "correlation", hint=f"e.g. --threshold {FG_THRESHOLD}")
        if c.kind == "keep_fraction" and not 0.0 < c.value <= 1.0:
            raise ConfigError(f"keep fraction {c.value:g} is outside (0, 1]",
                              hint="e.g. --keep-fraction 0.25 keeps each task's top quarter")
    return tuple(dict.fromkeys(cuts))  # dropping repeats, keeping the order


def select_instances(index: np.ndarray, tau: np.ndarray, cut: Cut) -> np.ndarray:
    """The train-split indices kept by ``cut`` from instances ``index`` (N,) with ``tau`` (N,).

    Threshold: ``tau >= t``. Keep fraction: the ``round(f * N)`` highest (ties by lower
    index), at most the number with a tau. NaN never kept. Returns sorted int64 indices.
    """
    index = np.asarray(index, dtype=np.int64)
    tau = np.asarray(tau, dtype=np.float64)
    finite = ~np.isnan(tau)
    if cut.kind == "threshold":
        keep = finite & (np.where(finite, tau, -np.inf) >= cut.value)
        return np.sort(index[keep])
    k = min(int(math.floor(cut.value * index.shape[0] + 0.5)), int(finite.sum()))
    order = np.lexsort((index, -np.where(finite, tau, -np.inf)))  # tau desc, index asc
    return np.sort(index[order[:k]])


def instance_taus(primary_vector: np.ndarray, result: ImportanceResult,
                  method: str = "kendall") -> tuple[np.ndarray, np.ndarray]:
    """``(index (N,), tau (N,))``: every stored instance of ``result`` against ``I_P`` (D,)."""
    from ..correlate import correlate_many, instance_vectors

    idx_parts, tau_parts = [], []
    for idx, R in result.iter_instances():  # chunk by chunk: memory stays bounded
        s, _ = correlate_many(primary_vector, instance_vectors(R), method)  # type: ignore[arg-type]
        idx_parts.append(np.asarray(idx, dtype=np.int64))
        tau_parts.append(s)
    if not idx_parts:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(idx_parts), np.concatenate(tau_parts)


def tau_summary(task: str, tau: np.ndarray) -> TauSummary:
    """Mean, median, 90th percentile and maximum of a task's finite instance taus."""
    t = np.asarray(tau, dtype=np.float64)
    f = t[~np.isnan(t)]
    if not f.size:
        return TauSummary(task, int(t.size), int(t.size), math.nan, math.nan, math.nan, math.nan)
    return TauSummary(task, int(t.size), int(t.size - f.size), float(f.mean()),
                      float(np.median(f)), float(np.quantile(f, 0.9)), float(f.max()))


# ---------------------------------------------------------------------------------------------
# stored selections


def probe_identity(entry: Entry) -> dict[str, str]:
    """A probe entry's identity for keys: its path and a digest of its files' checksums.

    The digest changes when a probe is recomputed under the same key (``--force``).
    """
    files = canonical_json(entry.meta.get("files", {}))
    return {"entry": entry.key_path, "files": hashlib.sha256(files.encode()).hexdigest()[:16]}


def selection_key(store: Store, *, model_id: str, model_name: str, primary: ImportanceResult,
                  aux: Sequence[ImportanceResult], signal: ImportanceSignal, cut: Cut) -> Key:
    """The store key of one selection (see the module docstring)."""
    return store.key(SELECTION_KIND, [safe_component(model_name), primary.task,
                                      "+".join(r.task for r in aux) or "none",
                                      f"{cut.kind}-{cut.value:g}"], {
        "model": model_id, "measure": primary.measure, "estimator": str(signal.estimator),
        "method": str(signal.method), "cut": cut.spec(), "version": FG_VERSION,
        "primary": {"task": primary.task, "probe": probe_identity(primary.entry)},
        "aux": [{"task": r.task, "probe": probe_identity(r.entry)} for r in aux],
    })


def load_selection(store: Store, key: Key | Entry) -> dict[str, np.ndarray]:
    """The kept indices of a stored selection: ``{aux task: int64 indices}`` (verified)."""
    if isinstance(key, Entry):
        entry = key
        store.verify_path(entry.path, entry.meta)
    else:
        entry = store.entry(key, verify=True)
    arrays = store.load_arrays(entry, "selection")
    order = [k["task"] for k in entry.info.get("kept", [])]
    return {t: np.asarray(arrays[t], dtype=np.int64) for t in order if t in arrays}


def find_selections(store: Store, model: str | None = None,
                    primary: str | None = None) -> list[Entry]:
    """Stored selections (optionally of one model and primary), newest first."""
    from ..results import model_matches

    out = [e for e in store.entries(SELECTION_KIND)
           if (primary is None or e.info.get("primary") == primary)
           and (model is None or model_matches(e, model))]
    return sorted(out, key=lambda e: str(e.meta.get("created", "")), reverse=True)


@dataclasses.dataclass(frozen=True)
class Selection:
    """One cut's kept indices per auxiliary task, with the tau distributions they came from."""

    key: str
    kept: Mapping[str, np.ndarray]        # aux task -> sorted int64 train-split indices
    info: tuple[AuxKept, ...]
    taus: tuple[TauSummary, ...]
    cached: bool


def select(store: Store, key: Key, cut: Cut, aux: Sequence[ImportanceResult],
           taus_of: Callable[[ImportanceResult], tuple[np.ndarray, np.ndarray]], *,
           force: bool, primary: str, model_name: str) -> Selection:
    """One cut's selection: read from the store, or computed from the taus and stored."""
    with store.lock(key):
        if store.exists(key) and not force:
            entry = store.entry(key, verify=True)
            kept = load_selection(store, entry)
            info = tuple(decode(AuxKept, k) for k in entry.info.get("kept", []))
            if [k.task for k in info] == [r.task for r in aux] and set(kept) == {
                    r.task for r in aux}:
                taus = tuple(decode(TauSummary, t) for t in entry.info.get("taus", []))
                return Selection(str(key), kept, info, taus, True)
        kept, infos, dist = {}, [], []
        for r in aux:
            index, tau = taus_of(r)
            k = select_instances(index, tau, cut)
            kept[r.task] = k
            ktau = tau[np.isin(index, k)]
            infos.append(AuxKept(r.task, int(k.size), int(index.size), int(np.isnan(tau).sum()),
                                 float(ktau.min()) if ktau.size else math.nan))
            dist.append(tau_summary(r.task, tau))
        with store.writer(key, info={
                "primary": primary, "model_name": model_name, "cut": cut.spec(),
                "kept": [_plain(k) for k in infos], "taus": [_plain(t) for t in dist]}) as w:
            w.save_arrays("selection", {t: np.asarray(v, dtype=np.int64)
                                        for t, v in kept.items()} or
                          {"_empty": np.zeros(0, np.int64)})
        return Selection(str(key), kept, tuple(infos), tuple(dist), False)


def _plain(record: Any) -> Any:
    return to_jsonable(dataclasses.asdict(record))
