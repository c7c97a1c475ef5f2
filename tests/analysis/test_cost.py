"""Saved-for-backward bytes and interleaved step timing of activations (analysis.cost)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.analysis.cost import (
    activation_saved_bytes,
    measure_activation_costs,
    measure_model_costs,
    model_saved_bytes,
    saved_tensor_bytes,
)

SHAPE = (4, 6, 5, 5)
NUMEL = 4 * 6 * 5 * 5


@pytest.mark.parametrize("inplace", [True, False])
def test_relu_saves_exactly_one_output_sized_tensor(inplace):
    assert activation_saved_bytes(nn.ReLU(inplace=inplace), SHAPE) == NUMEL * 4


def test_bytes_scale_with_dtype():
    assert activation_saved_bytes(nn.ReLU(), SHAPE, dtype=torch.float64) == NUMEL * 8
    assert activation_saved_bytes(nn.GELU(), SHAPE, dtype=torch.bfloat16) == NUMEL * 2


def test_prelu_saves_its_input_but_parameters_are_not_counted():
    # torch's prelu saves (input, weight); the weight is a parameter, alive all run long
    assert activation_saved_bytes(nn.PReLU(6), SHAPE) == NUMEL * 4


def test_view_and_base_are_one_storage():
    base = torch.randn(8, 16, requires_grad=True)

    def fn():
        y = base * 1.0
        torch.sin(y)  # saves y
        torch.cos(y.view(-1))  # saves a view of y: same storage, must not count twice
        return y

    assert saved_tensor_bytes(fn) == 8 * 16 * 4


def test_nothing_is_saved_without_grad():
    x = torch.randn(3, 4)
    assert saved_tensor_bytes(lambda: torch.sigmoid(x)) == 0


def _net(act: type[nn.Module] | nn.Module, **kw) -> nn.Sequential:
    def make():
        return act(**kw) if isinstance(act, type) else act
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), make(), nn.Conv2d(4, 4, 3, padding=1))


def test_model_level_input_saving_activation_costs_one_extra_feature_map():
    # conv1 saves the image (2*1*8*8*4 = 512 B); the next conv saves the activation output.
    # ReLU saves its output too (same storage), GELU saves its input: one more 2*4*8*8*4 map.
    x = torch.randn(2, 1, 8, 8)
    image, fmap = 2 * 1 * 8 * 8 * 4, 2 * 4 * 8 * 8 * 4
    assert model_saved_bytes(_net(nn.ReLU, inplace=True), x) == image + fmap
    assert model_saved_bytes(_net(nn.GELU), x) == image + 2 * fmap


def test_measure_activation_costs_adds_reference_and_normalises():
    costs = measure_activation_costs({"gelu": nn.GELU()}, (2, 3, 4, 4), repeats=3, warmup=1)
    by = {c.name: c for c in costs}
    assert set(by) == {"relu", "gelu"}
    assert by["relu"].time_rel == 1.0 and by["relu"].bytes_rel == 1.0
    assert by["gelu"].time_s > 0 and math.isclose(
        by["gelu"].time_rel, by["gelu"].time_s / by["relu"].time_s)
    assert by["gelu"].saved_bytes == 2 * 3 * 4 * 4 * 4
    assert all(c.level == "activation" for c in costs)


def test_measure_model_costs_relative_to_relu():
    builders = {"relu": lambda: _net(nn.ReLU, inplace=True), "gelu": lambda: _net(nn.GELU)}
    costs = {c.name: c for c in measure_model_costs(
        {k: (lambda b=b: nn.Sequential(b(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)))
         for k, b in builders.items()}, (2, 1, 8, 8), 3, repeats=2, warmup=1)}
    assert costs["relu"].time_rel == 1.0
    assert costs["gelu"].saved_bytes > costs["relu"].saved_bytes
    assert costs["gelu"].bytes_rel == costs["gelu"].saved_bytes / costs["relu"].saved_bytes


def test_model_costs_need_reference():
    with pytest.raises(ValueError, match="reference"):
        measure_model_costs({"gelu": lambda: _net(nn.GELU)}, (2, 1, 8, 8), 4)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="sequence of names"):
        measure_activation_costs("relu", (2, 3, 4, 4))
    with pytest.raises(ValueError, match="repeats"):
        measure_activation_costs(["relu"], (2, 3, 4, 4), repeats=0)
