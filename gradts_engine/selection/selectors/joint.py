"""``tag`` and ``grad-cos``: affinities toward the primary from one short joint training.

The primary ``P`` and every candidate are trained together (one shared encoder, one head per
task, AdamW at a constant learning rate ``lr``, each step the sum of the tasks' mean batch
losses) for one pass over ``P``'s training data (at most ``max_train_examples``). Every
:data:`EVERY` steps, before the update, with dropout off and on that step's batches:

- ``tag`` (Fifty et al., NeurIPS 2021, target-task form): for each candidate ``c`` a virtual
  SGD step on ``c``'s batch, ``theta' = theta - lr * grad L_c(theta)`` over the shared encoder,
  then ``z_c = 1 - L_P(theta') / L_P(theta)`` on ``P``'s batch, and ``theta`` restored. (The
  paper steps with the optimiser; a plain SGD step keeps the measure free of optimiser state.)
- ``grad-cos``: the cosine of ``grad L_P(theta)`` and ``grad L_c(theta)`` over the shared
  encoder's parameters, flattened.

Each affinity is the mean over the lookahead steps; candidates are ranked highest first. The
joint run is computed once per primary and shared by both selectors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Ranking, SelectContext, Selector, order_by, register

EVERY = 5                     # lookahead every this many steps
MAX_STEPS = 200


def task_loss(net: Any, task: str, kind: str, batch: Mapping[str, Any]) -> Any:
    """The mean per-example loss of ``task`` on ``batch`` (a scalar tensor)."""
    from ...models import per_example_loss

    logits = net(task, **{k: v for k, v in batch.items() if k != "labels"})
    return per_example_loss(logits, batch["labels"], kind).mean()


def _grads(loss: Any, params: Sequence[Any]) -> list[Any]:
    import torch

    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)]


def lookahead(net: Any, primary: tuple[str, str, Mapping[str, Any]],
              candidate: tuple[str, str, Mapping[str, Any]], lr: float,
              params: Sequence[Any]) -> tuple[float, float]:
    """``(z, cos)`` for one candidate at the current weights (see the module docstring).

    ``primary`` and ``candidate`` are ``(task, kind, batch)``; ``params`` the shared encoder's
    parameters, which are left exactly as they were.
    """
    import torch

    p_task, p_kind, p_batch = primary
    c_task, c_kind, c_batch = candidate
    loss_p = task_loss(net, p_task, p_kind, p_batch)
    g_p = _grads(loss_p, params)
    g_c = _grads(task_loss(net, c_task, c_kind, c_batch), params)
    before = float(loss_p.detach())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, g_c, strict=True):
            p.sub_(lr * g)
        after = float(task_loss(net, p_task, p_kind, p_batch))
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    dot = sum(float((a * b).sum()) for a, b in zip(g_p, g_c, strict=True))
    norm = math.sqrt(sum(float((a * a).sum()) for a in g_p)
                     * sum(float((b * b).sum()) for b in g_c))
    z = 1.0 - after / before if before > 0 else math.nan
    return z, (dot / norm if norm > 0 else math.nan)


@dataclass(frozen=True)
class JointRun:
    """The affinities of every candidate, from one joint run."""

    tag: Mapping[str, float]
    cos: Mapping[str, float]
    steps: int
    lookaheads: int
    seconds: float


def joint_run(ctx: SelectContext) -> JointRun:
    """The joint training of ``P`` with every candidate and its lookahead measurements."""
    import numpy as np
    import torch

    from ... import interrupts
    from ...data import batches, collate, encode_split, load_split
    from ...models import build_task_model, load_tokenizer, resolve_device
    from ...mtl import effective_max_length
    from ...training import make_optimizer, to_device

    t0 = time.perf_counter()
    device = resolve_device(ctx.run.device)
    tok = load_tokenizer(ctx.ref)
    max_len = effective_max_length(ctx.ref, tok, ctx.settings.max_length)
    specs = [ctx.primary, *ctx.candidates]
    encs = {s.name: encode_split(load_split(s, "train", store=ctx.store,
                                            max_examples=ctx.max_train_examples), tok,
                                 tokenizer_id=ctx.ref.cache_id, max_length=max_len,
                                 store=ctx.store) for s in specs}
    torch.manual_seed(ctx.run.seed)
    net = build_task_model(ctx.ref, {s.name: s.num_outputs for s in specs},
                           seed=ctx.run.seed).to(device)
    opt = make_optimizer(net, lr=ctx.settings.lr, weight_decay=ctx.settings.weight_decay,
                         device=device)
    params = [p for p in net.encoder.parameters() if p.requires_grad]
    bs, pad = ctx.settings.batch_size, int(tok.pad_token_id)
    order = {s.name: batches(encs[s.name], bs, shuffle=True, seed=ctx.run.seed + i)
             for i, s in enumerate(specs)}
    steps = min(MAX_STEPS, len(order[ctx.primary.name]))
    sums = {c.name: np.zeros(2) for c in ctx.candidates}
    n_look = 0
    for step in range(steps):
        interrupts.check()
        b = {s.name: to_device(collate(encs[s.name], order[s.name][step % len(order[s.name])],
                                       pad), device) for s in specs}
        if step % EVERY == 0:
            net.eval()
            p_arg = (ctx.primary.name, ctx.primary.kind, b[ctx.primary.name])
            for c in ctx.candidates:
                sums[c.name] += lookahead(net, p_arg, (c.name, c.kind, b[c.name]),
                                          ctx.settings.lr, params)
            n_look += 1
            net.train()
        loss = sum(task_loss(net, s.name, s.kind, b[s.name]) for s in specs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    del net, opt
    return JointRun({t: float(v[0] / n_look) for t, v in sums.items()},
                    {t: float(v[1] / n_look) for t, v in sums.items()}, steps, n_look,
                    time.perf_counter() - t0)


def _shared(ctx: SelectContext) -> tuple[JointRun, float]:
    """The joint run of this primary (computed by whichever of tag/grad-cos asks first)."""
    if "joint" in ctx.shared:
        return ctx.shared["joint"], 0.0
    ctx.shared["joint"] = joint_run(ctx)
    return ctx.shared["joint"], ctx.shared["joint"].seconds


def rank_tag(ctx: SelectContext) -> Ranking:
    j, now = _shared(ctx)
    return Ranking("tag", (order_by(j.tag, list(j.tag)),), j.tag, now, j.seconds,
                   f"one joint run of {j.steps} steps, {j.lookaheads} lookaheads "
                   "(shared with grad-cos)")


def rank_grad_cos(ctx: SelectContext) -> Ranking:
    j, now = _shared(ctx)
    return Ranking("grad-cos", (order_by(j.cos, list(j.cos)),), j.cos, now, j.seconds,
                   f"one joint run of {j.steps} steps (shared with tag)")


TAG = register(Selector("tag", "lookahead affinity toward the primary (Fifty et al. 2021)",
                        rank_tag))
GRAD_COS = register(Selector("grad-cos", "cosine of the primary's and the candidate's encoder "
                             "gradients in one joint run", rank_grad_cos))
