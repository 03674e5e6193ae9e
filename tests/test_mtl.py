"""Tests for metrics (against scikit-learn / SciPy) and MT-DNN-style multi-task training.

Training runs use a tiny random BERT whose vocabulary covers the demo suite, with tiny demo
splits (train 48, dev 24, test 24): they check mechanics, not learning (DESIGN.md §7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from gradts_engine import metrics
from gradts_engine.config import RunSettings
from gradts_engine.errors import ConfigError, DataError, TrainingError
from gradts_engine.tasks import build_registry
from gradts_engine.tasks.spec import SyntheticSource, TaskSpec

SIZES = {"train": 48, "dev": 24, "test": 24}


def _cls_spec(metrics_=("accuracy", "f1", "matthews")) -> TaskSpec:
    return TaskSpec("t", "classification", ("text_a",), "label", SyntheticSource(),
                    labels=("no", "yes"), metrics=metrics_)


def _reg_spec() -> TaskSpec:
    return TaskSpec("r", "regression", ("text_a",), "label", SyntheticSource())


# -- metrics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 57)
    p = rng.integers(0, 2, 57)
    got = metrics.compute_metrics(_cls_spec(), p, y)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p))
    assert got["matthews"] == pytest.approx(skm.matthews_corrcoef(y, p))
    # logits (N, C) are reduced by argmax
    logits = rng.normal(size=(57, 2))
    got = metrics.compute_metrics(_cls_spec(), logits, y)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, logits.argmax(1)))


def test_f1_positive_class_is_label_one() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([1, 0, 0, 0, 1])
    assert metrics.f1(p, y) == pytest.approx(0.5)
    assert metrics.f1(np.zeros(5, int), y) == 0.0  # nothing predicted positive


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=40).astype(np.float32)
    p = (0.5 * y + rng.normal(size=40)).reshape(40, 1)  # raw outputs (N, 1)
    got = metrics.compute_metrics(_reg_spec(), p, y)
    assert set(got) == {"pearson", "spearman"}
    assert got["pearson"] == pytest.approx(scipy.stats.pearsonr(p[:, 0], y)[0], abs=1e-9)
    assert got["spearman"] == pytest.approx(scipy.stats.spearmanr(p[:, 0], y)[0], abs=1e-9)


def test_metrics_degenerate_inputs_are_nan() -> None:
    assert math.isnan(metrics.pearson(np.ones(5), np.arange(5)))
    assert math.isnan(metrics.accuracy(np.zeros(0), np.zeros(0)))
    with pytest.raises(DataError):
        metrics.compute_metrics(_cls_spec(), np.zeros(3), np.zeros(4))


def test_main_metric_is_in_compute_metrics() -> None:
    spec = _cls_spec(("matthews", "accuracy"))
    got = metrics.compute_metrics(spec, np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert spec.main_metric == "matthews" and list(got) == ["matthews", "accuracy"]


# -- the epoch schedule and subsets (no model) ------------------------------------------------
def test_epoch_schedule_proportional_and_temperature() -> None:
    from gradts_engine.mtl import epoch_schedule

    rng = np.random.default_rng(0)
    assert epoch_schedule({"a": 100, "b": 20}, 10, 1.0, rng) == {"a": 10, "b": 2}
    flat = epoch_schedule({"a": 100, "b": 20}, 10, 1e6, rng)   # T -> inf: uniform over tasks
    assert flat == {"a": 6, "b": 6}
    assert sum(epoch_schedule({"a": 90, "b": 10, "c": 3}, 4, 2.0, rng).values()) == 23 + 3 + 1


def test_take_subset_of_ragged_encoding() -> None:
    from gradts_engine.data import Encoded
    from gradts_engine.mtl import take

    lens = np.array([3, 1, 4, 2])
    offsets = np.concatenate([[0], np.cumsum(lens)])
    ids = np.arange(offsets[-1], dtype=np.int32)
    enc = Encoded(ids, ids + 100, offsets, np.array([0, 1, 0, 1]), "t", "train")
    sub = take(enc, np.array([2, 0]))
    assert sub.lengths().tolist() == [4, 3]
    assert sub.input_ids.tolist() == [4, 5, 6, 7, 0, 1, 2]
    assert sub.token_type_ids.tolist() == [104, 105, 106, 107, 100, 101, 102]
    assert sub.labels.tolist() == [0, 0]
    with pytest.raises(DataError):
        take(enc, np.array([4]))


# -- training (tiny model) --------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from gradts_engine.models import make_tiny_model
    from gradts_engine.tasks import demo

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), words=demo.vocabulary(SIZES)))


@pytest.fixture(scope="module")
def reg():
    return build_registry(include_user=False, demo_sizes=SIZES)


def test_train_mtl_end_to_end_two_tasks(tiny, reg, store_root) -> None:
    from gradts_engine.mtl import MTLSettings, train_mtl
    from gradts_engine.store import Store

    events = []
    r = train_mtl(tiny, reg.get("neg_movie"), [reg.get("match_city")], store=Store(store_root),
                  run=RunSettings(device="cpu", seed=3),
                  settings=MTLSettings(epochs=2, batch_size=16, lr=1e-3, max_length=48),
                  report={"test": ("test", None)}, progress=events.append)
    assert r.primary == "neg_movie" and r.aux == ("match_city",) and r.seed == 3
    assert [e.epoch for e in r.epochs] == [1, 2]
    for e in r.epochs:
        assert set(e.train_loss) == {"neg_movie", "match_city"}
        assert all(math.isfinite(v) and v > 0 for v in e.train_loss.values())
        assert math.isfinite(e.dev_metrics["accuracy"]) and e.seconds > 0
        assert e.examples == {"neg_movie": 48, "match_city": 48}
    assert r.best_epoch in (1, 2)
    assert r.best_metrics == r.epochs[r.best_epoch - 1].dev_metrics
    assert r.score == r.best_metrics["accuracy"]
    assert r.dev_predictions.shape == (24,) and r.dev_labels.shape == (24,)
    assert r.dev_index.tolist() == list(range(24))
    # the stored best-epoch predictions reproduce the best dev score
    assert skm.accuracy_score(r.dev_labels, r.dev_predictions) == pytest.approx(r.score)
    assert math.isfinite(r.test_metrics["accuracy"])
    assert {e.stage for e in events} >= {"mtl-epoch"}


def test_train_mtl_subsets_and_eval_index(tiny, reg, store_root) -> None:
    from gradts_engine.mtl import MTLSettings, train_mtl
    from gradts_engine.store import Store

    sub = np.array([0, 3, 5, 7, 11, 13, 17])
    r = train_mtl(tiny, reg.get("topic_news"), [reg.get("topic_home")], store=Store(store_root),
                  run=RunSettings(device="cpu"),
                  settings=MTLSettings(epochs=1, batch_size=4, lr=1e-3, max_length=48,
                                       aux_weight=0.5),
                  subsets={"topic_home": sub}, eval_index=np.arange(0, 24, 2),
                  report={"holdout": ("dev", np.arange(1, 24, 2))})
    assert r.examples_seen == {"topic_news": 48, "topic_home": len(sub)}
    assert r.train_sizes["topic_home"] == len(sub)
    assert r.dev_predictions.shape == (12,) and r.dev_index.tolist() == list(range(0, 24, 2))
    assert set(r.report_metrics) == {"holdout"}


def test_train_mtl_rejects_bad_settings(tiny, reg) -> None:
    from gradts_engine.mtl import MTLSettings, train_mtl

    with pytest.raises(ConfigError):
        train_mtl(tiny, reg.get("neg_movie"), settings=MTLSettings(epochs=0))
    with pytest.raises(ConfigError):
        train_mtl(tiny, reg.get("neg_movie"), [reg.get("neg_movie")])
    with pytest.raises(ConfigError):
        train_mtl(tiny, reg.get("neg_movie"), subsets={"agree_pp": np.arange(3)})


def test_nan_loss_raises_training_error(tiny, reg, store_root, monkeypatch) -> None:
    from gradts_engine import models
    from gradts_engine.mtl import MTLSettings, train_mtl
    from gradts_engine.store import Store

    real = models.per_example_loss
    monkeypatch.setattr(models, "per_example_loss",
                        lambda logits, labels, kind: real(logits, labels, kind) * float("nan"))
    with pytest.raises(TrainingError, match="diverged"):
        train_mtl(tiny, reg.get("neg_movie"), store=Store(store_root),
                  run=RunSettings(device="cpu"),
                  settings=MTLSettings(epochs=1, batch_size=16, max_length=48))


def test_max_length_one_rule_in_multi_task_training(tiny, reg, store_root) -> None:
    """The probe's max-length rule holds in MTL too: by default the model's own limit (at most
    512), and a --max-length longer than the model accepts is refused, never silently cut."""
    from gradts_engine.models import model_max_length, read_config, resolve_model
    from gradts_engine.mtl import MTLSettings, effective_max_length, train_mtl
    from gradts_engine.store import Store

    ref = resolve_model(tiny)
    limit = model_max_length(read_config(ref))
    assert effective_max_length(ref, None, None) == min(limit, 512)
    assert MTLSettings().key()["max_length"] == 512  # the key trial runs were stored under
    with pytest.raises(ConfigError, match="longer than model"):
        train_mtl(tiny, reg.get("neg_movie"), store=Store(store_root),
                  run=RunSettings(device="cpu"),
                  settings=MTLSettings(epochs=1, batch_size=16, max_length=limit + 1))
