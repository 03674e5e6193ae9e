"""Evaluation metrics of a task (DESIGN.md §2, "Main metric per task").

Every metric comes from scikit-learn or SciPy, not hand-rolled: accuracy, F1 (binary, the
positive class is label 1), Matthews correlation, Pearson's r and Spearman's rho. A task's spec
lists its metrics (``spec.metrics``) and the main one used to choose epochs and compare trials
(``spec.main_metric``); :func:`compute_metrics` returns all of them. Classification
predictions are label ids (or logits ``(N, C)``, reduced by argmax); regression predictions
are the raw outputs. Degenerate inputs (a constant prediction for Pearson, an empty split) give
NaN rather than a warning or an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from .tasks.spec import TaskSpec


def _np(x: Any) -> np.ndarray:
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def accuracy(predictions: Any, labels: Any) -> float:
    from sklearn.metrics import accuracy_score

    y, p = _np(labels), _np(predictions)
    return float(accuracy_score(y, p)) if len(y) else math.nan


def f1(predictions: Any, labels: Any) -> float:
    """Binary F1 of the positive class (label 1); 0.0 when nothing is predicted positive."""
    from sklearn.metrics import f1_score

    y, p = _np(labels), _np(predictions)
    if not len(y):
        return math.nan
    return float(f1_score(y, p, pos_label=1, average="binary", zero_division=0.0))


def matthews(predictions: Any, labels: Any) -> float:
    from sklearn.metrics import matthews_corrcoef

    y, p = _np(labels), _np(predictions)
    return float(matthews_corrcoef(y, p)) if len(y) else math.nan


def _scipy_corr(fn: Callable[..., Any], predictions: Any, labels: Any) -> float:
    import numpy as np

    y, p = _np(labels).astype(np.float64), _np(predictions).astype(np.float64).reshape(-1)
    if len(y) < 2 or np.all(p == p[0]) or np.all(y == y[0]) or not np.isfinite(p).all():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(p, y)[0])


def pearson(predictions: Any, labels: Any) -> float:
    from scipy.stats import pearsonr

    return _scipy_corr(pearsonr, predictions, labels)


def spearman(predictions: Any, labels: Any) -> float:
    from scipy.stats import spearmanr

    return _scipy_corr(spearmanr, predictions, labels)


METRIC_FUNCTIONS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}


def predictions_from_outputs(spec: TaskSpec, outputs: Any) -> np.ndarray:
    """Model outputs ``(N, C)`` or ``(N, 1)`` -> label ids (N,) or raw regression values (N,)."""
    import numpy as np

    a = _np(outputs)
    if spec.kind == "regression":
        return a.reshape(a.shape[0], -1)[:, 0].astype(np.float64) if a.ndim > 1 else a
    return a.argmax(-1) if a.ndim > 1 else a


def compute_metrics(spec: TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """Every metric of ``spec`` (``spec.metrics``, main metric included), name -> value.

    ``predictions``: label ids, or logits ``(N, C)`` for a classification task; raw outputs
    ``(N,)`` or ``(N, 1)`` for a regression task.
    """
    preds = predictions_from_outputs(spec, predictions)
    y = _np(labels)
    if preds.shape[0] != y.shape[0]:
        raise DataError(f"task '{spec.name}': {preds.shape[0]} predictions for {y.shape[0]} labels")
    return {m: METRIC_FUNCTIONS[m](preds, y) for m in spec.metrics}


# ---------------------------------------------------------------------------------------------
# summaries over seeds (trial and fg report the mean and spread of per-seed scores)


def seed_mean(xs: Sequence[float]) -> float:
    """Mean of per-seed scores; NaN if there are none or any is not finite."""
    import numpy as np

    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()) if a.size and np.isfinite(a).all() else math.nan


def seed_std(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1) of the finite per-seed scores; 0 for one seed."""
    import numpy as np

    a = np.asarray([x for x in xs if math.isfinite(x)], dtype=np.float64)
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def mean_metrics(ms: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Metric-by-metric :func:`seed_mean` over several runs' metric dicts."""
    keys = list(ms[0]) if ms else []
    return {k: seed_mean([m.get(k, math.nan) for m in ms]) for k in keys}
