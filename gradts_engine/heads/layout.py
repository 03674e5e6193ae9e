"""Where each model family keeps its attention heads: the adapters and the layout (DESIGN.md §2).

For every supported family (``config.model_type``) the table below names the attention output
projection of a layer, whose input is the concatenation of the per-head context vectors
``(B, T, H*d)`` (where the head gates go), and the Q, K, V projections (the weight-gradient
measures). :func:`head_layout` finds them in a model, in call order: one per layer, or for
ALBERT one shared module called once per layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradts_engine.errors import ModelError, UnsupportedArchitectureError
from gradts_engine.signal import Measure

__all__ = ["LAYER_INDEX", "LEGACY_MODEL_TYPES", "MEASURES", "SUPPORTED_MODEL_TYPES", "HeadLayout",
           "call_order", "config_shape", "encoder_root", "family_of", "find_config",
           "head_layout", "model_device", "supports_measure"]

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

MEASURES: tuple[str, ...] = Measure.names()


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


def find_config(model: nn.Module) -> Any:
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


def family_of(model_type: str) -> _Family:
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


def config_shape(config: Any) -> tuple[int, int, int, int]:
    """(layers, heads, head_dim, kv_heads) from a config; attribute maps cover GPT-2/DistilBERT."""
    num_layers = int(config.num_hidden_layers)
    num_heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or getattr(config, "attention_head_size", None)
    if head_dim is None:
        head_dim = int(config.hidden_size) // num_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    return num_layers, num_heads, int(head_dim), int(kv_heads)


LAYER_INDEX = re.compile(r"^\d+$")


def _layer_index(name: str) -> tuple[int, ...]:
    """The integer components of a module name (layer-list indices), for sorting."""
    return tuple(int(part) for part in name.split(".") if LAYER_INDEX.match(part))


def _matches(name: str, suffix: str) -> bool:
    """Whole-component suffix match ('crossattention.output.dense' is not 'attention...')."""
    parts, want = name.split("."), suffix.split(".")
    return len(parts) > len(want) and parts[-len(want) :] == want


def _find_modules(model: nn.Module, suffix: str) -> list[str]:
    names = [name for name, _ in model.named_modules() if _matches(name, suffix)]
    return sorted(names, key=_layer_index)


def call_order(model: nn.Module, family: _Family, config: Any, suffix: str) -> list[str]:
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
    config = config if config is not None else find_config(model)
    model_type = str(config.model_type)
    family = family_of(model_type)
    _, num_heads, head_dim, _ = config_shape(config)
    projections = tuple(call_order(model, family, config, family.projection))
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


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def encoder_root(names: tuple[str, ...]) -> str:
    """The module holding the layer list: the prefix before the first index, minus one part."""
    parts = names[0].split(".")
    first = next(i for i, part in enumerate(parts) if LAYER_INDEX.match(part))
    return ".".join(parts[: max(first - 1, 0)])
