"""PReLU's argument checks, slope shapes, differentiable backward formulas and vmap rule.

Pure tensor code shared by the operators of :mod:`rectifiers.nn.prelu` (no kernels, no
dispatch state): what ``F.prelu`` rejects and how (:func:`_check`), how ``(C,)`` or 0-d slopes
broadcast over channel dim 1, the backward written with differentiable ATen ops (used for
double backward, batched gradients, and as the eager backend), and the vmap rule of the
registered operators.
"""

from __future__ import annotations

import torch

__all__: list[str] = []


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Reject what ``F.prelu`` rejects, with torch's exception type and a clearer message."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(
            f"prelu(x, weight) expects tensors for both x and weight, got "
            f"{type(x).__name__} and {type(weight).__name__}"
        )
    if not x.is_floating_point():
        if weight.dtype != x.dtype:
            raise RuntimeError(
                f"PReLU needs a floating-point input, got {x.dtype} with a {weight.dtype} slope; "
                "cast the input with .float()"
            )
        raise NotImplementedError(
            f"PReLU needs a floating-point input, got {x.dtype}; cast it with .float()"
        )
    if not weight.is_floating_point():
        raise RuntimeError(
            f"PReLU slopes must be floating point, got {weight.dtype}; cast them with .float()"
        )
    if weight.ndim > 1:
        raise RuntimeError(
            f"PReLU weight must be a scalar or 1-D (num_parameters,), got shape "
            f"{tuple(weight.shape)} (ndim = {weight.ndim})"
        )
    if x.device != weight.device:
        raise RuntimeError(
            f"PReLU input is on {x.device} but its slopes are on {weight.device}; move the "
            "module (or the weight) to the input's device"
        )
    c = weight.numel()
    if c == 1:
        return
    if x.ndim == 0:
        raise RuntimeError(
            f"PReLU has num_parameters={c} (channel-wise) but the input is a zero-dim tensor "
            "with no channel dim; use num_parameters=1 (channel-shared)"
        )
    channels = x.shape[1] if x.ndim >= 2 else 1
    if channels != c:
        where = "in dim 1" if x.ndim >= 2 else "(a 1-D input has one channel)"
        raise RuntimeError(
            f"PReLU expects {c} channels (num_parameters={c}) but the input has "
            f"{channels} channels {where} (shape {tuple(x.shape)}); construct "
            f"PReLU(num_parameters={channels}) or use num_parameters=1 (channel-shared)"
        )


def _w1(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The slopes as a contiguous ``(C,)`` tensor in ``x``'s dtype (differentiable)."""
    return weight.reshape(-1).to(x.dtype).contiguous()


def _view(w1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(C,)`` slopes shaped to broadcast over channel dim 1 of ``x`` (0-d if shared)."""
    if w1.numel() == 1:
        return w1.reshape(())
    return w1.reshape([1, w1.numel()] + [1] * (x.ndim - 2))


def _reduce_dims(x: torch.Tensor, shared: bool) -> list[int]:
    if shared or x.ndim < 2:
        return list(range(x.ndim))
    return [0] + list(range(2, x.ndim))


def _backward_composite(g, s, weight, mode, mask):
    """Input and slope gradients with differentiable ATen ops (ATen's selects, exact).

    ``s`` is the saved input (``mode == "input"``) or the saved output ``y`` (in-place
    modes: the slope sum is divided by the slope that made ``y``); ``mask`` (``x > 0``)
    decides the side in ``"mask"`` mode. Differentiable in ``g``, ``s`` and ``weight``.
    """
    shared = weight.numel() == 1
    w1 = _w1(weight, s)
    wv = _view(w1, s)
    acc = torch.promote_types(weight.dtype, torch.float32)
    pos = mask if mask is not None else s > 0
    gi = torch.where(pos, g, g * wv)
    gw = torch.where(pos, torch.zeros((), dtype=g.dtype), g * s).sum(
        _reduce_dims(s, shared), dtype=acc
    )
    if mode != "input":
        gw = gw / w1.to(acc).reshape(gw.shape)
    return gi, gw


def _vmap_rule(inplace: bool):
    def rule(info, in_dims, x, weight):
        xd, wd = in_dims
        if xd is None:  # only the slopes are batched
            x = x.unsqueeze(0).expand(info.batch_size, *x.shape)
        else:
            x = x.movedim(xd, 0)
        n = x.ndim - 1  # per-sample rank
        if wd is not None:
            weight = weight.movedim(wd, 0)
        if x.shape[0]:  # validate one sample as the unbatched call would
            _check(x.select(0, 0), weight if wd is None else weight.select(0, 0))
        wb = weight.reshape(1 if wd is None else weight.shape[0], -1).to(x.dtype)
        c = wb.shape[1]
        wv = wb.reshape([wb.shape[0]] + ([1] * n if c == 1 else [1, c] + [1] * (n - 2)))
        y = torch.where(x > 0, x, x * wv)
        if inplace:
            if xd is None:
                raise RuntimeError(
                    "vmap: an in-place PReLU cannot write a batched result into an unbatched "
                    "input; use inplace=False"
                )
            x.copy_(y)
            return x.movedim(0, xd), xd
        return y, 0

    return rule
