"""PReLU, paper Eq. 1: f(y_i) = max(0, y_i) + a_i * min(0, y_i). (placeholder, to be replaced)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PReLU(nn.Module):
    def __init__(self, num_parameters: int = 1, init: float = 0.25, inplace: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.inplace = inplace
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init), device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.weight)
