"""Shared test models for evaluation: a trunk without padding, so dense == per-view exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rectifiers.nn import SPP


class ValidSPPNet(nn.Module):
    """Tiny SPP net whose trunk has no padding: translation-equivariant at its total stride.

    Trunk: conv3 (valid) -> PReLU -> maxpool2 -> conv3 (valid) -> ReLU -> maxpool2, total
    stride S = 4, receptive field 10. An 18x18 crop gives a 3x3 map, so ``window = 3`` and the
    map window at (i, j) sees exactly the image crop at (4i, 4j) of size 18.
    """

    stride = 4
    crop = 18

    def __init__(self, in_chans: int = 3, num_classes: int = 7) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3), nn.PReLU(8), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.spp = SPP((2, 1))
        self.fc = nn.Linear(16 * 5, num_classes)
        self.default_input_size = (in_chans, self.crop, self.crop)
        self.window = 3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.spp(fmap))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture
def valid_net() -> ValidSPPNet:
    torch.manual_seed(0)
    net = ValidSPPNet().eval()
    with torch.no_grad():  # spread the logits so softmax differences are visible
        net.fc.weight.mul_(5)
    return net.double()


@pytest.fixture
def valid_net_cls() -> type[ValidSPPNet]:
    return ValidSPPNet


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    """User errors are printed as one line (exit 2) only without RECTIFIERS_DEBUG."""
    monkeypatch.delenv("RECTIFIERS_DEBUG", raising=False)
