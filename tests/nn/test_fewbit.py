"""Few-Bit Backward (opt-in): exact forward, the fitted quantised derivative in backward, the
bytes it keeps, its refusals, and the model converter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.nn import make_activation
from rectifiers.nn.fewbit import SMOOTH, FewBit, fewbit_levels, use_fewbit


@pytest.mark.parametrize("name", SMOOTH)
def test_levels_are_a_lloyd_max_fit_that_improves_with_bits(name):
    act = make_activation(name)
    mses = []
    for bits in (1, 2, 3, 4):
        bounds, levels, mse = fewbit_levels(act, bits)
        assert levels.shape == (2**bits,) and bounds.shape == (2**bits - 1,)
        assert bool((levels[1:] > levels[:-1]).all())
        # each boundary is the midpoint of its two levels (the nearest-level rule)
        torch.testing.assert_close(bounds, 0.5 * (levels[1:] + levels[:-1]))
        mses.append(mse)
    # Lloyd-Max error falls roughly 4x per extra bit (6 dB/bit); demand at least 2x
    for lo, hi in zip(mses[1:], mses[:-1], strict=True):
        assert lo < hi / 2


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_is_exact_and_backward_is_the_quantised_derivative(bits, channels_last):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 9, 7)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(x.shape)
    act = make_activation("gelu")
    fb = FewBit(act, bits)
    xa = x.clone().requires_grad_()
    y = fb(xa * 1)
    y.backward(g)
    xe = x.clone().requires_grad_()
    ye = act(xe * 1)
    ye.backward(g)
    assert torch.equal(y, ye)
    # the backward is g * levels[code(f'(x))], element by element, in any memory format
    bounds, levels, _ = fewbit_levels(act, bits)
    d = xe.grad / g  # f'(x) (g has no zeros here)
    expect = g * levels[torch.bucketize(d.contiguous(), bounds)]
    torch.testing.assert_close(xa.grad, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gelu", "silu", "golu"])
def test_gradient_error_matches_the_fitted_mse(name):
    """Under x ~ N(0, 1) the mean squared derivative error is the fit's ``mse``: with 2e5
    samples of a bounded error the sample mean is within a few % of it (tolerance 10 %)."""
    torch.manual_seed(1)
    x = torch.randn(200_000)
    act = make_activation(name)
    fb = FewBit(act, 4)
    xa = x.clone().requires_grad_()
    fb(xa * 1).sum().backward()
    xe = x.clone().requires_grad_()
    act(xe * 1).sum().backward()
    emp = float(((xa.grad - xe.grad) ** 2).mean())
    assert 0.9 * fb.mse < emp < 1.1 * fb.mse


@pytest.mark.parametrize("bits, kept", [(4, 1 / 8), (3, 1 / 8), (2, 1 / 16), (1, 1 / 32)])
def test_keeps_bits_per_element_instead_of_the_input(bits, kept):
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    fb = FewBit(make_activation("silu"), bits)
    y = fb(x * 1)
    saved = y.grad_fn.saved_tensors  # what the graph keeps until backward
    big = [t for t in saved if t.numel() > 1000]
    assert len(big) == 1 and big[0].dtype == torch.uint8
    assert sum(t.numel() * t.element_size() for t in saved if t is not big[0]) <= 64
    assert big[0].numel() == math.ceil(x.numel() * 4 * kept)  # bytes vs the fp32 input


def test_no_double_backward_and_plain_in_eval():
    fb = FewBit(make_activation("mish"), 2)
    x = torch.randn(3, 5, requires_grad=True)
    y = fb(x * 1).sum()
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(y, x, create_graph=True)
    with torch.no_grad():  # no grad: the activation itself, no code computed
        assert torch.equal(fb(x), make_activation("mish")(x))


def test_bad_bits_are_refused():
    with pytest.raises(ValueError, match="1, 2, 3 or 4 bits"):
        FewBit(make_activation("gelu"), 8)


def test_use_fewbit_wraps_the_smooth_activations_of_a_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), make_activation("gelu"), nn.Conv2d(4, 4, 3),
                          make_activation("relu"), nn.Conv2d(4, 4, 3), make_activation("silu"))
    x = torch.randn(2, 1, 12, 12)
    before = model(x)
    assert use_fewbit(model, bits=4) == 2
    assert isinstance(model[1], FewBit) and isinstance(model[5], FewBit)
    assert not isinstance(model[3], FewBit)
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 7, 4096, 8193])
def test_cpp_codes_equal_the_aten_fallback(bits, n):
    """csrc/fewbit_cpu.cpp's one-pass encode/decode against the ATen formulas it replaces
    (ragged lengths: the last byte's unused slots; NaN: code 0)."""
    from rectifiers.nn import fewbit

    if not fewbit.EXTENSION.available():
        pytest.skip(f"no C++ extension: {fewbit.EXTENSION.load_error()}")
    torch.manual_seed(n + bits)
    d = torch.randn(n)
    d[0] = float("nan")
    bounds = torch.sort(torch.randn(2**bits - 1))[0]
    levels = torch.linspace(-1, 2, 2**bits)
    slot = fewbit._slot(bits)
    ref = fewbit._pack(torch.where(torch.isnan(d), 0, torch.bucketize(d, bounds)), bits)
    packed = torch.ops.rectifiers_fewbit.encode(d, bounds, slot)
    assert torch.equal(packed, ref)
    decoded = torch.ops.rectifiers_fewbit.decode(packed, levels, slot, n)
    assert torch.equal(decoded, levels[fewbit._unpack(ref, bits, n)])


def test_without_the_extension_the_gradients_are_the_same(monkeypatch):
    from rectifiers.nn import fewbit

    torch.manual_seed(3)
    x = torch.randn(2, 3, 17, 5)
    g = torch.randn(x.shape)
    fb = FewBit(make_activation("golu"), 2)

    def grad():
        xa = x.clone().requires_grad_()
        fb(xa * 1).backward(g)
        return xa.grad

    hot = grad()
    monkeypatch.setattr(fewbit.EXTENSION, "available", lambda: False)
    assert torch.equal(grad(), hot)
