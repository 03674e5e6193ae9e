"""Tests for gradts_engine.probe: fine-tuning, the two estimators, the cache (DESIGN.md §2, §4).

A tiny random BERT (2 layers x 4 heads) on demo tasks with 48 training examples: mechanics only.
The numerical checks use an independent reference: the gate derivative identity
``d f(xi * c) / d xi |_{xi=1} = <c, df/dc>`` computed from the attention output projection's
input and its gradient, with no gates at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: threads only contend on a shared 2-core machine

from gradts_engine import correlate, data, models, probe, results  # noqa: E402
from gradts_engine.config import ProbeSettings, RunSettings  # noqa: E402
from gradts_engine.errors import (  # noqa: E402
    ConfigError,
    DataError,
    DeviceError,
    ModelError,
    OfflineError,
    TrainingError,
    UnknownTaskError,
    UnsupportedArchitectureError,
)
from gradts_engine.store import Store  # noqa: E402
from gradts_engine.tasks import build_registry, demo  # noqa: E402

SIZES = {"train": 48, "dev": 16}
RUN = RunSettings(device="cpu", seed=7)
FAST = ProbeSettings(epochs=1, batch_size=16, max_length=64)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(models.make_tiny_model(tmp_path_factory.mktemp("tiny"), words=demo.vocabulary()))


@pytest.fixture(scope="session")
def tiny_nodrop(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model without dropout (so a training step is a deterministic function)."""
    path = models.make_tiny_model(tmp_path_factory.mktemp("tiny0"), words=demo.vocabulary())
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture(scope="module")
def registry():
    return build_registry(include_user=False, demo_sizes=SIZES)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(tmp_path / "config"))


def run_probe(model, specs, root, *, probe_settings=FAST, run=RUN, **kw):
    return probe.probe_tasks(model, specs, store=Store(root), run=run, probe=probe_settings, **kw)


def sorted_instances(result):
    index, R = result.instances()
    order = np.argsort(index)
    return index[order], R[order]


# ---------------------------------------------------------------------------------------------
# Independent reference: gate gradients from the projection input and its gradient
# ---------------------------------------------------------------------------------------------
def reference_gate_grads(task_model, task, batch, kind, per_example: bool):
    """d(loss)/d(gate) per head via <c, dL/dc> at each layer's attention.output.dense input.

    ``per_example``: (B, L, H) of |dL_b/dxi_b| (sum of example losses); else (L, H) of
    |d(mean batch loss)/dxi| for one gate shared by the batch.
    """
    layers = task_model.encoder.encoder.layer
    H = task_model.config.num_attention_heads
    inputs: list = []
    hooks = []

    def keep(_m, args):
        c = args[0]
        c.retain_grad()
        inputs.append(c)

    for layer in layers:
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(keep))
    try:
        logits = task_model(task, batch["input_ids"], batch["attention_mask"],
                            batch.get("token_type_ids"))
        losses = models.per_example_loss(logits, batch["labels"], kind)
        (losses.sum() if per_example else losses.mean()).backward()
    finally:
        for h in hooks:
            h.remove()
    out = []
    for c in inputs:
        B, T, D = c.shape
        prod = (c * c.grad).view(B, T, H, D // H).sum(dim=(1, 3))    # (B, H)
        out.append(prod.abs() if per_example else prod.sum(0).abs())
    task_model.zero_grad(set_to_none=True)
    return torch.stack(out, dim=1 if per_example else 0).detach()   # (B, L, H) or (L, H)


def test_during_and_after_match_independent_reference(tiny_nodrop, registry, tmp_path):
    """lr 0 and no dropout: the model never changes, so both estimators can be recomputed."""
    spec = registry.get("match_city")  # a sentence-pair task (token_type_ids)
    settings = ProbeSettings(epochs=2, batch_size=16, max_length=64, lr=0.0)
    res = run_probe(tiny_nodrop, [spec], tmp_path / "h", probe_settings=settings)
    r = res.outcomes[0].result

    ref = models.resolve_model(tiny_nodrop)
    tok = models.load_tokenizer(ref)
    tm = models.build_task_model(ref, {spec.name: spec.num_outputs}, seed=RUN.seed)
    tm.train()
    split = data.load_split(spec, "train")
    enc = data.encode_split(split, tok, tokenizer_id="t", max_length=64)
    during = torch.zeros(2, 4, dtype=torch.float64)
    for epoch in range(2):
        for idx in data.batches(enc, 16, shuffle=True, seed=RUN.seed + epoch):
            batch = data.collate(enc, idx, tok.pad_token_id)
            during += reference_gate_grads(tm, spec.name, batch, spec.kind, False).double()
    entry_arrays = r.store.load_arrays(r.entry, "task")
    np.testing.assert_allclose(entry_arrays["during_raw"], during.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(r.matrix("during"), correlate.layer_l1(during.numpy()),
                               rtol=1e-4, atol=1e-6)

    tm.eval()
    R_ref = torch.cat([reference_gate_grads(tm, spec.name, data.collate(enc, [i], 0),
                                            spec.kind, True) for i in range(len(enc))])
    index, R = sorted_instances(r)
    np.testing.assert_array_equal(index, np.arange(len(enc)))
    np.testing.assert_allclose(R, R_ref.numpy(), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Results, files, estimators
# ---------------------------------------------------------------------------------------------
def test_result_shapes_files_and_estimators(tiny, registry, tmp_path):
    specs = [registry.get("neg_movie"), registry.get("match_person")]
    res = run_probe(tiny, specs, tmp_path / "h")
    assert isinstance(res, probe.ProbeRun)
    assert res.measure == "gate" and res.model == tiny
    assert res.model_cache_id == str(Path(tiny).resolve())
    assert [o.task for o in res.outcomes] == ["neg_movie", "match_person"]
    for o in res.outcomes:
        r = o.result
        assert not o.cached and o.seconds > 0
        assert (r.num_layers, r.num_heads, r.num_instances) == (2, 4, 48)
        for est in ("during", "after"):
            m = r.matrix(est)
            assert m.shape == (2, 4) and m.dtype == np.float32 and np.isfinite(m).all()
        files = sorted(p.name for p in r.entry.path.iterdir())
        assert files == ["instances-00000.safetensors", "meta.json", "task.safetensors"]
        arrays = r.store.load_arrays(r.entry, "task")
        assert set(arrays) == {"during", "after", "during_raw", "after_raw"}
        info = r.info
        for k in ("task_name", "model_name", "num_instances", "num_layers", "num_heads",
                  "model_type", "chunks", "timings", "train", "device", "precision"):
            assert k in info, k
        assert info["task_name"] == o.task and info["model_type"] == "bert"
        assert info["precision"] == "fp32" and info["device"] == "cpu"
        assert info["train"]["steps"] == 3 and np.isfinite(info["train"]["final_loss"])
        assert info["dev"]["n"] == 16 and 0 <= info["dev"]["accuracy"] <= 1
        for t in ("load_s", "fine_tune_s", "importance_s", "examples_per_s"):
            assert info["timings"][t] >= 0
        spec = r.entry.spec
        assert spec["measure"] == "gate" and spec["model"] == res.model_cache_id
        assert spec["settings"]["seed"] == RUN.seed and spec["settings"]["precision"] == "fp32"
        assert spec["settings"]["instances"] is True
        # `during` is normalised per layer; `after` = task_matrix of the stored instances
        np.testing.assert_allclose(r.matrix("during").sum(axis=1), 1.0, rtol=1e-5)
        index, R = sorted_instances(r)
        assert R.shape == (48, 2, 4) and R.dtype == np.float32 and (R >= 0).all()
        np.testing.assert_array_equal(index, np.arange(48))
        np.testing.assert_allclose(r.matrix("after"), correlate.task_matrix(R), atol=1e-6)
        np.testing.assert_allclose(arrays["after_raw"], R.mean(0), rtol=1e-5)
    # the store's lookup finds them (the contract with corr/trial/fg)
    loaded = results.load_results(Store(tmp_path / "h"), tiny, ["neg_movie", "match_person"])
    assert [x.task for x in loaded] == ["neg_movie", "match_person"]


def test_cached_reuse_force_and_seeded_determinism(tiny, registry, tmp_path, monkeypatch):
    spec = registry.get("agree_pp")
    first = run_probe(tiny, [spec], tmp_path / "a").outcomes[0]

    def no_training(*a, **k):
        raise AssertionError("a cached task must not be trained again")

    with monkeypatch.context() as m:
        m.setattr(probe, "fine_tune", no_training)
        events = []
        again = run_probe(tiny, [spec], tmp_path / "a", progress=events.append).outcomes[0]
    assert again.cached and not first.cached
    assert [e.stage for e in events] == ["cached"]
    assert again.result.entry.path == first.result.entry.path
    np.testing.assert_array_equal(again.result.matrix("during"), first.result.matrix("during"))

    calls = []
    real = probe.fine_tune
    monkeypatch.setattr(probe, "fine_tune", lambda *a, **k: calls.append(1) or real(*a, **k))
    forced = run_probe(tiny, [spec], tmp_path / "a", force=True).outcomes[0]
    assert not forced.cached and calls == [1]
    assert len(Store(tmp_path / "a").entries("probe")) == 1
    # same seed, CPU: identical matrices; forced rerun too
    other = run_probe(tiny, [spec], tmp_path / "b").outcomes[0]
    for est in ("during", "after"):
        np.testing.assert_array_equal(other.result.matrix(est), first.result.matrix(est))
        np.testing.assert_array_equal(forced.result.matrix(est), first.result.matrix(est))
    np.testing.assert_array_equal(sorted_instances(other.result)[1],
                                  sorted_instances(first.result)[1])
    # another seed or another setting is another key
    reseeded = run_probe(tiny, [spec], tmp_path / "a",
                         run=RunSettings(device="cpu", seed=8)).outcomes[0]
    assert not reseeded.cached
    assert not np.array_equal(reseeded.result.matrix("during"), first.result.matrix("during"))
    assert len(Store(tmp_path / "a").entries("probe")) == 2


def test_chunked_instances_reassemble(tiny, registry, tmp_path, monkeypatch):
    spec = registry.get("topic_news")
    whole = run_probe(tiny, [spec], tmp_path / "one").outcomes[0].result
    monkeypatch.setattr(probe, "INSTANCES_PER_CHUNK", 10)
    chunked = run_probe(tiny, [spec], tmp_path / "many").outcomes[0].result
    assert chunked.info["chunks"] == [f"instances-{i:05d}.safetensors" for i in range(5)]
    sizes = [len(idx) for idx, _ in chunked.iter_instances()]
    assert sizes == [10, 10, 10, 10, 8]
    i1, R1 = sorted_instances(whole)
    i2, R2 = sorted_instances(chunked)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(R1, R2, rtol=1e-5, atol=1e-8)  # batches differ only in padding
    np.testing.assert_array_equal(whole.matrix("during"), chunked.matrix("during"))
    np.testing.assert_allclose(whole.matrix("after"), chunked.matrix("after"), atol=1e-5)


def test_no_instances(tiny, registry, tmp_path):
    spec = registry.get("neg_product")
    r = run_probe(tiny, [spec], tmp_path / "h", probe_settings=ProbeSettings(
        epochs=1, batch_size=16, max_length=64, instances=False)).outcomes[0].result
    assert not r.has_instances and r.info["chunks"] == []
    assert sorted(p.name for p in r.entry.path.iterdir()) == ["meta.json", "task.safetensors"]
    assert np.isfinite(r.matrix("after")).all() and r.matrix("after").max() == 1.0


@pytest.mark.parametrize("measure", ["qkv", "legacy"])
def test_weight_gradient_measures(tiny, registry, tmp_path, measure):
    spec = registry.get("match_city")
    settings = ProbeSettings(epochs=1, batch_size=16, max_length=64, measure=measure,
                             max_train_examples=24)
    r = run_probe(tiny, [spec], tmp_path / "h", probe_settings=settings).outcomes[0].result
    assert r.measure == measure and r.entry.spec["measure"] == measure
    np.testing.assert_allclose(r.matrix("during").sum(axis=1), 1.0, rtol=1e-5)
    index, R = sorted_instances(r)
    assert R.shape == (24, 2, 4) and (R > 0).any()
    np.testing.assert_allclose(r.matrix("after"), correlate.task_matrix(R), atol=1e-6)
    assert measure in r.info["during_source"]


def test_interrupted_run_keeps_finished_tasks_and_resumes(tiny, registry, tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "INSTANCES_PER_CHUNK", 10)
    specs = [registry.get("neg_movie"), registry.get("agree_rc")]
    root = tmp_path / "h"

    def interrupt(event):
        # the second task has written 4 chunk files to its temporary entry by now
        if event.task == "agree_rc" and event.stage == "importance" and event.done == 48:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_probe(tiny, specs, root, progress=interrupt)
    store = Store(root)
    entries = store.entries("probe")
    assert [e.info["task_name"] for e in entries] == ["neg_movie"]
    assert not any((root / ".tmp").iterdir()), "no half-written entry may remain"
    assert not results.find_results(store, tiny, task="agree_rc")

    rerun = run_probe(tiny, specs, root)
    assert [(o.task, o.cached) for o in rerun.outcomes] == [("neg_movie", True),
                                                             ("agree_rc", False)]


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_training_error(tiny, registry, tmp_path, monkeypatch):
    real = models.per_example_loss
    calls = []

    def diverging(logits, labels, kind):
        calls.append(1)
        losses = real(logits, labels, kind)
        return losses * float("nan") if len(calls) >= 2 else losses

    monkeypatch.setattr(models, "per_example_loss", diverging)
    with pytest.raises(TrainingError) as e:
        run_probe(tiny, [registry.get("topic_home")], tmp_path / "h",
                  probe_settings=ProbeSettings(epochs=1, batch_size=16, max_length=64, lr=3e-4))
    msg = e.value.message
    assert "topic_home" in msg and "step 2 of 3" in msg and "learning rate 0.0003" in msg
    assert "--lr" in e.value.hint
    assert not Store(tmp_path / "h").entries("probe")


def test_label_that_does_not_fit_the_head(registry):
    spec = registry.get("neg_movie")
    probe.check_labels(spec, np.array([0, 1, 1, 0]))
    with pytest.raises(DataError, match=r"train example 2 has label id 2, which does not fit"):
        probe.check_labels(spec, np.array([0, 1, 2, 5]))
    with pytest.raises(DataError, match="has no label"):
        probe.check_labels(spec, np.array([0, -1]))


def test_bad_settings_and_models(tiny, registry, tmp_path, monkeypatch):
    spec = [registry.get("neg_movie")]
    with pytest.raises(ConfigError, match="unknown importance measure 'gates'"):
        run_probe(tiny, spec, tmp_path, probe_settings=ProbeSettings(measure="gates"))
    with pytest.raises(ConfigError, match=r"--max-length 512 is longer than model .* \(128"):
        run_probe(tiny, spec, tmp_path, probe_settings=ProbeSettings(max_length=512))
    with pytest.raises(ModelError, match="does not exist"):
        run_probe(str(tmp_path / "nowhere"), spec, tmp_path)
    bad = tmp_path / "t5"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    with pytest.raises(UnsupportedArchitectureError, match="'t5'"):
        run_probe(str(bad), spec, tmp_path)
    with pytest.raises(UnknownTaskError, match="neg_movie"):
        registry.get("neg_movei")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            run_probe(tiny, spec, tmp_path, run=RunSettings(device="cuda"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises((OfflineError, ModelError)):
        run_probe("no-such-org-gradts/no-such-model", spec, tmp_path)
    assert not Store(tmp_path).entries("probe")


# ---------------------------------------------------------------------------------------------
# P2': the after pass at its floor (no weight gradient computed or kept)
# ---------------------------------------------------------------------------------------------
def _saved_activation_bytes(net, fn) -> int:
    """Bytes of the non-parameter tensors autograd saves for backward while ``fn`` runs."""
    params = {p.data_ptr() for p in net.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_after_pass_freezes_parameters_and_keeps_no_weight_gradient(tiny, registry, tmp_path):
    from gradts_engine import heads, importance

    spec = registry.get("match_city")
    ctx = probe.context(tiny, RUN, FAST, Store(tmp_path / "h"))
    net, layout = probe.build_probe_model(ctx, spec)
    enc = data.encode_split(data.load_split(spec, "train"), ctx.tokenizer, tokenizer_id="t",
                            max_length=64)
    trainable_during: list[bool] = []
    hook = net.register_forward_pre_hook(
        lambda m, a: trainable_during.append(any(p.requires_grad for p in m.parameters())))
    try:
        out = probe.after_pass(ctx, spec, net, layout, enc, None, None)
    finally:
        hook.remove()
    assert trainable_during and not any(trainable_during)   # frozen in every batch's forward
    assert all(p.requires_grad for p in net.parameters())    # restored afterwards
    assert all(p.grad is None for p in net.parameters())     # no weight gradient kept
    assert out["after_raw"].shape == (2, 4) and (out["after_raw"] > 0).all()

    # the same per-example matrices as with trainable parameters, from less saved memory
    batch = data.collate(enc, np.arange(16), ctx.pad_id)
    net.eval()

    def loss_fn(o, b):
        return models.per_example_loss(o, b["labels"], spec.kind)

    with heads.HeadGates(net, layout) as gates:
        R_trainable = heads.gate_importance(net, batch, loss_fn, gates)
        full = _saved_activation_bytes(
            net, lambda: heads.gate_importance(net, batch, loss_fn, gates))
        with importance.frozen_parameters(net):
            R_frozen = heads.gate_importance(net, batch, loss_fn, gates)
            floor = _saved_activation_bytes(
                net, lambda: heads.gate_importance(net, batch, loss_fn, gates))
    torch.testing.assert_close(R_frozen, R_trainable, rtol=0, atol=0)
    assert 0 < floor < full, (floor, full)
    assert all(p.grad is None for p in net.parameters())
