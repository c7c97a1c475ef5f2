"""Optimiser parameter groups and learning-rate schedules for the paper's recipe (Sec. 3).

The paper's one optimiser rule that PyTorch does not give for free: **no weight decay on the
PReLU slopes** (Sec. 2.1, Eq. 4) - L2 on ``a`` pulls it to 0, i.e. biases PReLU towards ReLU.
torchvision's reference recipe decays them; timm skips them only through a generic "1-D
parameter" rule. Here the rule is explicit: a module whose class sets ``no_weight_decay = True``
(every learnable activation of ``rectifiers.nn``, e.g. PReLU slopes, a learnable swish beta)
and ``torch.nn.PReLU`` get no decay.

Biases are not decayed by default: the paper does not say, and Caffe's convention (the paper's
framework) was ``decay_mult: 0`` for biases; ``bias_decay=True`` decays them. Normalisation
layers (not in the paper's models) are treated like biases: their affine parameters are not
decayed unless ``norm_decay=True``.

Schedules: the paper divides the LR by 10 when the error plateaus, twice
(:func:`plateau_schedule`, a thin layer over ``torch.optim.lr_scheduler.ReduceLROnPlateau``
that stops after the given number of reductions); fixed epochs use :func:`step_schedule`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau

__all__ = ["param_groups", "plateau_schedule", "step_schedule"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _no_decay_module(module: nn.Module) -> bool:
    from rectifiers.nn import PReLU  # listed explicitly too, in case the attribute is ever lost

    return bool(getattr(type(module), "no_weight_decay", False)) or isinstance(
        module, (nn.PReLU, PReLU)
    )


def param_groups(
    model: nn.Module,
    weight_decay: float,
    bias_decay: bool = False,
    *,
    norm_decay: bool = False,
) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed and a non-decayed group.

    * ``"no_decay"`` (``weight_decay=0``): every parameter of a module whose class has
      ``no_weight_decay = True`` or of a ``torch.nn.PReLU`` (the paper's rule, Eq. 4); biases
      unless ``bias_decay``; normalisation-layer parameters unless ``norm_decay``.
    * ``"decay"`` (``weight_decay``): everything else (conv/linear weights).

    Each group is a dict with ``params``, ``param_names`` (understood by torch >= 2.6
    optimisers and kept in their state_dict), ``weight_decay`` and ``name``. Parameters with
    ``requires_grad=False`` (a frozen PReLU used as the LeakyReLU control) are left out; an
    empty group is omitted. Shared parameters appear once.

    Example:
        >>> opt = torch.optim.SGD(param_groups(model, 5e-4), lr=0.01, momentum=0.9)
    """
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay)
            and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    no_decay_ids: set[int] = set()
    for module in model.modules():
        exempt_module = _no_decay_module(module) or (
            not norm_decay and isinstance(module, _NORM_TYPES)
        )
        for pname, p in module.named_parameters(recurse=False):
            if exempt_module or (not bias_decay and pname == "bias"):
                no_decay_ids.add(id(p))

    groups: dict[str, dict[str, Any]] = {
        "decay": {"params": [], "param_names": [], "weight_decay": float(weight_decay)},
        "no_decay": {"params": [], "param_names": [], "weight_decay": 0.0},
    }
    for name, p in model.named_parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        key = "no_decay" if id(p) in no_decay_ids else "decay"
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [{**g, "name": key} for key, g in groups.items() if g["params"]]


def plateau_schedule(
    optimizer: torch.optim.Optimizer,
    max_reductions: int = 2,
    factor: float = 0.1,
    patience: int = 2,
    mode: str = "min",
    threshold: float = 1e-3,
) -> ReduceLROnPlateau:
    """The paper's schedule: divide the LR by 10 when the monitored error plateaus, twice.

    ``ReduceLROnPlateau`` with ``min_lr = lr0 * factor**max_reductions`` per group, so it stops
    after ``max_reductions`` drops (0.01 -> 0.001 -> 0.0001 for the paper). Call
    ``sched.step(val_error)`` once per epoch. ``patience`` epochs without a relative
    improvement of ``threshold`` count as a plateau (the paper does not give these numbers).

    Example:
        >>> sched = plateau_schedule(opt)
        >>> sched.step(val_top1_error)
    """
    if max_reductions < 0 or not 0 < factor < 1:
        raise ValueError(
            f"need max_reductions >= 0 and 0 < factor < 1, got {max_reductions}, {factor}"
        )
    # Slightly below the target so float rounding of lr*factor*factor never blocks a reduction.
    min_lrs = [g["lr"] * factor**max_reductions * (1 - 1e-9) for g in optimizer.param_groups]
    return ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
        min_lr=min_lrs,
    )


def step_schedule(
    optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1
) -> MultiStepLR:
    """Divide the LR by ``1/gamma`` at each epoch in ``milestones`` (``MultiStepLR``, validated).

    Example:
        >>> sched = step_schedule(opt, milestones=(30, 60))  # call sched.step() per epoch
    """
    ms = list(milestones)
    if any(not isinstance(m, int) or m <= 0 for m in ms) or ms != sorted(set(ms)):
        raise ValueError(f"milestones must be strictly increasing positive epochs, got {ms}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    return MultiStepLR(optimizer, milestones=ms, gamma=gamma)
