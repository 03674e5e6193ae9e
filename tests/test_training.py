"""Tests for gradts_engine.training: the one training loop (recipe, hook, checks, progress).

A small ``nn.Sequential`` regression model makes every step checkable against a plain-torch
reference written here (AdamW, LambdaLR, clip_grad_norm_), with no Accelerate involved.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from gradts_engine import interrupts, training  # noqa: E402
from gradts_engine.errors import TrainingError  # noqa: E402
from gradts_engine.progress import Stage  # noqa: E402
from gradts_engine.training import Trainer, TrainPlan  # noqa: E402

CPU = torch.device("cpu")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 1))


def _data(n_batches: int = 6, B: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(B, 4, generator=g), torch.randn(B, generator=g))
            for _ in range(n_batches)]


def _plan(total: int, **kw) -> TrainPlan:
    args = dict(total_steps=total, epochs=2, lr=0.05, weight_decay=0.1, warmup=0.125,
                label="task 'x'", task="x", grad_clip=0.5)
    args.update(kw)
    return TrainPlan(**args)


def test_linear_schedule():
    f = training.linear_schedule(10, 0.2)
    assert [round(f(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5,
                                                   0.375, 0.25, 0.125]
    assert training.linear_schedule(5, 0.0)(0) == 1.0
    # one rounding rule: round(warmup * steps), so 0.1 * 15 = 1.5 -> 2 warm-up steps
    assert training.warmup_steps(15, 0.1) == 2 and training.warmup_steps(12, 0.1) == 1
    assert training.linear_schedule(15, 0.1)(1) == 1.0


def test_no_weight_decay_on_one_dimensional_parameters():
    groups = training.param_groups(_model(), 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"])
    assert sorted(tuple(p.shape) for p in groups[1]["params"]) == [(1,), (8,), (8,), (8,)]


def test_trainer_equals_plain_torch_reference():
    """Two epochs on the core give the same weights as the recipe written out in plain torch."""
    data = _data()
    total = 2 * len(data)
    got = _model()
    seen_steps: list[tuple[int, int, int]] = []
    trainer = Trainer(got, _plan(total), device=CPU, dtype=None,
                      on_step=lambda s: seen_steps.append((s.step, s.epoch, s.batch_size)))

    def loss_of(_g: str, item):
        x, y = item
        with trainer.autocast():
            return ((trainer.model(x).squeeze(-1) - y) ** 2).mean(), len(y)

    stats = [trainer.epoch(e, [("x", b) for b in data], loss_of) for e in range(2)]

    def reference(**adamw: bool) -> tuple[torch.nn.Module, list[list[float]]]:
        ref = _model()
        decay = [p for p in ref.parameters() if p.ndim >= 2]
        rest = [p for p in ref.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": rest, "weight_decay": 0.0}], lr=0.05, **adamw)
        warm = round(0.125 * total)  # 1.5 -> 2 (int() would give 1)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm)))
        losses = []
        for _ in range(2):
            epoch_losses = []
            for x, y in data:
                loss = ((ref(x).squeeze(-1) - y) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.5)
                opt.step()
                sched.step()
                epoch_losses.append(float(loss.detach()))
            losses.append(epoch_losses)
        return ref, losses

    ref, losses = reference(fused=True)          # the recipe, bit for bit (fused on the CPU)
    for a, b in zip(got.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    loop, _ = reference(foreach=False)           # torch's per-tensor loop: the same update
    for a, b in zip(got.parameters(), loop.parameters(), strict=True):   # up to rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for st, ref_losses in zip(stats, losses, strict=True):
        assert st.mean_loss["x"] == pytest.approx(sum(ref_losses) / len(ref_losses), rel=1e-12)
        assert st.examples == {"x": 30} and st.steps == 6
    assert seen_steps == [(s, s // 6, 5) for s in range(12)]
    assert trainer.step == 12


def test_hook_sees_gradients_before_clipping():
    model = _model()
    data = _data(1)
    seen = {}

    def hook(step):
        seen["norm"] = float(torch.nn.utils.get_total_norm(
            [p.grad for p in model.parameters()]))
        seen["loss"] = float(step.loss)

    trainer = Trainer(model, _plan(1, grad_clip=1e-6), device=CPU, dtype=None, on_step=hook)

    def loss_of(_g, item):
        x, y = item
        return ((trainer.model(x).squeeze(-1) - y) ** 2).mean() * 100, len(y)

    trainer.epoch(0, [("x", data[0])], loss_of)
    assert seen["norm"] > 1e-3          # the unclipped gradient
    after = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
    assert after == pytest.approx(1e-6, rel=1e-3)   # clipped before the step
    assert seen["loss"] > 0


def test_non_finite_loss_names_its_step_and_progress_events():
    model = _model()
    data = _data(4)
    events = []
    trainer = Trainer(model, _plan(4, epochs=1), device=CPU, dtype=None,
                      progress=events.append)

    def loss_of(_g, item):
        x, y = item
        loss = ((trainer.model(x).squeeze(-1) - y) ** 2).mean()
        return (loss * float("nan") if trainer.step == 2 else loss), len(y)

    with pytest.raises(TrainingError) as e:
        trainer.epoch(0, [("x", b) for b in data], loss_of)
    msg = e.value.message
    assert msg.startswith("task 'x': the training loss became nan at step 3 of 4 (epoch 1)")
    assert "diverged" in msg
    assert "learning rate 0.05" in msg and "--lr" in e.value.hint
    assert events and all(ev.stage == Stage.FINE_TUNE and ev.task == "x" for ev in events)
    assert events[0].done == 0 and events[0].total == 4 and events[0].message == "epoch 1/1"


def test_interrupt_is_checked_between_steps():
    model = _model()
    data = _data(3)
    trainer = Trainer(model, _plan(3, epochs=1), device=CPU, dtype=None)

    def loss_of(_g, item):
        x, y = item
        if trainer.step == 1:
            interrupts._flag.set()
        return ((trainer.model(x).squeeze(-1) - y) ** 2).mean(), len(y)

    try:
        with pytest.raises(interrupts.Interrupted):
            trainer.epoch(0, [("x", b) for b in data], loss_of)
    finally:
        interrupts.reset()
    assert trainer.step == 2            # stopped before the third step, not inside one


def test_precision_and_device_names():
    from gradts_engine.config import RunSettings

    assert training.precision_of(None) == "fp32"
    assert training.precision_of(torch.bfloat16) == "bf16"
    assert training.precision_of(torch.float16) == "fp16"
    cpu = RunSettings(device="cpu", precision="auto")
    assert training.precision_name(cpu) == "fp32" and training.device_name(cpu) == "cpu"
    assert math.isfinite(training.EMIT_SECONDS)


def test_accelerator_follows_each_runs_precision_in_one_process():
    """Accelerate's per-process state is reset between single-process runs of another kind."""
    first = training.make_accelerator(CPU, None)
    assert first.mixed_precision == "no" and first.device.type == "cpu"
    other = training.make_accelerator(CPU, torch.bfloat16)     # refused by Accelerate alone
    assert other.mixed_precision == "bf16" and other.device.type == "cpu"
    with other.autocast():
        y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16
    again = training.make_accelerator(CPU, None)
    assert again.mixed_precision == "no" and again.scaler is None
    with again.autocast():
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.float32
