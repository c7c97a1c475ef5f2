"""Signal propagation at initialisation (paper Sec. 2.2, Eq. 6-14), measured and predicted.

``signal_propagation`` measures, for every conv/linear layer l in execution order,

* ``forward_std``  = std of the response ``y_l = W_l x_l + b_l`` (Eq. 6-9), and
* ``backward_std`` = std of the gradient ``dx_l = dE/dx_l`` at the layer's input (Eq. 11-13),

from one forward and one backward pass. ``predicted_signal`` gives the paper's closed form for
the same quantities from the actual weights; ``predicted_ratio`` the textbook per-depth factors
(He: constant; Xavier: ``2^(-1/2)`` per ReLU layer; He fan_out forward: ``prod n_l / n^_l``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rectifiers.init import WEIGHT_LAYER_TYPES, calculate_fan, gaussian_moment, weight_layers

__all__ = ["LayerSignal", "format_table", "predicted_ratio", "predicted_signal",
           "signal_propagation"]


@dataclass
class LayerSignal:
    """One weight layer's signal statistics (``index`` counts weight layers from 1, like ``l``)."""

    index: int
    name: str
    kind: str
    fan_in: int
    fan_out: int
    forward_std: float
    backward_std: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fans(layer: nn.Module) -> tuple[int, int]:
    groups = int(getattr(layer, "groups", 1))
    return (calculate_fan(layer.weight, "fan_in", groups),
            calculate_fan(layer.weight, "fan_out", groups))


def _second_moment(w: torch.Tensor) -> float:
    # E[w^2] rather than the sample variance: it is what enters Eq. 6, mean included.
    return float(w.detach().double().pow(2).mean())


def _std(t: torch.Tensor) -> float:
    return float(t.detach().double().std()) if t.numel() > 1 else float("nan")


def signal_propagation(
    model: nn.Module,
    batch: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | int | None = None,
) -> list[LayerSignal]:
    """Per-layer forward response std and backward input-gradient std, from one pass.

    Forward: hooks record ``std(y_l)`` over all elements of the layer output (batch, channels,
    positions) before any in-place activation overwrites it. Backward: the gradient reaching
    each layer's input ``x_l`` (``dx_l``, Eq. 11; for layer 1 the input batch) is taken with
    ``torch.autograd.grad``, so no ``.grad`` of the model is touched. The backward pass starts
    from ``loss_fn(output)`` when given (close over the targets), otherwise from a standard
    Gaussian gradient at the output, ``dx_{L+1} ~ N(0, 1)`` (seeded by ``generator``), which is
    the setting of Eq. 13. The model's train/eval mode is used as set by the caller (call
    ``model.eval()`` first to switch dropout off). A module called twice gives two rows.

    Example:
        >>> rows = signal_propagation(net, torch.randn(256, 3, 32, 32), generator=0)
        >>> [round(r.forward_std, 2) for r in rows]
    """
    if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
        raise TypeError("batch must be a floating-point tensor")
    names = {m: n for n, m in model.named_modules()}
    records: list[dict[str, Any]] = []
    inputs: list[torch.Tensor] = []

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        fan_in, fan_out = _fans(module)
        records.append({"name": names.get(module, "?"), "kind": type(module).__name__.lower(),
                        "fan_in": fan_in, "fan_out": fan_out})
        inputs.append(x)

    def fwd_hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        records[-1]["forward_std"] = _std(out)

    handles = []
    for m in model.modules():
        if isinstance(m, WEIGHT_LAYER_TYPES):
            handles.append(m.register_forward_pre_hook(pre_hook))
            handles.append(m.register_forward_hook(fwd_hook))
    try:
        x0 = batch.detach().clone().requires_grad_(True)  # so dx_1 exists too
        with torch.enable_grad():
            out = model(x0)
    finally:
        for h in handles:
            h.remove()
    if not records:
        raise ValueError("signal_propagation: the model ran no Conv/Linear layer")

    if loss_fn is not None:
        target, grad_out = loss_fn(out), None
        if target.numel() != 1:
            raise ValueError("loss_fn must return a scalar")
    else:
        g = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
        dev = g.device if g is not None else out.device
        grad_out = torch.randn(out.shape, generator=g, device=dev, dtype=out.dtype).to(out.device)
        target = out
    want = [(i, x) for i, x in enumerate(inputs) if x.requires_grad]
    grads = torch.autograd.grad(target, [x for _, x in want], grad_outputs=grad_out,
                                allow_unused=True)
    back = {i: (_std(gx) if gx is not None else float("nan")) for (i, _), gx in zip(want, grads,
                                                                                    strict=True)}
    return [
        LayerSignal(index=i + 1, name=r["name"], kind=r["kind"], fan_in=r["fan_in"],
                    fan_out=r["fan_out"], forward_std=r.get("forward_std", float("nan")),
                    backward_std=back.get(i, float("nan")))
        for i, r in enumerate(records)
    ]


def predicted_signal(
    model: nn.Module,
    input_second_moment: float = 1.0,
    grad_std: float = 1.0,
) -> list[dict[str, float]]:
    r"""The paper's closed form for a plain chain of conv/linear layers and activations.

    With ``v_l = n_l Var[w_l]`` (actual weight variance; ``n_l`` fan-in, ``n^_l`` fan-out):

    * forward (Eq. 7): ``Var[y_1] = v_1 E[x_1^2]``; ``Var[y_l] = v_l E[f(y_{l-1})^2]`` with
      ``E[f(y)^2] = Var[y] (1 + a^2)/2`` for a rectifier of slope a (Eq. 8, 15);
    * backward (Eq. 12): ``Var[dx_l] = n^_l Var[w_l] Var[dy_l]``, ``Var[dy_l] = E[f'(y_l)^2]
      Var[dx_{l+1}]`` (``(1+a^2)/2`` for a rectifier), ``dx_{L+1}`` of variance ``grad_std^2``.

    Expectations for any activation are taken under ``y ~ N(0, Var[y])`` by quadrature, so
    smooth activations are covered too. Non-zero biases (PyTorch's default init) add
    ``E[b^2]`` to ``Var[y_l]``, treating them as symmetric noise across units. Assumes the model
    is such a chain (no pooling, norm or skips between weight layers; a flatten is fine) and
    stride 1 (strided convs reduce the true backward fan-out by the stride product).
    Returns per layer ``index``, ``forward_std`` and ``backward_std``.

    Example:
        >>> pred = predicted_signal(net, input_second_moment=float((x**2).mean()))
    """
    layers = weight_layers(model)
    if not layers:
        raise ValueError("predicted_signal: model has no Conv/Linear layer")
    fwd: list[float] = []
    var_y = 0.0
    for i, (_, layer, _, before) in enumerate(layers):
        w_var = _second_moment(layer.weight)
        n_in, _ = _fans(layer)
        if i == 0:
            m2 = input_second_moment
        elif before is None:
            m2 = var_y  # linear connection
        else:
            m2 = gaussian_moment(before, 2, std=math.sqrt(var_y))
        var_y = n_in * w_var * m2
        if layer.bias is not None:  # beyond the paper's b = 0: a symmetric bias adds E[b^2]
            var_y += _second_moment(layer.bias)
        fwd.append(var_y)
    back = [0.0] * len(layers)
    var_dx = grad_std**2
    for i in range(len(layers) - 1, -1, -1):
        _, layer, after, _ = layers[i]
        w_var = _second_moment(layer.weight)
        _, n_out = _fans(layer)
        d2 = 1.0 if after is None else gaussian_moment(after, 2, std=math.sqrt(fwd[i]),
                                                       derivative=True)
        var_dx = n_out * w_var * d2 * var_dx
        back[i] = var_dx
    return [{"index": i + 1, "forward_std": math.sqrt(f), "backward_std": math.sqrt(b)}
            for i, (f, b) in enumerate(zip(fwd, back, strict=True))]


_SCHEME_GAIN2 = {"he": None, "aware": None, "xavier": 1.0, "lecun": 1.0, "default": 1.0 / 3.0}


def predicted_ratio(
    fans: Sequence[tuple[int, int]],
    scheme: str = "he",
    mode: str = "fan_in",
    a: float = 0.0,
    direction: str = "forward",
) -> float:
    r"""Closed-form std ratio across a plain rectifier chain, Eq. 9 (forward) / 13 (backward).

    ``fans`` lists ``(n_l, n^_l)`` (fan-in, fan-out) for layers 1..L. A scheme draws
    ``Var[w_l] = g^2 / m_l`` with ``m_l`` the fan chosen by ``mode`` and ``g^2`` = ``2/(1+a^2)``
    (he, aware), 1 (xavier, lecun; lecun always uses fan-in) or 1/3 (PyTorch default, fan-in).
    Each layer then scales the variance by ``(1+a^2)/2 g^2 n_l / m_l`` (forward, Eq. 8/15) or
    ``(1+a^2)/2 g^2 n^_l / m_l`` (backward, Eq. 12). Returns

    * forward:  ``std(y_L) / std(y_1)``   = sqrt(prod over l = 2..L),
    * backward: ``std(dx_2) / std(dx_{L+1})`` = sqrt(prod over l = 2..L), as in Eq. 13.

    So He gives 1 in its own direction, and ``sqrt(c_2 / d_L)`` forward under fan_out; Xavier
    gives ``2^(-(L-1)/2)`` under ReLU.

    Example:
        >>> predicted_ratio([(9 * 64, 9 * 64)] * 30, scheme="xavier")  # 2 ** -14.5
    """
    if scheme not in _SCHEME_GAIN2:
        raise ValueError(f"unknown scheme {scheme!r}; use one of {tuple(_SCHEME_GAIN2)}")
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"unknown mode {mode!r}; use 'fan_in' or 'fan_out'")
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    if scheme in ("lecun", "default"):
        mode = "fan_in"
    gain2 = _SCHEME_GAIN2[scheme]
    if gain2 is None:
        gain2 = 2.0 / (1.0 + a * a)
    log_var = 0.0
    for n_in, n_out in list(fans)[1:]:
        m = n_in if mode == "fan_in" else n_out
        n = n_in if direction == "forward" else n_out
        log_var += math.log(0.5 * (1 + a * a) * gain2 * n / m)
    return math.exp(0.5 * log_var)


def format_table(rows: Sequence[LayerSignal]) -> str:
    """A plain-text table of :func:`signal_propagation` rows, for logs and reports."""
    lines = [f"{'l':>3} {'layer':<16} {'fan_in':>7} {'fan_out':>7} "
             f"{'std(y_l)':>10} {'std(dx_l)':>10}"]
    for r in rows:
        lines.append(f"{r.index:>3} {r.name[:16]:<16} {r.fan_in:>7} {r.fan_out:>7} "
                     f"{r.forward_std:>10.4g} {r.backward_std:>10.4g}")
    return "\n".join(lines)
