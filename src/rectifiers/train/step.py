"""One training step and one evaluation: the code every trainer in the package runs.

:func:`train_step` is the only place that zeroes gradients and steps an optimiser
(``rectifiers train``, the reproduction experiments through :func:`rectifiers.train.train`, and
``benchmarks/train_throughput.py`` directly); :func:`evaluate` is the single-view evaluation
(mean loss, top-1 and top-5 error) used after every epoch and by the experiments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.runtime import autocast
from rectifiers.train import distributed as dist_utils
from rectifiers.train.distributed import DistInfo

__all__ = ["StepOutput", "evaluate", "train_step"]


@dataclass
class StepOutput:
    """What :func:`train_step` returns."""

    loss: float  # mean loss of the batch over all ranks
    local_loss: float  # this rank's mean loss
    logits: torch.Tensor
    grad_norm: float | None  # before clipping; None when neither clipping nor asked for
    updated: bool  # False: the loss was non-finite or over loss_limit, the weights are untouched


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, *, amp: str = "none",
               grad_clip: float | None = None, label_smoothing: float = 0.0,
               scaler: torch.amp.GradScaler | None = None, loss_limit: float = math.inf,
               need_grad_norm: bool = False, info: DistInfo | None = None,
               before_update: Callable[[StepOutput], None] | None = None) -> StepOutput:
    """One SGD step: forward (under autocast), cross-entropy, backward, clip, update.

    The update is skipped (``updated=False``) when the loss, averaged over ranks, is not below
    ``loss_limit`` (NaN and inf never are). ``before_update(out)`` runs after clipping, before
    ``optimizer.step()``. The only place in the package that zeroes gradients and steps an
    optimiser.
    """
    info = info or DistInfo()
    with autocast(x.device, amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    # The global mean loss: what one process with the whole batch would see (all ranks agree).
    loss_global = dist_utils.all_reduce_mean_(loss.detach().clone(), info).item()
    out = StepOutput(loss_global, loss.item(), logits, None, False)
    if not loss_global < loss_limit:
        return out
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if grad_clip:
        out.grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    elif need_grad_norm:
        out.grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
    if before_update is not None:
        before_update(out)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    out.updated = True
    return out


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: str = "none",
             channels_last: bool = False, info: DistInfo | None = None) -> dict[str, float]:
    """Mean loss and top-1/top-5 error over a loader (sums are all-reduced under DDP)."""
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = 0.0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        hit = logits.topk(k, dim=1).indices.eq(y[:, None])
        top1 += hit[:, 0].sum().item()
        top5 += hit.any(dim=1).sum().item()
        n += y.numel()
    model.train(was_training)
    loss_sum, top1, top5, n = dist_utils.all_reduce_sum([loss_sum, top1, top5, n], device, info)
    n = max(n, 1.0)
    return {"val_loss": loss_sum / n, "val_top1_err": 1.0 - top1 / n,
            "val_top5_err": 1.0 - top5 / n}
