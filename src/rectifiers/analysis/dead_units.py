"""Dead units: how many rectifier units are switched off, per batch and over an epoch.

Definitions (one activation module = one layer; ``x`` its input, ``f(x)`` its output):

* **zero fraction** (the dynamic dead-neuron rate): the fraction of output elements that are
  exactly 0 in a batch. For ReLU this is the fraction of non-positive inputs; for PReLU and
  leaky ReLU it is ~0 (their negative side still passes signal and gradient), which is the point
  of the comparison.
* **active**: a unit is active on an example when its *input* is > 0, i.e. it sits on the
  identity branch of a rectifier. For ReLU this is exactly ``output > 0``; for PReLU/leaky, whose
  output is never "off", it is the only meaningful notion (output sign says nothing once a slope
  can be negative); for smooth activations (ELU, GELU, ...) it is the same "on" half-line.
* **unit**: one element of the activation's output for one example - channel x position for a
  conv map (the usual "neuron" of a conv net), one feature for a linear layer. A unit is
  **never active** when it was active on no example over everything seen since the last
  ``reset()`` (an epoch, typically). ``never_active_channel_fraction`` is the coarser version
  that counts a whole channel dead only if none of its positions ever fired.

Usage::

    with DeadUnitTracker(model) as tracker:
        for x, _ in loader:
            model(x)
    for row in tracker.summary(): print(row["layer"], row["zero_fraction"], ...)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rectifiers.init import activation_types

__all__ = ["DeadUnitTracker", "dead_unit_rates"]


class _LayerStats:
    def __init__(self) -> None:
        self.batches = 0
        self.elements = 0
        self.zeros = 0
        self.actives = 0
        self.ever_active: torch.Tensor | None = None  # per unit (C, *positions)
        self.channel_ever_active: torch.Tensor | None = None
        self.units_consistent = True  # False once the map size changed between batches


class DeadUnitTracker:
    """Context manager that hooks every activation module of ``model`` (or the named ones).

    Activation modules are the ``torch.nn`` activations and every type in the
    ``rectifiers.nn`` registry (ReLU, LeakyReLU, PReLU, HeLU, ...). A module called several
    times per forward (a shared ``self.relu``) is tracked per call site: ``name``, ``name#1``, ...

    Attributes:
        history: one dict per forward pass of the model, ``{layer: zero fraction}``.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None) -> None:
        self.model = model
        named = dict(model.named_modules())
        if layers is None:
            types = activation_types()
            self._modules = [(n, m) for n, m in named.items() if isinstance(m, types)]
        else:
            wanted = list(layers)
            missing = [n for n in wanted if n not in named]
            if missing:
                raise ValueError(f"no module named {missing} in the model")
            self._modules = [(n, named[n]) for n in wanted]
        if not self._modules:
            raise ValueError("DeadUnitTracker: the model has no activation module to track")
        self._handles: list[Any] = []
        self._stats: dict[str, _LayerStats] = {}
        self._calls: dict[str, int] = {}
        self._pending: dict[int, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []

    # -- hooks -------------------------------------------------------------------------
    def _start_forward(self, _module: nn.Module, _args: Any) -> None:
        self._calls.clear()
        self.history.append({})

    def _make_hooks(self, name: str) -> tuple[Any, Any]:
        def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
            # Taken before the module runs: an in-place activation overwrites its input.
            with torch.no_grad():
                self._pending[id(module)] = args[0].detach() > 0

        def post(module: nn.Module, _args: Any, out: torch.Tensor) -> None:
            active = self._pending.pop(id(module), None)
            if active is None:
                return
            k = self._calls.get(name, 0)
            self._calls[name] = k + 1
            key = name if k == 0 else f"{name}#{k}"
            with torch.no_grad():
                self._record(key, active, out.detach())

        return pre, post

    def _record(self, key: str, active: torch.Tensor, out: torch.Tensor) -> None:
        st = self._stats.setdefault(key, _LayerStats())
        zeros = int((out == 0).sum())
        st.batches += 1
        st.elements += out.numel()
        st.zeros += zeros
        st.actives += int(active.sum())
        if self.history:
            self.history[-1][key] = zeros / max(out.numel(), 1)
        per_unit = active.any(dim=0) if active.dim() > 1 else active.any().reshape(1)
        per_channel = per_unit.reshape(per_unit.shape[0], -1).any(dim=1)
        if st.ever_active is None:
            st.ever_active, st.channel_ever_active = per_unit.clone(), per_channel.clone()
            return
        if st.channel_ever_active.shape == per_channel.shape:
            st.channel_ever_active |= per_channel
        if st.ever_active.shape == per_unit.shape:
            st.ever_active |= per_unit
        else:
            st.units_consistent = False  # variable input size: positions do not line up

    # -- public ------------------------------------------------------------------------
    def __enter__(self) -> DeadUnitTracker:
        self._handles.append(self.model.register_forward_pre_hook(self._start_forward))
        for name, m in self._modules:
            pre, post = self._make_hooks(name)
            self._handles.append(m.register_forward_pre_hook(pre))
            self._handles.append(m.register_forward_hook(post))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks (the statistics stay readable)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._pending.clear()

    def reset(self) -> None:
        """Forget everything seen so far (start a new epoch); hooks stay in place."""
        self._stats.clear()
        self.history.clear()

    def summary(self) -> list[dict[str, Any]]:
        """Per tracked call site, in first-seen order.

        Keys: ``layer``, ``batches``, ``units`` (per example), ``channels``, ``zero_fraction``
        (exact zeros / elements over all batches), ``active_fraction`` (inputs > 0 / elements),
        ``never_active_fraction`` (units never active; NaN if the map size varied),
        ``never_active_channel_fraction``.
        """
        rows = []
        for key, st in self._stats.items():
            assert st.ever_active is not None and st.channel_ever_active is not None
            units = st.ever_active.numel()
            channels = st.channel_ever_active.numel()
            never = 1.0 - float(st.ever_active.sum()) / units if st.units_consistent else float(
                "nan")
            rows.append({
                "layer": key,
                "batches": st.batches,
                "units": units,
                "channels": channels,
                "zero_fraction": st.zeros / max(st.elements, 1),
                "active_fraction": st.actives / max(st.elements, 1),
                "never_active_fraction": never,
                "never_active_channel_fraction": 1.0 - float(st.channel_ever_active.sum())
                / channels,
            })
        return rows


def dead_unit_rates(
    model: nn.Module, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]]
) -> list[dict[str, Any]]:
    """Run ``model`` (no_grad) over ``batches`` (tensors or ``(x, ...)`` tuples) and return
    :meth:`DeadUnitTracker.summary` - one epoch's dead-unit statistics.

    Example:
        >>> rows = dead_unit_rates(model.eval(), (x for x, _ in test_loader))
    """
    with DeadUnitTracker(model) as tracker, torch.no_grad():
        for b in batches:
            model(b[0] if isinstance(b, (tuple, list)) else b)
    return tracker.summary()
