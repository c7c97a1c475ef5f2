"""Spatial pyramid pooling (SPP-net), used by the paper's models. (placeholder)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SPP(nn.Module):
    def __init__(self, levels: tuple[int, ...] = (7, 3, 2, 1)) -> None:
        super().__init__()
        self.levels = tuple(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in self.levels], 1)
