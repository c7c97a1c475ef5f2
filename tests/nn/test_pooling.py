"""SPP (rectifiers.nn.pooling): bin rules against loop references, shapes, errors, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from rectifiers.nn import SPP


def _reference(x: torch.Tensor, n: int, rule: str, pool: str) -> torch.Tensor:
    """Loop-based SPP level straight from the bin definitions in the module docstring."""
    h, w = x.shape[-2:]

    def bounds(a: int, i: int) -> tuple[int, int]:
        if rule == "adaptive":
            return math.floor(i * a / n), math.ceil((i + 1) * a / n)
        start = i * (a // n)
        return start, start + math.ceil(a / n)

    out = torch.empty(*x.shape[:2], n, n, dtype=x.dtype)
    for i in range(n):
        r0, r1 = bounds(h, i)
        for j in range(n):
            c0, c1 = bounds(w, j)
            patch = x[..., r0:r1, c0:c1].flatten(2)
            out[..., i, j] = patch.amax(-1) if pool == "max" else patch.mean(-1)
    return out.flatten(1)


@pytest.mark.parametrize("rule", ["adaptive", "sppnet"])
@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("size", [(14, 14), (16, 16), (18, 13), (7, 9)])
def test_spp_matches_loop_reference(rule: str, pool: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    levels = (7, 3, 2, 1)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    got = SPP(levels, rule=rule, pool=pool)(x)
    want = torch.cat([_reference(x, n, rule, pool) for n in levels], 1)
    torch.testing.assert_close(got, want)


def test_spp_output_length_is_channels_times_bins() -> None:
    spp = SPP((7, 3, 2, 1))
    assert spp.num_bins == 63
    assert spp.output_features(512) == 32256  # fc1 input of models A and B (paper Table 3)
    assert SPP((6, 3, 2, 1)).output_features(256) == 12800  # the 14-layer model (Table 1)
    assert spp(torch.randn(2, 5, 14, 14)).shape == (2, 5 * 63)


def test_sppnet_rule_leaves_last_row_uncovered_on_14x14_but_adaptive_covers_it() -> None:
    x = torch.zeros(1, 1, 14, 14)
    x[..., 13, 13] = 1.0  # only the bottom-right pixel is non-zero
    lvl3 = slice(49, 58)  # the 3x3 level follows the 7x7 level in the output
    assert SPP((7, 3, 2, 1), rule="sppnet")(x)[0, lvl3].max() == 0.0
    assert SPP((7, 3, 2, 1), rule="adaptive")(x)[0, lvl3].max() == 1.0


def test_rules_agree_on_levels_that_divide_the_map() -> None:
    x = torch.randn(2, 4, 14, 14)
    torch.testing.assert_close(SPP((7, 2, 1), rule="sppnet")(x), SPP((7, 2, 1))(x))


@pytest.mark.parametrize("side", [1, 2, 5, 14, 23])
def test_adaptive_rule_accepts_any_map_size(side: int) -> None:
    assert SPP((7, 3, 2, 1))(torch.randn(1, 2, side, side)).shape == (1, 126)


def test_bad_arguments_fail_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="rule 'sppnet' needs a feature map of at least 7x7"):
        SPP((7, 1), rule="sppnet")(torch.randn(1, 1, 6, 6))
    with pytest.raises(ValueError, match="unknown SPP rule 'ceil'; known: adaptive, sppnet"):
        SPP(rule="ceil")
    with pytest.raises(ValueError, match="unknown SPP pool"):
        SPP(pool="min")
    with pytest.raises(ValueError, match="positive ints"):
        SPP((3, 0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        SPP()(torch.randn(3, 14, 14))


@pytest.mark.parametrize("rule", ["adaptive", "sppnet"])
def test_spp_gradcheck(rule: str) -> None:
    torch.manual_seed(0)
    # Distinct values so the max is unique and the gradient well defined.
    x = torch.randperm(2 * 9 * 9).reshape(1, 2, 9, 9).double().div(10).requires_grad_()
    assert torch.autograd.gradcheck(SPP((3, 2, 1), rule=rule), (x,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_16bit_cpu_maps_pool_in_channels_last_with_the_same_values_and_gradients(
        dtype, layout, monkeypatch):
    """MaxPool2d and the max SPP route bf16/fp16 NCHW maps through channels_last: bitwise the
    values, gradients and output strides of the plain ops (ties included: ReLU-like zeros)."""
    from torch.nn import functional as F

    from rectifiers.nn import pooling
    from rectifiers.nn.pooling import MaxPool2d

    torch.manual_seed(0)
    x0 = torch.randn(4, 8, 14, 13).relu().to(dtype)  # half zeros: ties in most windows
    if layout == "channels_last":
        x0 = x0.contiguous(memory_format=torch.channels_last)
    routed = dtype != torch.float32 and layout == "contiguous"
    assert pooling._via_channels_last(x0) == routed
    for m in (MaxPool2d(2, 2), MaxPool2d(3, 2, padding=1, ceil_mode=True), SPP((7, 3, 2, 1)),
              SPP((3, 2, 1), rule="sppnet")):
        runs = []
        for route in (True, False):  # as built, then with the route off (the plain ATen ops)
            with monkeypatch.context() as mp:
                if not route:
                    mp.setattr(pooling, "_via_channels_last", lambda t: False)
                x = x0.clone().requires_grad_()
                y = m(x)
                g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
                y.backward(g)
                runs.append((y, x.grad))
        (ya, ga), (yb, gb) = runs
        assert torch.equal(ya, yb) and ya.stride() == yb.stride(), m
        assert torch.equal(ga, gb), m
    assert isinstance(MaxPool2d(2, 2), torch.nn.MaxPool2d)  # model code matches on the class
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), MaxPool2d(2, 2)))
    xs = torch.randn(2, 8, 6, 6)
    assert torch.equal(scripted(xs), F.max_pool2d(scripted[0](xs), 2, 2))
