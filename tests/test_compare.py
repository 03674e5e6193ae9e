"""gradts compare: each selector against an independent computation, the dedupe of sets, the
interval code against a brute-force bootstrap, resume, and the bad-input errors."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import pytest

from gradts_engine.config import RunSettings, TrialSettings
from gradts_engine.errors import MissingResultError, UsageError
from gradts_engine.metrics import METRIC_FUNCTIONS
from gradts_engine.mtl import EpochRecord, MTLResult
from gradts_engine.selection.compare import load_compare, run_compare
from gradts_engine.selection.selectors import SELECTORS, SelectContext, get_selector
from gradts_engine.selection.stats import paired_diffs
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

SIZES = {"train": 32, "dev": 16, "test": 40}
PRIMARY = "neg_movie"
CANDS = ["neg_product", "topic_news", "agree_pp", "match_city"]   # planted gradts order


@pytest.fixture(scope="module")
def reg():
    return build_registry(include_user=False, demo_sizes=SIZES)


def probe_all(store: Store, model: str) -> None:
    from test_trial import write_probe  # the probe writer of the trial tests

    x = np.arange(12, dtype=np.float64)
    write_probe(store, model, PRIMARY, x)
    for k, t in enumerate(CANDS, start=1):
        y = x.copy()
        for j in range(k):
            y[[2 * j, 2 * j + 1]] = y[[2 * j + 1, 2 * j]]
        write_probe(store, model, t, y)


class FakeTrainer:
    """Scripted accuracy on every evaluation set, by auxiliary set; records its calls."""

    def __init__(self, scores: Mapping[frozenset, float] | None = None,
                 fail_at: int | None = None) -> None:
        self.scores = dict(scores or {})
        self.calls: list[tuple[tuple[str, ...], int]] = []
        self.fail_at = fail_at

    def preds(self, names: tuple[str, ...], seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        acc = self.scores.get(frozenset(names), 0.5)
        rng = np.random.default_rng(seed + 31 * len(names))
        right = np.zeros(n, bool)
        right[rng.permutation(n)[:int(round(acc * n))]] = True
        return np.where(right, y, 1 - y), y

    def __call__(self, ref, primary, aux, *, seed, eval_index=None, report=None, **kw):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        names = tuple(a.name for a in aux)
        self.calls.append((names, seed))
        n_dev = SIZES["dev"] if eval_index is None else len(eval_index)
        pred, y = self.preds(names, seed, n_dev)
        reports = {}
        for name, (_split, idx) in (report or {}).items():
            n = SIZES["test"] if idx is None else len(idx)
            reports[name] = self.preds(names, seed + 1000, n)
        acc = float((pred == y).mean())
        return MTLResult(
            primary=primary.name, aux=names, seed=seed,
            epochs=(EpochRecord(1, {primary.name: 0.5}, {primary.name: 32}, {"accuracy": acc},
                                0.01),),
            best_epoch=1, best_metrics={"accuracy": acc}, main_metric="accuracy", seconds=0.01,
            dev_predictions=pred, dev_labels=y, dev_index=np.arange(n_dev),
            report_metrics={k: {"accuracy": float((p == yy).mean())}
                            for k, (p, yy) in reports.items()},
            report_predictions=reports)


def go(reg, store, model, fake, *, selectors=("gradts", "size", "random"), ks=(1, 2), seeds=2,
       cands=CANDS, primaries=(PRIMARY,), **kw):
    return run_compare(model, [reg.get(p) for p in primaries], [reg.get(c) for c in cands],
                       store=store, run=RunSettings(device="cpu"),
                       trial=TrialSettings(epochs=1, seeds=seeds), selectors=selectors, ks=ks,
                       train_fn=fake, **kw)


def ctx_of(reg, store, model, cands, seeds=(2018,)) -> SelectContext:
    from gradts_engine.models import resolve_model
    from gradts_engine.mtl import MTLSettings
    from gradts_engine.signal import ImportanceSignal

    return SelectContext(store, model, resolve_model(model), reg.get(PRIMARY),
                         tuple(reg.get(c) for c in cands), RunSettings(device="cpu"),
                         MTLSettings(batch_size=8, max_length=32), ImportanceSignal(), seeds)


# -- selectors -------------------------------------------------------------------------------
def test_registry_has_every_selector_and_rejects_unknown_names() -> None:
    assert set(SELECTORS) == {"gradts", "size", "random", "embed", "tag", "grad-cos"}
    with pytest.raises(UsageError) as e:
        get_selector("gradt")
    assert "gradts" in e.value.hint


def test_size_and_random_exactly(reg, store_root, model_dir) -> None:
    big = build_registry(include_user=False, demo_sizes={**SIZES, "train": 50})
    store = Store(store_root)
    ctx = ctx_of(reg, store, model_dir, CANDS[:2], seeds=(3, 4))
    ctx = SelectContext(**{**ctx.__dict__, "candidates": (reg.get(CANDS[0]), big.get(CANDS[2]),
                                                          reg.get(CANDS[1]))})
    r = get_selector("size").rank(ctx)
    assert r.order == (CANDS[2], CANDS[0], CANDS[1])      # 50 first, then the 32s by name
    assert r.scores == {CANDS[0]: 32.0, CANDS[1]: 32.0, CANDS[2]: 50.0}
    r = get_selector("random").rank(ctx)
    pool = sorted([CANDS[0], CANDS[2], CANDS[1]])
    import zlib

    for seed, order in zip((3, 4), r.orders, strict=True):
        ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(PRIMARY.encode()),))
        assert order == tuple(pool[i] for i in np.random.default_rng(ss).permutation(3))


def test_gradts_ranks_by_the_planted_correlations(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    r = get_selector("gradts").rank(ctx_of(reg, store, model_dir, CANDS[::-1]))
    assert r.order == tuple(CANDS)
    with pytest.raises(MissingResultError) as e:   # a selector missing what it needs
        get_selector("gradts").rank(ctx_of(reg, store, model_dir, [*CANDS, "topic_home"]))
    assert "gradts probe" in e.value.hint and "topic_home" in e.value.hint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from gradts_engine.models import make_tiny_model
    from gradts_engine.tasks.demo import vocabulary

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), words=vocabulary(SIZES)))


def test_embed_centroid_against_a_direct_computation(reg, store_root, tiny) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from gradts_engine.data import load_split
    from gradts_engine.selection.selectors.embed import SAMPLE, cosine

    store = Store(store_root)
    r = get_selector("embed").rank(ctx_of(reg, store, tiny, CANDS[:2]))
    tok, enc = AutoTokenizer.from_pretrained(tiny), AutoModel.from_pretrained(tiny).eval()

    def direct(name: str) -> np.ndarray:   # one example at a time: no padding, no mask
        split = load_split(reg.get(name), "train", store=store, max_examples=SAMPLE)
        vecs = []
        for i in range(len(split)):
            ex = split.example(i)
            t = tok(*ex, truncation=True, max_length=32, return_tensors="pt")
            with torch.no_grad():
                vecs.append(enc(**t).last_hidden_state[0].double().mean(0).numpy())
        return np.mean(vecs, 0)

    p = direct(PRIMARY)
    for c in CANDS[:2]:
        assert r.scores[c] == pytest.approx(cosine(p, direct(c)), abs=1e-5)


def test_tag_step_against_a_hand_written_lookahead(reg, store_root, tiny) -> None:
    """Two tasks on a tiny model: lookahead() equals an explicit SGD step on a copy."""
    import torch

    from gradts_engine.data import collate, encode_split, load_split
    from gradts_engine.models import build_task_model, load_tokenizer, resolve_model
    from gradts_engine.selection.selectors.joint import lookahead, task_loss

    ref = resolve_model(tiny)
    tok = load_tokenizer(ref)
    store = Store(store_root)
    specs = [reg.get(PRIMARY), reg.get(CANDS[0])]
    batch = {}
    for s in specs:
        enc = encode_split(load_split(s, "train", store=store), tok, tokenizer_id=ref.cache_id,
                           max_length=32, store=store)
        batch[s.name] = collate(enc, np.arange(8), int(tok.pad_token_id))
    torch.manual_seed(0)
    net = build_task_model(ref, {s.name: s.num_outputs for s in specs}, seed=0).eval()
    params = [p for p in net.encoder.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    lr = 0.05
    z, cos = lookahead(net, (PRIMARY, "classification", batch[PRIMARY]),
                       (CANDS[0], "classification", batch[CANDS[0]]), lr, params)
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True))  # restored

    twin = copy.deepcopy(net)
    l0 = float(task_loss(twin, PRIMARY, "classification", batch[PRIMARY]).detach())
    twin.zero_grad()
    task_loss(twin, CANDS[0], "classification", batch[CANDS[0]]).backward()
    with torch.no_grad():
        g_c = [p.grad.detach().clone() for p in twin.encoder.parameters()]
        for p in twin.encoder.parameters():
            p -= lr * p.grad
    l1 = float(task_loss(twin, PRIMARY, "classification", batch[PRIMARY]).detach())
    assert z == pytest.approx(1 - l1 / l0, rel=1e-5, abs=1e-9)
    net.zero_grad()
    task_loss(net, PRIMARY, "classification", batch[PRIMARY]).backward()
    g_p = torch.cat([p.grad.flatten() for p in net.encoder.parameters()])
    g_c = torch.cat([g.flatten() for g in g_c])
    assert cos == pytest.approx(float(g_p @ g_c / g_p.norm() / g_c.norm()), rel=1e-5)


def test_tag_and_grad_cos_share_one_joint_run(reg, store_root, tiny) -> None:
    store = Store(store_root)
    ctx = ctx_of(reg, store, tiny, CANDS[:2])
    t = get_selector("tag").rank(ctx)
    g = get_selector("grad-cos").rank(ctx)
    assert g.seconds == 0.0 and t.cost_s == g.cost_s > 0
    assert set(t.order) == set(g.order) == set(CANDS[:2])
    assert all(-1.0 <= v <= 1.0 for v in g.scores.values())


# -- the interval code -------------------------------------------------------------------------
def test_paired_diffs_over_examples_and_seeds_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    n, S, B = 30, 3, 64
    y = rng.integers(0, 2, n)
    a = [np.where(rng.random(n) < 0.8, y, 1 - y) for _ in range(S)]
    b = [np.where(rng.random(n) < 0.6, y, 1 - y) for _ in range(S)]
    got = paired_diffs("matthews", y, a, b, n_boot=B, seed=9, resample_seeds=True)
    fn = METRIC_FUNCTIONS["matthews"]
    r = np.random.default_rng(9)
    idx = r.integers(0, n, (B, n))       # one chunk: examples first, then seeds
    sidx = r.integers(0, S, (B, S))
    want = [np.mean([fn(a[s][i], y[i]) - fn(b[s][i], y[i]) for s in js])
            for i, js in zip(idx, sidx, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# -- the comparison ----------------------------------------------------------------------------
def test_sets_are_deduplicated_and_scored_on_the_test_split(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    fake = FakeTrainer({frozenset([CANDS[0]]): 0.9})
    res = go(reg, store, model_dir, fake)
    (c,) = res.primaries
    assert c.scored_on == "test" and c.n_examples == SIZES["test"]
    # distinct (set, seed) pairs: alone, all, gradts/size/random top-1 and top-2 per seed
    want = {((), s) for s in (2018, 2019)} | {(tuple(CANDS), s) for s in (2018, 2019)}
    order = {t: i for i, t in enumerate(CANDS)}
    for r in c.rows:
        for aux, s in zip(r.sets, r.seeds, strict=True):
            assert list(aux) == sorted(aux, key=order.get)     # one canonical order
            want.add((aux, s))
    assert len(fake.calls) == len(want) and set(fake.calls) == want
    gradts1 = next(r for r in c.rows if (r.selector, r.k) == ("gradts", 1))
    assert gradts1.sets == ((CANDS[0],), (CANDS[0],))
    assert gradts1.gain is not None and gradts1.gain.separable and gradts1.gain.diff > 0.3
    size1 = next(r for r in c.rows if (r.selector, r.k) == ("size", 1))  # equal sizes: by name
    assert size1.sets[0] == (sorted(CANDS)[0],) and size1.vs_random is not None
    assert any("within the noise" in w or "better" in w for w in res.words)
    assert c.agreement["gradts"]["gradts"] == pytest.approx(1.0)
    loaded = load_compare(store, model_dir, PRIMARY)
    assert loaded is not None and loaded.to_json() == res.to_json()
    assert res.to_csv().count("\n") == 1 + 2 + len(c.rows)


def test_resume_after_an_interrupt_and_reuse_of_trial_runs(reg, store_root, model_dir) -> None:
    from gradts_engine.selection.trial import run_trial

    store = Store(store_root)
    probe_all(store, model_dir)
    with pytest.raises(KeyboardInterrupt):
        go(reg, store, model_dir, FakeTrainer(fail_at=3))
    fake = FakeTrainer()
    go(reg, store, model_dir, fake)
    first = len(fake.calls)
    again = FakeTrainer()
    go(reg, store, model_dir, again)
    assert again.calls == [] and first > 0
    # trial with the same settings and plan reuses the compare runs of gradts' prefixes
    t_fake = FakeTrainer()
    run_trial(model_dir, reg.get(PRIMARY), [reg.get(c) for c in CANDS], store=store,
              run=RunSettings(device="cpu"), trial=TrialSettings(epochs=1, seeds=2, max_aux=2),
              train_fn=t_fake)
    assert t_fake.calls == []


def test_several_primaries_summary(reg, store_root, model_dir) -> None:
    store = Store(store_root)
    probe_all(store, model_dir)
    res = go(reg, store, model_dir, FakeTrainer(), selectors=("size", "random"), ks=(1,),
             seeds=1, primaries=(PRIMARY, CANDS[0]), cands=[PRIMARY, *CANDS])
    assert [p.primary for p in res.primaries] == [PRIMARY, CANDS[0]]
    assert all(PRIMARY not in p.candidates for p in res.primaries[:1])
    assert {(s.selector, s.k) for s in res.summary} == {("size", 1), ("random", 1)}
    for s in res.summary:
        assert s.n_primaries == 2 and s.low is not None and s.low <= s.mean_gain <= s.high
        assert set(s.beats) == {"size", "random"} - {s.selector}


@pytest.mark.parametrize("kw, msg", [
    ({"ks": (5,)}, "--k"), ({"cands": CANDS[:1]}, "1 candidate only"),
    ({"cands": [PRIMARY, *CANDS]}, "among the candidates"), ({"selectors": ("sise",)}, "selector"),
])
def test_bad_input(reg, store_root, model_dir, kw, msg) -> None:
    with pytest.raises(UsageError) as e:
        go(reg, Store(store_root), model_dir, FakeTrainer(), **kw)
    assert msg in e.value.message and e.value.hint
