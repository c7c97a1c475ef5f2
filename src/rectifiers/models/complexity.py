"""Model complexity: parameters, activation slopes and multiply-adds (paper Table 3 "complexity").

Multiply-adds are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a real forward
pass (not by hand): it counts 2 FLOPs per multiply-add of every conv and matmul, so
``macs = flops / 2``. Activations, pooling and biases are not counted, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rectifiers.nn import is_learnable_activation


def count_slopes(model: nn.Module) -> int:
    """Number of learnable activation parameters (PReLU ``a_i``; paper Sec. 2.1), counted over
    the modules :func:`rectifiers.nn.is_learnable_activation` accepts (shared ones once)."""
    seen: set[int] = set()
    total = 0
    for m in model.modules():
        if is_learnable_activation(m):
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def _input_shape(model: nn.Module, input_size: int | Sequence[int] | None) -> tuple[int, ...]:
    if input_size is None:
        size = getattr(model, "default_input_size", None)
        if size is None:
            raise ValueError("model has no default_input_size; pass input_size=(C, H, W)")
        return tuple(size)
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        size = (int(getattr(model, "in_chans", 3)), *size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be H, (H, W) or (C, H, W), got {input_size!r}")
    return size


def complexity(model: nn.Module, input_size: int | Sequence[int] | None = None) -> dict[str, int]:
    """Parameters and multiply-adds of ``model`` for one input image.

    Works on any device, including ``meta`` (build the model under ``with torch.device("meta")``
    to count a 330 M-parameter model without allocating it).

    Args:
        model: the network.
        input_size: ``(C, H, W)``, ``(H, W)`` or ``H``; default ``model.default_input_size``.

    Returns:
        dict with ``params`` (all), ``params_without_slopes`` (what the paper's parameter counts
        compare), ``slopes`` (learnable activation parameters), ``macs`` (multiply-adds, the
        paper's "ops"), ``flops`` (= 2 * macs) and ``input_size``.

    Example:
        >>> from rectifiers.models import create_model
        >>> with torch.device("meta"):
        ...     m = create_model("prelunet_a", init=None)
        >>> round(complexity(m, (3, 224, 224))["macs"] / 1e10, 2)
        1.91
    """
    shape = _input_shape(model, input_size)
    params = sum(p.numel() for p in model.parameters())
    slopes = count_slopes(model)
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.get_default_dtype()
    x = torch.zeros(1, *shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()  # dropout off; the count does not depend on it, but the output must be stable
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return {"params": params, "params_without_slopes": params - slopes, "slopes": slopes,
            "macs": flops // 2, "flops": flops, "input_size": shape}
