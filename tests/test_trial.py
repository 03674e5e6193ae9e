"""Tests for GradTS-trial: the stop rule, the run ledger (resume, keys), seeds and the noise
verdict, comparisons, held-out reports and the stored summary.

Training is replaced by a fake trainer that returns scripted scores (and predictions that
reproduce them), so these tests check the procedure, not learning; probe entries are written
directly into the store in the documented format (gradts_engine/results.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest

from gradts_engine import results
from gradts_engine.config import RunSettings, TrialSettings
from gradts_engine.errors import ConfigError, MissingResultError
from gradts_engine.models import resolve_model
from gradts_engine.mtl import EpochRecord, MTLResult
from gradts_engine.selection.ledger import RunContext, run_key
from gradts_engine.selection.trial import load_trial_summary, run_trial
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

SIZES = {"train": 48, "dev": 24, "test": 24}
PRIMARY = "neg_movie"
# candidates and their planted correlation order: a > b > c > d > e
CANDS = ["neg_product", "topic_news", "agree_pp", "match_city", "topic_home"]
N_DEV = 200


@pytest.fixture(scope="module")
def reg():
    return build_registry(include_user=False, demo_sizes=SIZES)


def write_probe(store: Store, model: str, task: str, vec: np.ndarray, L: int = 3, H: int = 4,
                settings: dict | None = None):
    ref = resolve_model(model)
    key = results.probe_key(store, model_cache_id=ref.cache_id, model_name=model, task=task,
                            task_fingerprint={"name": task}, data_fingerprint="x",
                            measure="gate", settings=settings or {})
    m = np.asarray(vec, dtype=np.float32).reshape(L, H)
    with store.writer(key, info={"task_name": task, "model_name": model, "num_layers": L,
                                 "num_heads": H, "num_instances": 0, "chunks": []}) as w:
        w.save_arrays("task", {"during": m, "after": m, "during_raw": m, "after_raw": m})
    return key


def probe_all(store: Store, model: str, tasks=(PRIMARY, *CANDS)) -> None:
    """Primary = 0..11; candidate k (1-based): k disjoint adjacent swaps, tau = 1 - 2k/66."""
    x = np.arange(12, dtype=np.float64)
    for k, t in enumerate(tasks):
        y = x.copy()
        for j in range(k if t != PRIMARY else 0):
            y[[2 * j, 2 * j + 1]] = y[[2 * j + 1, 2 * j]]
        write_probe(store, model, t, y)


class FakeTrainer:
    """Returns scripted best-epoch scores (accuracy) keyed by the auxiliary set."""

    def __init__(self, scores: Mapping[tuple[str, ...], float], per_seed: float = 0.0,
                 fail_at: int | None = None) -> None:
        self.scores = dict(scores)
        self.per_seed = per_seed
        self.calls: list[dict] = []
        self.fail_at = fail_at
        self.labels = np.random.default_rng(1).integers(0, 2, N_DEV)

    def __call__(self, ref, primary, aux, *, seed, eval_index=None, report=None, settings=None,
                 **kw) -> MTLResult:
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        names = tuple(a.name for a in aux)
        self.calls.append({"aux": names, "seed": seed, "eval_index": eval_index,
                           "report": report, "settings": settings})
        score = self.scores.get(names, 0.5) + self.per_seed * (seed - 2018)
        idx = np.arange(N_DEV) if eval_index is None else np.asarray(eval_index)
        y = self.labels[idx]
        n_right = int(round(score * len(y)))
        rng = np.random.default_rng(seed + 7 * len(names))
        right = np.zeros(len(y), bool)
        right[rng.permutation(len(y))[:n_right]] = True
        pred = np.where(right, y, 1 - y)
        acc = float((pred == y).mean())
        return MTLResult(
            primary=primary.name, aux=names, seed=seed,
            epochs=(EpochRecord(1, {primary.name: 0.5}, {primary.name: 48}, {"accuracy": acc},
                                0.01),),
            best_epoch=1, best_metrics={"accuracy": acc}, main_metric="accuracy", seconds=0.01,
            dev_predictions=pred, dev_labels=y, dev_index=idx,
            report_metrics={name: {"accuracy": acc - 0.01} for name in (report or {})})


def go(reg, store, model, fake, *, trial=None, run=None, cands=CANDS, **kw):
    return run_trial(model, reg.get(PRIMARY), [reg.get(c) for c in cands], store=store,
                     run=run or RunSettings(device="cpu"),
                     trial=trial or TrialSettings(epochs=1), train_fn=fake, **kw)


def test_ranking_follows_planted_order(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    fake = FakeTrainer({})
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, max_aux=0))
    assert [r.task for r in s.ranking] == CANDS
    assert s.ranking[0].stat > s.ranking[-1].stat


def test_stop_rule_patience_one(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b, c = CANDS[:3]
    fake = FakeTrainer({(): 0.50, (a,): 0.60, (a, b): 0.55, (a, b, c): 0.90})
    s = go(reg, store, model_dir, fake)
    assert [c_["aux"] for c_ in fake.calls] == [(), (a,), (a, b)]   # stops: (a,b,c) not tried
    assert s.selected == (a,) and s.selected_trial.mean == pytest.approx(0.60)
    assert s.baseline.aux == () and s.baseline.mean == pytest.approx(0.50)
    assert [t.improved for t in s.trials] == [None, True, False]
    assert "patience 1" in s.stop_reason


def test_empty_selection(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    fake = FakeTrainer({(): 0.70, (CANDS[0],): 0.60})
    s = go(reg, store, model_dir, fake)
    assert s.selected == () and s.selected_trial is s.baseline or s.selected_trial == s.baseline
    assert len(fake.calls) == 2
    assert "empty" in s.verdict.message


def test_patience_two_and_max_aux(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b, c, d, e = CANDS
    scores = {(): 0.5, (a,): 0.55, (a, b): 0.54, (a, b, c): 0.58, (a, b, c, d): 0.57,
              (a, b, c, d, e): 0.56}
    fake = FakeTrainer(scores)
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, patience=2))
    assert s.selected == (a, b, c)
    assert len(fake.calls) == 6          # two misses after (a,b,c): d, then e
    # max_aux caps the prefix length
    fake2 = FakeTrainer(scores)
    s2 = go(reg, store, model_dir, fake2, trial=TrialSettings(epochs=1, max_aux=1), force=True)
    assert [c_["aux"] for c_ in fake2.calls] == [(), (a,)]
    assert s2.selected == (a,) and "max-aux 1" in s2.stop_reason


def test_resume_reuses_finished_trials(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b = CANDS[:2]
    scores = {(): 0.5, (a,): 0.6, (a, b): 0.55}
    # an interrupted run: the third training is killed
    with pytest.raises(KeyboardInterrupt):
        go(reg, store, model_dir, FakeTrainer(scores, fail_at=2))
    fake = FakeTrainer(scores)
    s1 = go(reg, store, model_dir, fake)
    assert [c_["aux"] for c_ in fake.calls] == [(a, b)]          # only the unfinished one
    assert s1.trials[0].all_cached and s1.trials[1].all_cached and not any(s1.trials[2].cached)
    fake2 = FakeTrainer(scores)
    s2 = go(reg, store, model_dir, fake2)
    assert fake2.calls == [] and s2.trained == 0
    assert s2.selected == s1.selected and s2.baseline.mean == s1.baseline.mean
    fake3 = FakeTrainer(scores)
    go(reg, store, model_dir, fake3, force=True)
    assert len(fake3.calls) == 3


def test_ledger_key_changes_with_settings(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b = CANDS[:2]
    scores = {(): 0.5, (a,): 0.6, (a, b): 0.55}
    s = go(reg, store, model_dir, FakeTrainer(scores))
    # a different lr, seed or max length retrains everything
    for trial, run in [(TrialSettings(epochs=1, lr=1e-4), None),
                       (None, RunSettings(device="cpu", seed=7)),
                       (TrialSettings(epochs=2), None)]:
        fake = FakeTrainer(scores)
        s2 = go(reg, store, model_dir, fake, trial=trial, run=run)
        assert len(fake.calls) == 3, (trial, run)
        assert not set(s2.ledger_keys) & set(s.ledger_keys)
    # candidate order is part of the key: the same set in another order is another run
    from gradts_engine.mtl import MTLSettings

    specs = {n: reg.get(n) for n in [PRIMARY, a, b]}
    ctx = RunContext("m", "m", reg.get(PRIMARY), specs, dict.fromkeys(specs, "fp"), {},
                   MTLSettings(), "fp32", {"split": "dev"})
    k1, k2 = run_key(store, ctx, (a, b), 1), run_key(store, ctx, (b, a), 1)
    assert k1.digest != k2.digest
    assert run_key(store, ctx, (a, b), 1).digest == k1.digest
    assert run_key(store, ctx, (a, b), 2).digest != k1.digest
    import dataclasses

    ctx2 = dataclasses.replace(ctx, settings=MTLSettings(lr=1e-3))
    assert run_key(store, ctx2, (a, b), 1).digest != k1.digest
    ctx3 = dataclasses.replace(ctx, importance={a: "probe/other"})
    assert run_key(store, ctx3, (a, b), 1).digest != k1.digest


def test_seeds_means_and_noise_verdict(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b = CANDS[:2]
    # a large gain: outside the noise
    fake = FakeTrainer({(): 0.55, (a,): 0.85, (a, b): 0.80}, per_seed=0.01)
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, seeds=3))
    assert len(fake.calls) == 9 and {c_["seed"] for c_ in fake.calls} == {2018, 2019, 2020}
    assert s.seeds == (2018, 2019, 2020) and len(s.baseline.scores) == 3
    assert s.selected == (a,)
    assert s.selected_trial.mean == pytest.approx(np.mean(s.selected_trial.scores))
    assert s.selected_trial.std == pytest.approx(np.std(s.selected_trial.scores, ddof=1))
    v = s.verdict
    assert not v.within_noise and v.ci_low > 0 and v.spread is not None
    assert v.diff == pytest.approx(s.selected_trial.mean - s.baseline.mean)
    # a tiny gain: within the noise, said plainly
    fake = FakeTrainer({(): 0.60, (a,): 0.61, (a, b): 0.605})
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, lr=1e-4))
    assert s.selected == (a,) and s.verdict.within_noise
    assert s.verdict.ci_low < 0 < s.verdict.ci_high
    assert "within the noise" in s.verdict.message


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews", "pearson", "spearman"])
def test_paired_bootstrap_matches_direct_resampling(metric: str) -> None:
    """The vectorised resample metrics equal scikit-learn / SciPy on every resample."""
    from gradts_engine.metrics import METRIC_FUNCTIONS
    from gradts_engine.selection.stats import paired_bootstrap, resampled_metric

    rng = np.random.default_rng(0)
    n, B = 40, 200
    if metric in ("pearson", "spearman"):
        y = rng.normal(size=n)
        p1, p2 = y + rng.normal(size=n), np.round(y + 2 * rng.normal(size=n), 1)  # ties too
    else:
        y = rng.integers(0, 2, n)
        p1, p2 = np.where(rng.random(n) < 0.8, y, 1 - y), rng.integers(0, 2, n)
    fn = METRIC_FUNCTIONS[metric]
    r = np.random.default_rng(5)
    idx = r.integers(0, n, (B, n))
    W = np.stack([np.bincount(i, minlength=n) for i in idx]).astype(float)
    got = resampled_metric(metric, p1, y, W)
    want = np.array([fn(p1[i], y[i]) for i in idx])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    diffs = want - np.array([fn(p2[i], y[i]) for i in idx])
    lo, hi = paired_bootstrap(metric, y, [p1], [p2], n_boot=B, seed=5)
    assert lo == pytest.approx(np.quantile(diffs, 0.05))
    assert hi == pytest.approx(np.quantile(diffs, 0.95))


def test_compare_random_and_all(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a, b = CANDS[:2]
    fake = FakeTrainer({(): 0.5, (a,): 0.6, (a, b): 0.55})
    s = go(reg, store, model_dir, fake, compare=("random", "all"))
    roles = [t.role for t in s.comparisons]
    assert roles == ["random", "all"]
    assert len(s.comparisons[0].aux) == 1 and s.comparisons[1].aux == tuple(CANDS)
    # seeded: the same random set again, reused from the ledger
    fake2 = FakeTrainer({})
    s2 = go(reg, store, model_dir, fake2, compare=("random", "all"))
    assert fake2.calls == [] and s2.comparisons[0].aux == s.comparisons[0].aux
    with pytest.raises(ConfigError):
        go(reg, store, model_dir, fake, compare=("best",))
    # with --force, a set trained earlier in the same call is not trained twice
    fake3 = FakeTrainer({(): 0.5, (a,): 0.6, (a, b): 0.7})
    s3 = go(reg, store, model_dir, fake3, cands=[a, b], compare=("all",), force=True)
    assert [c_["aux"] for c_ in fake3.calls] == [(), (a,), (a, b)]
    assert s3.comparisons[0].aux == (a, b) and s3.trained == 3


def test_test_split_report_and_holdout(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a = CANDS[0]
    fake = FakeTrainer({(): 0.5, (a,): 0.6})
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, max_aux=1))
    # the demo tasks have a labelled test split: the selected set's test score is reported
    assert [h.kind for h in s.holdout] == ["test"]
    assert s.holdout[0].selected["accuracy"] == pytest.approx(s.selected_trial.mean - 0.01)
    assert fake.calls[0]["report"] == {"test": ("test", None)}
    # --holdout-fraction: dev split in two (seeded), selection on one part only
    fake = FakeTrainer({(): 0.5, (a,): 0.6})
    s = go(reg, store, model_dir, fake, trial=TrialSettings(epochs=1, max_aux=1),
           holdout_fraction=0.25)
    sel = fake.calls[0]["eval_index"]
    split, rep = fake.calls[0]["report"]["holdout"]
    assert split == "dev" and len(rep) == 6 and len(sel) == 18
    assert not set(sel.tolist()) & set(rep.tolist())
    assert sorted([*sel.tolist(), *rep.tolist()]) == list(range(24))
    assert [h.kind for h in s.holdout] == ["test", "holdout"]
    with pytest.raises(ConfigError):
        go(reg, store, model_dir, fake, holdout_fraction=1.5)


def test_no_test_split_says_so(store_root, model_dir, tmp_path) -> None:
    from gradts_engine.tasks.registry import load_task_file

    files = {}
    for split in ("train", "dev"):
        f = tmp_path / f"{split}.tsv"
        f.write_text("sentence\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(10)))
        files[split] = f.name
    toml = tmp_path / "t.toml"
    toml.write_text('[[task]]\nname = "mine"\nkind = "classification"\ntext = ["sentence"]\n'
                    'label = "label"\nlabels = ["a", "b"]\n[task.source]\ntype = "local"\n'
                    'format = "tsv"\nfiles = { train = "train.tsv", dev = "dev.tsv" }\n')
    (mine,) = load_task_file(toml)
    reg = build_registry(include_user=False, demo_sizes=SIZES)
    store = Store(store_root)
    write_probe(store, model_dir, "mine", np.arange(12))
    write_probe(store, model_dir, CANDS[0], np.arange(12))
    fake = FakeTrainer({})
    s = run_trial(model_dir, mine, [reg.get(CANDS[0])], store=store,
                  run=RunSettings(device="cpu"), trial=TrialSettings(epochs=1), train_fn=fake)
    assert [h.kind for h in s.holdout] == ["same-dev"]
    assert "same dev split" in s.holdout[0].message


def test_summary_is_stored_and_loaded(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    a = CANDS[0]
    assert load_trial_summary(store, model_dir, PRIMARY) is None
    s = go(reg, store, model_dir, FakeTrainer({(): 0.5, (a,): 0.6}))
    loaded = load_trial_summary(store, model_dir, PRIMARY)
    assert loaded is not None
    assert json.dumps(loaded.to_json(), sort_keys=True) == json.dumps(s.to_json(), sort_keys=True)
    assert loaded.selected == (a,) and loaded.key == s.key
    assert load_trial_summary(store, model_dir, "agree_rc") is None


def test_missing_probe_names_the_command(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir, tasks=(PRIMARY, *CANDS[:2]))
    with pytest.raises(MissingResultError) as e:
        go(reg, store, model_dir, FakeTrainer({}))
    assert "gradts probe" in e.value.hint and CANDS[2] in e.value.hint


def test_one_probe_rule_for_every_stage(reg, store_root, model_dir) -> None:
    """A task probed twice with other settings: corr, trial (ranking, provenance, run keys) and
    report use the same probe entries, and say that several settings groups exist."""
    from gradts_engine.corr import correlate_tasks
    from gradts_engine.report import build_report

    store = Store(store_root)
    probe_all(store, model_dir)
    extra = write_probe(store, model_dir, CANDS[0], -np.arange(12.0), settings={"epochs": 9})
    s = go(reg, store, model_dir, FakeTrainer({}), trial=TrialSettings(epochs=1, max_aux=1))
    used = dict(s.probes)
    assert set(used) == {PRIMARY, *CANDS} and str(extra) not in used.values()
    assert s.ranking[0].task == CANDS[0]            # the planted order: the {} group was used
    assert any("settings groups" in n for n in s.notes)
    corr = correlate_tasks(store, model_dir, [PRIMARY, *CANDS], primary=PRIMARY)
    assert {p.task: p.key for p in corr.probes} == used
    assert any("settings groups" in w for w in corr.warnings)
    rep = build_report(store, model_dir, PRIMARY)
    assert {r.task: r.key for r in rep.probes} == used
    (e,) = [e for e in store.entries("trial-run") if e.key_path == s.baseline.ledger[0]]
    assert e.spec["importance"] == [used[PRIMARY]]
