"""``make_activation(name, inplace=True)`` works for every registered activation and gives the
same values and gradients as ``inplace=False`` (in place where the backward allows it)."""

from __future__ import annotations

import pytest
import torch

from rectifiers.nn import list_activations, make_activation


@pytest.mark.parametrize("name", list_activations())
@pytest.mark.parametrize("train", [False, True])
def test_inplace_true_accepted_and_equal_to_out_of_place(name, train):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3
    results = []
    for inplace in (False, True):
        m = make_activation(name, channels=3, inplace=inplace).double().train(train)
        leaf = x.clone().requires_grad_()
        torch.manual_seed(1)  # rrelu draws its slopes
        y = m(leaf * 1)
        g = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
        y.backward(g)
        grads = [leaf.grad] + [p.grad for p in m.parameters()]
        results.append((y.detach(), grads))
    (y0, g0), (y1, g1) = results
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_inplace_none_keeps_defaults_and_bad_value_rejected():
    assert make_activation("relu").inplace is True  # the registry's historical default
    assert make_activation("relu", inplace=False).inplace is False
    with pytest.raises(TypeError, match="inplace"):
        make_activation("relu", inplace="yes")
