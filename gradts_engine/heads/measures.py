"""Per-example head importance: the gate gradient and the weight-gradient measures (DESIGN.md §2).

Head gate (measure ``gate``, the default): with the gates of :class:`heads.HeadGates` open,
one forward and one backward of the summed example losses give::

    R_b[l, h] = |dL_b / dxi[b, l, h]|                                   # (B, L, H)

(Michel et al. 2019's head-mask gradient.)

Weight-gradient measures (slower; for comparison with the original GradTS code):

- ``qkv``: per head, the mean absolute per-example gradient over that head's ROWS (output
  features) of ``W_Q``, ``W_K`` and ``W_V``; the three blocks have the same size, so this is the
  average of the three block means. Fused projections are split: GPT-2's ``c_attn`` (a Conv1D,
  weight ``(in, 3*H*d)``, Q|K|V along the columns, which are its output features) and
  ModernBERT's ``Wqkv`` (a Linear, rows Q|K|V). Grouped-query attention (Llama, Qwen2, Mistral):
  query head ``h`` gets the mean over its own Q rows and over the K and V rows of its key/value
  group ``h // (H / H_kv)`` (the grouping of ``repeat_kv``).
  Per-example weight gradients are computed exactly from one forward and one backward: forward
  hooks keep each projection call's input ``x`` (B, T, in) and its output, ``autograd.grad``
  gives the output gradient ``g`` (B, T, out) of the summed loss, and the per-example weight
  gradient is ``g[b]^T x[b]`` (B, out, in) — the per-example-gradient trick of Goodfellow (2015)
  as used by Opacus/BackPACK. It is exact because no layer mixes examples; a projection called
  more than once per layer sums its calls (DeBERTa also sends the relative-position embeddings
  through W_Q and W_K; as those are shared by the batch, DeBERTa with relative attention is
  measured one example at a time). ALBERT shares one projection across layers: each call is
  one layer, so the per-call gradient is that layer's share of the shared weight's gradient.
- ``legacy``: the original code's definition (``mt_dnn/model.py::update_no_grad`` and
  ``mt_dnn/inference.py::avg_head`` in RenzeLou/GradTS): dropout ON (``model.train()``), a
  batch-size-1 loop (each example trimmed to its attention mask, as a batch of one has no
  padding), gradients of the KEY and VALUE weights only, absolute values, heads split along the
  weight's INPUT columns ``weight[:, h*d:(h+1)*d]``, and per head ``mean(|dW_K| + |dW_V|)``
  over that slice (the original adds the two absolute-gradient arrays elementwise, then takes
  the mean). BERT-family encoders with separate Q/K/V projections only.

No measure here normalises: they return raw ``(B, L, H)`` float32 matrices on the model's device;
per-layer and min-max normalisation belong to the probe (DESIGN.md §2, "When importance is
measured"). Every measure takes ``loss_fn(model_output, batch) -> (B,)`` per-example losses and
passes the batch to the model by keyword, without ``labels`` and keys its forward does not name.

Gradient checkpointing: fine for every family except ALBERT (the shared projection would be
called more than L times per forward; the gates then raise ``ModelError``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradts_engine.errors import ModelError, UnsupportedArchitectureError

from .gates import HeadGates
from .layout import (
    LEGACY_MODEL_TYPES,
    HeadLayout,
    call_order,
    config_shape,
    family_of,
    find_config,
    head_layout,
    model_device,
)

__all__ = ["PER_EXAMPLE_ELEMENTS", "LossFn", "gate_importance", "legacy_importance", "qkv_blocks",
           "qkv_importance"]


LossFn = Callable[[Any, Mapping[str, Any]], torch.Tensor]


def _model_inputs(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch entries the model's forward takes by name (``labels`` never: loss_fn's job)."""
    params = inspect.signature(model.forward).parameters
    named = {
        name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    keys = [k for k in batch if k != "labels"]
    if named:
        keys = [k for k in keys if k in named]
    return {k: batch[k] for k in keys}


def _batch_size(batch: Mapping[str, Any]) -> int:
    for key in ("input_ids", "inputs_embeds", "attention_mask"):
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ModelError("cannot tell the batch size: the batch holds no tensors")


def _example_losses(loss_fn: LossFn, output: Any, batch: Mapping[str, Any], B: int) -> torch.Tensor:
    losses = loss_fn(output, batch)
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (B,):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ModelError(
            f"loss_fn must return one loss per example, shape ({B},); got {shape}",
            hint="use reduction='none'",
        )
    return losses


def gate_importance(
    model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, gates: HeadGates
) -> torch.Tensor:
    """Per-example head-gate importance ``|dL_b/dxi[b, l, h]|`` (B, L, H) float32.

    One forward and one backward for the whole batch (DESIGN.md §2). The model's mode is left
    as it is (``eval()`` for the deterministic ``after`` estimator). Only ``xi`` is
    differentiated: parameter ``.grad`` is untouched. The gates' previous state is restored.
    """
    B = _batch_size(batch)
    previous = gates.xi
    try:
        with torch.enable_grad():
            xi = gates.open(B)  # (B, L, H)
            output = model(**_model_inputs(model, batch))
            losses = _example_losses(loss_fn, output, batch, B)  # (B,)
            (grad,) = torch.autograd.grad(losses.sum(), xi, allow_unused=True)
    finally:
        gates.use(previous)
    if grad is None:
        return torch.zeros(B, gates.layout.num_layers, gates.layout.num_heads, device=xi.device)
    return grad.detach().abs().float()  # (B, L, H)


@dataclass(frozen=True)
class _Block:
    """Rows [start, start + heads*d) of one projection's weight: Q, K or V of one layer."""

    name: str
    call: int | None  # shared module (ALBERT): which of its calls is this layer; else None (all)
    start: int
    heads: int


PER_EXAMPLE_ELEMENTS = 1 << 26  # per-example gradients held at once by qkv_importance (~256 MB)


def qkv_blocks(model: nn.Module, layout: HeadLayout) -> list[tuple[_Block, _Block, _Block]]:
    """Per layer, where the Q, K and V rows are (in output-feature coordinates)."""
    config = find_config(model)
    family = family_of(layout.model_type)
    _, H, d, H_kv = config_shape(config)
    if len(family.qkv) == 3:
        per_part = [call_order(model, family, config, suffix) for suffix in family.qkv]
        layers = []
        for li in range(layout.num_layers):
            call = layout.projections[:li].count(layout.projections[li]) if family.shared else None
            q, k, v = (names[li] for names in per_part)
            layers.append(
                (_Block(q, call, 0, H), _Block(k, call, 0, H_kv), _Block(v, call, 0, H_kv))
            )
        return layers
    fused = call_order(model, family, config, family.qkv[0])
    return [
        (
            _Block(n, None, 0, H),
            _Block(n, None, H * d, H_kv),
            _Block(n, None, H * d + H_kv * d, H_kv),
        )
        for n in fused
    ]


def qkv_importance(
    model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, layout: HeadLayout | None = None
) -> torch.Tensor:
    """Per-example weight-gradient importance (B, L, H) float32: mean |dL_b/dW| over each head's
    rows of W_Q, W_K, W_V (DESIGN.md §2, measure ``qkv``).

    Exact per-example weight gradients from one forward and one backward (see the module
    docstring). When a projection is also applied to a tensor shared by the whole batch
    (DeBERTa's relative-position embeddings go through W_Q and W_K), that call's gradient cannot
    be split by example, and the examples are measured one at a time instead (each trimmed to
    its attention mask). The model's mode is left as it is; parameter ``.grad`` is untouched.
    """
    layout = layout if layout is not None else head_layout(model)
    blocks = qkv_blocks(model, layout)
    B = _batch_size(batch)
    R = _qkv_pass(model, batch, loss_fn, layout, blocks, B)
    if R is None:  # a call not batched by example: one example at a time
        R = torch.cat(
            [
                _qkv_pass(model, _one_example(batch, b, B), loss_fn, layout, blocks, 1)
                for b in range(B)
            ]
        )
    return R  # (B, L, H)


def _qkv_pass(
    model: nn.Module,
    batch: Mapping[str, Any],
    loss_fn: LossFn,
    layout: HeadLayout,
    blocks: list[tuple[_Block, _Block, _Block]],
    B: int,
) -> torch.Tensor | None:
    """One forward + backward; None when some Q/K/V call is not batched by example (B > 1)."""
    H, d = layout.num_heads, layout.head_dim
    names = sorted({block.name for layer in blocks for block in layer})
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in names}
    handles = []

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            calls[name].append((args[0].detach(), output))

        return hook

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(keep(name)))
        with torch.enable_grad():
            output = model(**_model_inputs(model, batch))
            losses = _example_losses(loss_fn, output, batch, B)  # (B,)
            if B > 1 and any(
                x.dim() < 3 or x.shape[0] != B for name in names for x, _ in calls[name]
            ):
                return None
            order = [(name, i) for name in names for i in range(len(calls[name]))]
            outs = [calls[name][i][1] for name, i in order]
            grads = torch.autograd.grad(losses.sum(), outs, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    grad_of = dict(zip(order, grads, strict=True))

    R = torch.zeros(B, layout.num_layers, H, device=model_device(model))  # (B, L, H)
    for li, layer in enumerate(blocks):
        means = []
        for block in layer:
            rows = block.heads * d
            # this layer's calls: every call of the module (DeBERTa calls W_Q, W_K twice), or,
            # for a module shared by several layers (ALBERT), the layer's own call
            mine = range(len(calls[block.name])) if block.call is None else [block.call]
            pairs = []  # (x (B, T, in), g (B, T, rows)) per call
            for c in mine:
                x, _ = calls[block.name][c]
                g = grad_of[(block.name, c)]
                if g is not None:
                    g = g[..., block.start : block.start + rows]
                    pairs.append((x.reshape(B, -1, x.shape[-1]), g.reshape(B, -1, rows)))
            if not pairs:
                means.append(torch.zeros(B, H, device=R.device))
                continue
            n_in = pairs[0][0].shape[-1]
            dtype = torch.promote_types(pairs[0][0].dtype, torch.float32)
            chunk = max(1, PER_EXAMPLE_ELEMENTS // (rows * n_in))
            per_chunk = []
            for s0 in range(0, B, chunk):
                dW = sum(  # (b, rows, in): per-example weight gradient of this block
                    torch.einsum(
                        "bto,bti->boi", g[s0 : s0 + chunk].to(dtype), x[s0 : s0 + chunk].to(dtype)
                    )
                    for x, g in pairs
                )
                per_chunk.append(dW.abs().reshape(-1, block.heads, d * n_in).mean(-1))  # (b, heads)
            m = torch.cat(per_chunk)  # (B, heads)
            means.append(m.repeat_interleave(H // block.heads, dim=1).float())  # (B, H)
        R[:, li, :] = sum(means) / 3.0
    return R


def _one_example(batch: Mapping[str, Any], b: int, B: int) -> dict[str, Any]:
    """Example ``b`` as a batch of one, trimmed to its attention mask (no padding)."""
    mask = batch.get("attention_mask")
    keep, T = None, None
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        keep, T = mask[b].bool(), int(mask.shape[1])
    example: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == B:
            value = value[b : b + 1]
            if keep is not None and value.dim() >= 2 and value.shape[1] == T:
                value = value[:, keep]
        example[key] = value
    return example


def legacy_importance(
    model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, layout: HeadLayout | None = None
) -> torch.Tensor:
    """The original GradTS code's head importance (B, L, H) float32 (DESIGN.md §2, ``legacy``).

    Dropout on, one example at a time, ``mean(|dW_K| + |dW_V|)`` over the head's INPUT columns
    ``W[:, h*d:(h+1)*d]``. The model's mode is restored afterwards; ``.grad`` is untouched.
    """
    layout = layout if layout is not None else head_layout(model)
    if layout.model_type not in LEGACY_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"the legacy measure is not defined for model type '{layout.model_type}'; "
            "supported: " + ", ".join(LEGACY_MODEL_TYPES),
            hint="use --measure gate or qkv for this model",
            model_type=layout.model_type,
            supported=LEGACY_MODEL_TYPES,
        )
    H, d = layout.num_heads, layout.head_dim
    blocks = qkv_blocks(model, layout)
    weights = [
        (model.get_submodule(k.name).weight, model.get_submodule(v.name).weight)
        for _, k, v in blocks
    ]
    flat = [w for pair in weights for w in pair]
    for w in flat:
        if w.shape[-1] != H * d:
            raise ModelError(
                f"legacy measure splits the input columns into {H} heads of {d}, but a key/value "
                f"weight has shape {tuple(w.shape)}",
                hint="use --measure gate or qkv for this model",
            )
    B = _batch_size(batch)
    R = torch.zeros(B, layout.num_layers, H, device=model_device(model))  # (B, L, H)
    was_training = model.training
    model.train()  # dropout on, as the original
    try:
        with torch.enable_grad():
            for b in range(B):
                example = _one_example(batch, b, B)
                output = model(**_model_inputs(model, example))
                loss = _example_losses(loss_fn, output, example, 1).sum()
                grads = torch.autograd.grad(loss, flat, allow_unused=True)
                for li in range(layout.num_layers):
                    gk, gv = grads[2 * li], grads[2 * li + 1]
                    gk = torch.zeros_like(flat[2 * li]) if gk is None else gk
                    gv = torch.zeros_like(flat[2 * li + 1]) if gv is None else gv
                    kv = gk.abs() + gv.abs()  # (out, H*d)
                    R[b, li] = kv.view(kv.shape[0], H, d).mean(dim=(0, 2)).float()  # (H,)
    finally:
        model.train(was_training)
    return R
