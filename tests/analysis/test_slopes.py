"""analysis.slopes: per-layer learned PReLU coefficients and the paper's Table 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rectifiers.analysis import PAPER_TABLE1, learned_slopes
from rectifiers.nn import PReLU


def test_learned_slopes_rows_in_module_order():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), PReLU(3), nn.Conv2d(3, 3, 1), nn.PReLU(),
                        nn.ReLU())
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.1, 0.2, 0.6]))
        net[3].weight.fill_(-0.5)
    rows = learned_slopes(net)
    assert [r["layer"] for r in rows] == ["1", "3"]
    r0, r1 = rows
    assert r0["variant"] == "channel-wise" and r0["num_parameters"] == 3
    assert r0["mean"] == pytest.approx(0.3)
    assert r0["std"] == pytest.approx(torch.tensor([0.1, 0.2, 0.6]).std(unbiased=False).item())
    assert (r0["min"], r0["max"]) == pytest.approx((0.1, 0.6))
    assert r1["variant"] == "channel-shared" and r1["mean"] == -0.5 and r1["std"] == 0.0


def test_learned_slopes_follow_the_one_learnable_activation_predicate():
    from rectifiers.models.complexity import count_slopes
    from rectifiers.nn import Swish, is_learnable_activation

    net = nn.Sequential(nn.Linear(4, 4), Swish(num_parameters=4), nn.Linear(4, 4), PReLU(),
                        nn.LeakyReLU(0.25))
    rows = learned_slopes(net)
    assert [(r["layer"], r["parameter"]) for r in rows] == [("1", "beta"), ("3", "weight")]
    assert all(is_learnable_activation(net[int(r["layer"])]) for r in rows)
    assert count_slopes(net) == sum(r["num_parameters"] for r in rows) == 5


def test_paper_table1_has_13_prelu_layers_and_paper_values():
    assert len(PAPER_TABLE1) == 13  # 11 conv + fc1 + fc2: the 13 channel-shared parameters
    assert PAPER_TABLE1["conv1"] == (0.681, 0.596)
    assert PAPER_TABLE1["fc2"] == (0.031, 0.075)
    assert list(PAPER_TABLE1)[0] == "conv1" and list(PAPER_TABLE1)[-1] == "fc2"


def test_activation_sites_follow_registration_order_not_names():
    """Sites come from the module order: arbitrary names are fine, stages count poolings."""
    net = nn.Sequential()
    net.add_module("a", nn.Conv2d(1, 2, 3))
    net.add_module("x", PReLU(2))
    net.add_module("p", nn.MaxPool2d(2))
    net.add_module("b", nn.Conv2d(2, 2, 3))
    net.add_module("y", PReLU())
    net.add_module("flat", nn.Flatten())
    net.add_module("c", nn.Linear(8, 4))
    net.add_module("z", nn.ReLU())
    net.add_module("d", nn.Linear(4, 2))
    from rectifiers.analysis import activation_sites

    sites = activation_sites(net)
    assert list(sites) == ["x", "y", "z"]
    assert [(v["label"], v["kind"], v["stage"]) for v in sites.values()] == [
        ("a", "conv", 1), ("b", "conv", 2), ("c", "fc", None)]
    assert [r["follows"]["layer"] for r in learned_slopes(net)] == ["a", "b"]
