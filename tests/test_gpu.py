"""The CUDA path: gates, probe and multi-task training on a GPU, bf16 and fp16 (opt-in marker).

Skipped without a CUDA device. On a GPU: ``pytest -m gpu tests/test_gpu.py``.
References are the same computations on the CPU in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

from gradts_engine import correlate, models, probe  # noqa: E402
from gradts_engine.config import ProbeSettings, RunSettings, TrialSettings  # noqa: E402
from gradts_engine.store import Store  # noqa: E402
from gradts_engine.tasks import build_registry, demo  # noqa: E402

SIZES = {"train": 96, "dev": 32}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = models.make_tiny_model(tmp_path_factory.mktemp("tiny"), words=demo.vocabulary(),
                                  layers=2, heads=4, hidden=64)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture(scope="module")
def registry():
    return build_registry(include_user=False, demo_sizes=SIZES)


def test_gate_importance_on_cuda_equals_cpu(tiny: str) -> None:
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from gradts_engine.heads import HeadGates, gate_importance

    tok = AutoTokenizer.from_pretrained(tiny)
    net = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2).eval()
    rows = demo.generate("neg_movie", "train", n=8)
    batch = dict(tok([r["text_a"] for r in rows], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([r["label"] for r in rows])

    def loss_fn(out, b):
        return F.cross_entropy(out.logits.float(), b["labels"], reduction="none")

    with HeadGates(net) as gates:
        ref = gate_importance(net, batch, loss_fn, gates).cpu()
    net = net.cuda()
    gpu_batch = {k: v.cuda() for k, v in batch.items()}
    with HeadGates(net) as gates:
        got = gate_importance(net, gpu_batch, loss_fn, gates)
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-3, atol=1e-5)
    with HeadGates(net) as gates, torch.autocast("cuda", dtype=torch.bfloat16):
        got16 = gate_importance(net, gpu_batch, loss_fn, gates).float().cpu()
    assert torch.isfinite(got16).all()
    tau, _ = correlate.correlate(ref.numpy().ravel(), got16.numpy().ravel())
    assert tau > 0.8, f"bf16 gate importance disagrees with fp32: tau {tau:.3f}"


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_probe_on_cuda_agrees_with_cpu(tiny: str, registry, tmp_path: Path, precision) -> None:
    spec = registry.get("neg_movie")
    settings = ProbeSettings(epochs=1, batch_size=16, max_length=48, lr=1e-4)
    cpu = probe.probe_tasks(tiny, [spec], store=Store(tmp_path / "cpu"),
                            run=RunSettings(device="cpu", seed=3), probe=settings)
    gpu = probe.probe_tasks(tiny, [spec], store=Store(tmp_path / "gpu"),
                            run=RunSettings(device="cuda", precision=precision, seed=3),
                            probe=settings)
    r_cpu, r_gpu = cpu.outcomes[0].result, gpu.outcomes[0].result
    assert r_gpu.info.get("device", "").startswith("cuda")
    assert r_gpu.settings.get("precision") == precision
    for est in ("during", "after"):
        a, b = r_cpu.matrix(est).ravel(), r_gpu.matrix(est).ravel()
        assert np.isfinite(b).all()
        tau, _ = correlate.correlate(a, b)
        assert tau > (0.9 if precision == "fp32" else 0.5), f"{est}: tau {tau:.3f} vs CPU"
    _, R = r_gpu.instances()
    assert R.shape == (SIZES["train"], 2, 4) and np.isfinite(R).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mtl_on_cuda_mixed_precision(tiny: str, registry, tmp_path: Path, precision) -> None:
    from gradts_engine.mtl import train_mtl

    res = train_mtl(tiny, registry.get("neg_movie"), [registry.get("neg_product")],
                    store=Store(tmp_path), run=RunSettings(device="cuda", precision=precision,
                                                           seed=1),
                    settings=TrialSettings(epochs=2, batch_size=16, lr=1e-4, max_length=48))
    assert len(res.epochs) == 2
    assert all(np.isfinite(v) for v in res.best_metrics.values() if v is not None)
