"""Attention heads: where each model family keeps them, the head gates, and per-example importance.

This module implements the definitions of DESIGN.md §2 (head gate, weight-gradient measures).

Head gate (measure ``gate``, the default). In every layer ``l`` the attention output projection
receives the concatenated per-head context vectors ``c`` of shape ``(B, T, H*d)``. A forward
pre-hook multiplies head ``h``'s slice by a gate ``xi[b, l, h]`` (value 1.0, requires grad)::

    c.view(B, T, H, d) * xi[:, l, None, :, None]

Every example ``b`` has its own gates, and the batch loss is the sum of the example losses
``L_b``, so one forward and one backward give every example's matrix exactly::

    R_b[l, h] = |dL_b / dxi[b, l, h]|                                   # (B, L, H)

(Michel et al. 2019's head-mask gradient; it works with every attention kernel because the gate
sits outside the kernel.)

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
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradts_engine.errors import ModelError, UnsupportedArchitectureError

__all__ = [
    "LEGACY_MODEL_TYPES",
    "MEASURES",
    "SUPPORTED_MODEL_TYPES",
    "HeadGates",
    "HeadLayout",
    "gate_importance",
    "head_layout",
    "legacy_importance",
    "qkv_blocks",
    "qkv_importance",
    "supports_measure",
]


# --------------------------------------------------------------------------------------------
# Architecture adapters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """Where one family keeps its heads, as module-name suffixes relative to a layer.

    ``projection``: the attention output projection (its input is the per-head context).
    ``qkv``: either three suffixes (separate Q, K, V projections) or one (a fused projection,
    rows Q|K|V in output-feature order; GPT-2's ``Conv1D`` keeps them in weight columns, which
    the per-example gradient ``g^T x`` handles without a transpose).
    """

    projection: str
    qkv: tuple[str, ...]
    shared: bool = False  # ALBERT: one module serves several layers


_BERT_LIKE = _Family(
    "attention.output.dense", ("attention.self.query", "attention.self.key", "attention.self.value")
)
_LLAMA_LIKE = _Family(
    "self_attn.o_proj", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
)

_FAMILIES: dict[str, _Family] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "deberta-v2": _Family(
        "attention.output.dense",
        ("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
    ),
    "distilbert": _Family(
        "attention.out_lin", ("attention.q_lin", "attention.k_lin", "attention.v_lin")
    ),
    "albert": _Family(
        "attention.dense", ("attention.query", "attention.key", "attention.value"), shared=True
    ),
    "modernbert": _Family("attn.Wo", ("attn.Wqkv",)),
    "gpt2": _Family("attn.c_proj", ("attn.c_attn",)),  # Conv1D, weight (in, out)
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_FAMILIES)
"""Model families (``config.model_type``) with a head adapter. DeBERTa-v3 is ``deberta-v2``."""

LEGACY_MODEL_TYPES: tuple[str, ...] = (
    "bert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v2",
    "distilbert",
)
"""Families for the ``legacy`` measure: separate K and V projections of shape (H*d, H*d)."""

MEASURES: tuple[str, ...] = ("gate", "qkv", "legacy")


def supports_measure(model_type: str, measure: str) -> bool:
    """Whether ``measure`` (``gate``, ``qkv`` or ``legacy``) is available for ``model_type``."""
    if measure in ("gate", "qkv"):
        return model_type in SUPPORTED_MODEL_TYPES
    if measure == "legacy":
        return model_type in LEGACY_MODEL_TYPES
    return False


@dataclass(frozen=True)
class HeadLayout:
    """Where a model's heads are: ``L`` layers of ``H`` heads of size ``d``.

    ``projections`` names the attention output projection of each layer, in call order
    (``len == num_layers``); for ALBERT it is the one shared module's name repeated L times.
    """

    model_type: str
    num_layers: int  # L
    num_heads: int  # H (query heads under grouped-query attention)
    head_dim: int  # d
    projections: tuple[str, ...]


def _find_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):
        return config
    for _, module in model.named_modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "model_type"):
            return config
    raise ModelError(
        f"no model configuration (`.config` with a model_type) found on {type(model).__name__} "
        "or its submodules",
        hint="pass config= to head_layout(), or wrap a transformers model",
    )


def _family(model_type: str) -> _Family:
    family = _FAMILIES.get(model_type)
    if family is None:
        raise UnsupportedArchitectureError(
            f"model type '{model_type}' has no attention-head adapter; supported: "
            + ", ".join(SUPPORTED_MODEL_TYPES),
            hint="use a model of a supported family (see DESIGN.md §2)",
            model_type=model_type,
            supported=SUPPORTED_MODEL_TYPES,
        )
    return family


def _config_shape(config: Any) -> tuple[int, int, int, int]:
    """(layers, heads, head_dim, kv_heads) from a config; attribute maps cover GPT-2/DistilBERT."""
    num_layers = int(config.num_hidden_layers)
    num_heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or getattr(config, "attention_head_size", None)
    if head_dim is None:
        head_dim = int(config.hidden_size) // num_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    return num_layers, num_heads, int(head_dim), int(kv_heads)


_INDEX = re.compile(r"^\d+$")


def _layer_index(name: str) -> tuple[int, ...]:
    """The integer components of a module name (layer-list indices), for sorting."""
    return tuple(int(part) for part in name.split(".") if _INDEX.match(part))


def _matches(name: str, suffix: str) -> bool:
    """Whole-component suffix match ('crossattention.output.dense' is not 'attention...')."""
    parts, want = name.split("."), suffix.split(".")
    return len(parts) > len(want) and parts[-len(want) :] == want


def _find_modules(model: nn.Module, suffix: str) -> list[str]:
    names = [name for name, _ in model.named_modules() if _matches(name, suffix)]
    return sorted(names, key=_layer_index)


def _call_order(model: nn.Module, family: _Family, config: Any, suffix: str) -> list[str]:
    """Module names of ``suffix`` in the order the layers call them (one entry per layer)."""
    names = _find_modules(model, suffix)
    num_layers = int(config.num_hidden_layers)
    if not family.shared:
        if len(names) != num_layers:
            raise ModelError(
                f"expected {num_layers} modules named '*.{suffix}' (one per layer) in "
                f"{type(model).__name__}, found {len(names)}",
                hint="pass the model that holds exactly one encoder",
            )
        return names
    # ALBERT: layer i runs hidden group int(i / (L / G)), which runs its inner layers in order.
    groups = int(getattr(config, "num_hidden_groups", 1))
    inner = int(getattr(config, "inner_group_num", 1))
    by_index = {_layer_index(name)[-2:]: name for name in names}
    order = []
    for i in range(num_layers):
        g = int(i / (num_layers / groups))
        for j in range(inner):
            if (g, j) not in by_index:
                raise ModelError(
                    f"ALBERT module for group {g}, inner layer {j} ('*.{suffix}') not found in "
                    f"{type(model).__name__}"
                )
            order.append(by_index[(g, j)])
    return order


def head_layout(model: nn.Module, config: Any = None) -> HeadLayout:
    """The head layout of ``model`` (any module holding one supported encoder)."""
    config = config if config is not None else _find_config(model)
    model_type = str(config.model_type)
    family = _family(model_type)
    _, num_heads, head_dim, _ = _config_shape(config)
    projections = tuple(_call_order(model, family, config, family.projection))
    for name in dict.fromkeys(projections):
        module = model.get_submodule(name)
        in_features = _in_features(module)
        if in_features is not None and in_features != num_heads * head_dim:
            raise ModelError(
                f"'{name}' takes {in_features} input features, but the config says "
                f"{num_heads} heads x {head_dim} = {num_heads * head_dim}",
                hint="the configuration does not describe this model",
            )
    return HeadLayout(model_type, len(projections), num_heads, head_dim, projections)


def _in_features(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.in_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None:
        return int(weight.shape[0])
    return None


# --------------------------------------------------------------------------------------------
# Head gates
# --------------------------------------------------------------------------------------------

_GATED: weakref.WeakKeyDictionary[nn.Module, HeadGates] = weakref.WeakKeyDictionary()


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _encoder_root(names: tuple[str, ...]) -> str:
    """The module holding the layer list: the prefix before the first index, minus one part."""
    parts = names[0].split(".")
    first = next(i for i, part in enumerate(parts) if _INDEX.match(part))
    return ".".join(parts[: max(first - 1, 0)])


class HeadGates:
    """Per-example head gates ``xi`` (B, L, H) on the input of each attention output projection.

    ``with HeadGates(model) as gates: xi = gates.open(B); out = model(...)`` — the hooks are
    attached on construction and removed by :meth:`remove` (also on leaving the ``with`` block,
    exception or not). Closed gates (the initial state) pass inputs through untouched.
    """

    def __init__(self, model: nn.Module, layout: HeadLayout | None = None) -> None:
        self.model = model
        self.layout = layout if layout is not None else head_layout(model)
        self._xi: torch.Tensor | None = None
        self._handles: list[Any] = []
        self._calls: dict[nn.Module, int] = {}
        modules: dict[nn.Module, list[int]] = {}
        for layer, name in enumerate(self.layout.projections):
            modules.setdefault(model.get_submodule(name), []).append(layer)
        for module in modules:
            owner = _GATED.get(module)
            if owner is not None:
                raise ModelError(
                    f"{type(model).__name__} already has head gates attached",
                    hint="call remove() on the other HeadGates (or leave its with-block) first",
                )
        root_name = _encoder_root(self.layout.projections)
        root = model.get_submodule(root_name) if root_name else model
        try:
            for module, layers in modules.items():
                self._handles.append(module.register_forward_pre_hook(self._hook(module, layers)))
                _GATED[module] = self
                self._calls[module] = 0
            self._handles.append(root.register_forward_pre_hook(self._reset))
            self._handles.append(root.register_forward_hook(self._check))
        except BaseException:
            self.remove()
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def xi(self) -> torch.Tensor | None:
        """The gates used by the next forward, or None when closed."""
        return self._xi

    def open(
        self, batch_size: int, device: Any = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """New gates ``xi`` (B, L, H) of ones with ``requires_grad``, used until the next open()."""
        device = _device(self.model) if device is None else device
        L, H = self.layout.num_layers, self.layout.num_heads
        self._xi = torch.ones(batch_size, L, H, device=device, dtype=dtype, requires_grad=True)
        return self._xi

    def close(self) -> None:
        """Gates off: the hooks pass inputs through untouched."""
        self._xi = None

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in list(self._calls):
            if _GATED.get(module) is self:
                del _GATED[module]
        self._calls.clear()
        self._xi = None

    def __enter__(self) -> HeadGates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- hooks --------------------------------------------------------------------------------

    def _reset(self, module: nn.Module, args: Any) -> None:
        for key in self._calls:
            self._calls[key] = 0

    def _check(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._xi is None:
            return
        calls = sum(self._calls.values())
        if calls != self.layout.num_layers:
            raise ModelError(
                f"the attention output projections ran {calls} times in one forward of "
                f"{type(module).__name__}, expected {self.layout.num_layers} (one per layer)",
                hint="head gates need one call per layer (no early exit, no layer skipping)",
            )

    def _hook(self, module: nn.Module, layers: list[int]) -> Callable[..., Any]:
        H, d = self.layout.num_heads, self.layout.head_dim

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            call = self._calls.get(module, 0)
            self._calls[module] = call + 1
            xi = self._xi
            if xi is None:
                return None
            if len(layers) == 1:
                layer = layers[0]
            elif call < len(layers):
                layer = layers[call]
            else:
                raise ModelError(
                    f"shared attention projection called {call + 1} times in one forward; the "
                    f"model has {len(layers)} layers",
                    hint="disable gradient checkpointing for ALBERT",
                )
            if not args:
                raise ModelError("attention output projection called without a positional input")
            c = args[0]  # (B, T, H*d)
            if c.shape[0] != xi.shape[0] or c.shape[-1] != H * d:
                raise ModelError(
                    f"head gates are open for batch {tuple(xi.shape)} (B, L, H) but layer {layer} "
                    f"received {tuple(c.shape)}, expected (B, ..., {H * d})",
                    hint="call gates.open(batch_size) with this batch's size",
                )
            gate = xi[:, layer, :].to(c.dtype)  # (B, H)
            gate = gate.view(gate.shape[0], *([1] * (c.dim() - 2)), H, 1)  # (B, 1.., H, 1)
            gated = (c.unflatten(-1, (H, d)) * gate).flatten(-2)  # (B, T, H*d)
            return (gated, *args[1:])

        return hook


# --------------------------------------------------------------------------------------------
# Importance measures
# --------------------------------------------------------------------------------------------

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
        gates._xi = previous
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


_PER_EXAMPLE_ELEMENTS = 1 << 26  # per-example gradients held at once by qkv_importance (~256 MB)


def qkv_blocks(model: nn.Module, layout: HeadLayout) -> list[tuple[_Block, _Block, _Block]]:
    """Per layer, where the Q, K and V rows are (in output-feature coordinates)."""
    config = _find_config(model)
    family = _family(layout.model_type)
    _, H, d, H_kv = _config_shape(config)
    if len(family.qkv) == 3:
        per_part = [_call_order(model, family, config, suffix) for suffix in family.qkv]
        layers = []
        for li in range(layout.num_layers):
            call = layout.projections[:li].count(layout.projections[li]) if family.shared else None
            q, k, v = (names[li] for names in per_part)
            layers.append(
                (_Block(q, call, 0, H), _Block(k, call, 0, H_kv), _Block(v, call, 0, H_kv))
            )
        return layers
    fused = _call_order(model, family, config, family.qkv[0])
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

    R = torch.zeros(B, layout.num_layers, H, device=_device(model))  # (B, L, H)
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
            chunk = max(1, _PER_EXAMPLE_ELEMENTS // (rows * n_in))
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
    R = torch.zeros(B, layout.num_layers, H, device=_device(model))  # (B, L, H)
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
