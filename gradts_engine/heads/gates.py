"""Per-example head gates ``xi`` (B, L, H) on the input of each attention output projection (§2).

A forward pre-hook multiplies head ``h``'s slice of the projection's input ``c`` by its gate::

    c.view(B, T, H, d) * xi[:, l, None, :, None]

Every example ``b`` has its own gates, so one backward of the summed example losses gives
every example's ``dL_b/dxi[b]`` (:func:`heads.gate_importance`). The gates sit outside the
attention kernel, so they work with eager, SDPA and flash attention alike.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradts_engine.errors import ModelError

from .layout import HeadLayout, encoder_root, head_layout, model_device

__all__ = ["HeadGates"]


_GATED: weakref.WeakKeyDictionary[nn.Module, HeadGates] = weakref.WeakKeyDictionary()



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
        root_name = encoder_root(self.layout.projections)
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
        device = model_device(self.model) if device is None else device
        L, H = self.layout.num_layers, self.layout.num_heads
        self._xi = torch.ones(batch_size, L, H, device=device, dtype=dtype, requires_grad=True)
        return self._xi

    def close(self) -> None:
        """Gates off: the hooks pass inputs through untouched."""
        self._xi = None

    def use(self, xi: torch.Tensor | None) -> None:
        """Use ``xi`` (B, L, H) as the gates of the next forwards (``None``: closed)."""
        self._xi = xi

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


