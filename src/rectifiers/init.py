"""Initialisation (placeholder; see issue 2)."""

from __future__ import annotations

import math

import torch
from torch import nn


def he_normal_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", generator=None) -> torch.Tensor:
    fan = tensor.shape[1] if mode == "fan_in" else tensor.shape[0]
    fan *= tensor[0][0].numel() if tensor.dim() > 2 else 1
    std = math.sqrt(2.0 / ((1 + a * a) * fan))
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def initialize(model: nn.Module, scheme: str = "he", mode: str = "fan_out", fc_std=None) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    fc_map = dict(zip(linears[-len(fc_std):], fc_std)) if fc_std else {}
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            if m in fc_map:
                nn.init.normal_(m.weight, 0.0, fc_map[m])
            else:
                he_normal_(m.weight, mode=mode)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
