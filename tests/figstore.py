"""A small but complete store for the figure, HTML and export tests (no training).

Probe entries of four demo tasks are written directly in the format that
gradts_engine/results.py documents (task matrices with planted structure: the primary's
sibling shares its pattern; per-instance matrices that mix the primary's pattern with noise,
so instance taus spread widely). GradTS-trial and GradTS-fg then run for real on top of them
with a scripted trainer (scores rise with the auxiliary instances kept, and differ by seed),
so every stored result type the report reads exists, made by the engine itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradts_engine import results
from gradts_engine.config import RunSettings, TrialSettings
from gradts_engine.data import data_fingerprint
from gradts_engine.models import resolve_model
from gradts_engine.mtl import EpochRecord, MTLResult
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

SIZES = {"train": 40, "dev": 20, "test": 20}
PRIMARY = "neg_movie"
TASKS = ["neg_movie", "neg_product", "topic_news", "match_person"]
L, H = 3, 4
THRESHOLDS = [0.0, 0.3, 0.6]


def registry():
    return build_registry(include_user=False, demo_sizes=SIZES)


def _write_probe(store: Store, model: str, spec, during: np.ndarray, R: np.ndarray) -> None:
    key = results.probe_key(store, model_cache_id=resolve_model(model).cache_id,
                            model_name=model, task=spec.name,
                            task_fingerprint=spec.fingerprint(),
                            data_fingerprint=data_fingerprint(spec, store=store),
                            measure="gate", settings={"epochs": 1, "seed": 2018})
    with store.writer(key) as w:
        m = (during / during.sum(-1, keepdims=True)).astype(np.float32)  # (L, H)
        w.save_arrays("task", {"during": m, "after": m, "during_raw": m, "after_raw": m})
        w.save_arrays("instances-00000", {"R": R.astype(np.float32),
                                          "index": np.arange(len(R), dtype=np.int64)})
        w.info.update(task_name=spec.name, model_name=model, num_instances=len(R),
                      num_layers=L, num_heads=H, model_type="bert",
                      chunks=["instances-00000"], device="cpu",
                      timings={"fine_tune_s": 1.5, "importance_s": 0.5},
                      dev={"metric": "accuracy", "main": 0.8, "n": SIZES["dev"]})


def _fake_train(ref, primary, aux, *, seed, subsets=None, eval_index=None, report=None,
                **kw) -> MTLResult:
    names = tuple(a.name for a in aux)
    subsets = dict(subsets or {})
    n_kept = sum(len(subsets[a]) if a in subsets else SIZES["train"] for a in names)
    acc = min(1.0, 0.5 + 0.004 * n_kept + 0.05 * ((seed - 2018) % 2))
    y = np.arange(SIZES["dev"]) % 2
    right = int(round(acc * len(y)))
    pred = np.where(np.arange(len(y)) < right, y, 1 - y)
    acc = float((pred == y).mean())
    return MTLResult(
        primary=primary.name, aux=names, seed=seed,
        epochs=(EpochRecord(1, {primary.name: 0.5}, {primary.name: 40}, {"accuracy": acc},
                            0.01),),
        best_epoch=1, best_metrics={"accuracy": acc}, main_metric="accuracy", seconds=0.01,
        dev_predictions=pred, dev_labels=y, dev_index=np.arange(len(y)),
        report_metrics={name: {"accuracy": acc} for name in (report or {})},
        train_sizes={primary.name: 40, **{a: len(subsets.get(a, range(40))) for a in names}})


def build(root: Path) -> tuple[Store, str, dict[str, np.ndarray]]:
    """Write the store under ``root``; return it, the model directory and the planted arrays
    (``base`` (L, H), and each task's instance matrices (N, L, H))."""
    from gradts_engine.selection.cuts import Cut
    from gradts_engine.selection.fg import run_fg
    from gradts_engine.selection.trial import run_trial

    model = root / "fake-model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    store = Store(root / "store")
    reg = registry()
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 1.0, (L, H))                   # (L, H) the primary's pattern
    other = rng.gamma(2.0, 1.0, (L, H))                  # (L, H) an unrelated pattern
    planted: dict[str, np.ndarray] = {"base": base}
    n = SIZES["train"]
    for k, t in enumerate(TASKS):
        pattern = base * (1 + 0.1 * k) if t in ("neg_movie", "neg_product") else \
            other + 0.3 * k * base
        w = np.linspace(0.0, 1.0, n)[:, None, None]      # (n, 1, 1) how primary-like
        R = w * base[None] * np.exp(0.1 * rng.standard_normal((n, L, H))) \
            + (1 - w) * rng.gamma(2.0, 1.0, (n, L, H))   # (n, L, H)
        R = R[rng.permutation(n)]
        planted[t] = R
        _write_probe(store, str(model), reg.get(t), pattern, R)
    run = RunSettings(device="cpu")
    trial = TrialSettings(epochs=1, seeds=2, max_aux=2, patience=2)
    run_trial(str(model), reg.get(PRIMARY), [reg.get(t) for t in TASKS[1:]], store=store,
              run=run, trial=trial, train_fn=_fake_train)
    run_fg(str(model), reg.get(PRIMARY), None, store=store, run=run, trial_settings=trial,
           cuts=[Cut("threshold", t) for t in THRESHOLDS], train_fn=_fake_train, registry=reg)
    return store, str(model), planted


_SHARED: dict[str, tuple[Store, str, dict[str, np.ndarray]]] = {}


def shared(tmp_path_factory) -> tuple[Store, str, dict[str, np.ndarray]]:
    """One store per test session (read-only for the tests that use it)."""
    if "store" not in _SHARED:
        _SHARED["store"] = build(tmp_path_factory.mktemp("figstore"))
    return _SHARED["store"]


def report_and_taus(store: Store, model: str):
    """The report for the primary and, per fg primary, ``{aux: taus (N,)}``."""
    from gradts_engine.export import fg_instance_taus
    from gradts_engine.report import build_report

    rep = build_report(store, model, PRIMARY)
    taus = {f.primary: {t: tau for t, (_, tau) in fg_instance_taus(store, f).items()}
            for f in rep.fg}
    return rep, taus


def cli_store(tmp_path: Path, tmp_path_factory, monkeypatch) -> tuple[Path, str]:
    """A private copy of the shared store for CLI runs (which may add entries), with the
    CLI's registry at the store's demo sizes and the scripted trainer; (root, model)."""
    import shutil

    from gradts_cli import options
    from gradts_engine import mtl
    from gradts_engine.tasks import build_registry

    store, model, _ = shared(tmp_path_factory)
    root = tmp_path / "store"
    shutil.copytree(store.root, root)
    monkeypatch.setattr(options.State, "registry",
                        lambda self: build_registry(self.tasks_files, include_user=False,
                                                    demo_sizes=SIZES))
    monkeypatch.setattr(mtl, "train_mtl", _fake_train)
    return root, model
