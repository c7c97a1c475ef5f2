"""The zoo's fused kernels: C++ vs eager formulas vs fp64 references, double backward,
forward-mode AD, extremes in every dtype, memory kept for backward, determinism, fallback."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad

from rectifiers.nn import _activations_cpu, list_activations, make_activation, zoo_ops
from rectifiers.nn.zoo_ops import activation, rrelu_slopes

# every activation on the zoo kernels (prelu/prelu_shared have their own operator and tests)
ZOO = [n for n in list_activations() if n not in ("prelu", "prelu_shared")]
SURROGATE = {"helu"}  # backward is a designed surrogate, not the derivative
INPLACE_REAL = {"relu", "leaky_relu", "rrelu", "elu", "selu", "smelu", "helu"}
needs_cpp = pytest.mark.skipif(not _activations_cpu.available(), reason="no C++ compiler")


@pytest.fixture
def eager(monkeypatch):
    """Force the portable eager formulas (as on a GPU or without a compiler)."""
    monkeypatch.setattr(zoo_ops, "_use_cpp", lambda x: False)


def _away_from_kinks(x: torch.Tensor) -> torch.Tensor:
    for k in (0.0, 1.0, -1.0, -0.05):
        x = torch.where((x - k).abs() < 1e-3, x + 1e-2, x)
    return x


def _run(name, x, train=False, inplace=False, g=None, seed=3):
    """Output and input gradient of ``name`` at ``x`` (a fresh module, fixed rrelu seed)."""
    m = make_activation(name, channels=x.shape[1], inplace=inplace).to(x.dtype).train(train)
    leaf = x.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    y = m(leaf * 1)
    y.backward(torch.ones_like(y) if g is None else g)
    return y.detach(), leaf.grad


def _grid(dtype, fmt=torch.contiguous_format):
    x = torch.linspace(-12, 12, 2 * 3 * 7 * 11, dtype=torch.float64).reshape(2, 3, 7, 11)
    return x.to(dtype).contiguous(memory_format=fmt)


@needs_cpp
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("train", [False, True])
def test_cpp_equals_eager_formulas_fp64(name, fmt, train, monkeypatch):
    x = _grid(torch.float64, fmt)
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y_c, gx_c = _run(name, x, train, g=g)
    monkeypatch.setattr(zoo_ops, "_use_cpp", lambda t: False)
    y_e, gx_e = _run(name, x, train, g=g)
    # rrelu: the slope lower + (upper - lower) u is formed in fp32 by both, maybe with an FMA
    tol = 1e-7 if name == "rrelu" and train else 1e-13
    torch.testing.assert_close(y_c, y_e, rtol=tol, atol=tol)
    torch.testing.assert_close(gx_c, gx_e, rtol=tol, atol=tol)
    assert y_c.is_contiguous(memory_format=fmt)


SMOOTH = ["gelu", "gelu_tanh", "golu", "sau", "mish", "swish", "silu", "elu", "selu"]


@needs_cpp
@pytest.mark.parametrize("name", SMOOTH)
def test_fp32_polynomial_math_max_error(name):
    """The fp32 kernels' own error (vectorised polynomial exp/expm1/erfc, fast reciprocals of
    constants), measured against the same activation in fp64 at the same fp32 inputs on a dense
    grid: |f32 - f64| / max(|f64|, 1) <= 4e-7 for f and f' (measured max 2.5e-7 (sau's f'),
    i.e. a few fp32 ulp of the result; the fp32 exp itself is within 1 ulp)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.cat([torch.linspace(-30, 30, 200001, dtype=torch.float64),
                   4 * torch.randn(50000, dtype=torch.float64, generator=gen)])
    x = x.float().reshape(1, 1, -1)
    y, gx = _run(name, x)
    y_ref, gx_ref = _run(name, x.double())
    for got, ref in ((y, y_ref), (gx, gx_ref)):
        err = ((got.double() - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
        assert err <= 4e-7, (name, err)


@needs_cpp
def test_fp32_gelu_tanh_left_tail_keeps_its_relative_accuracy():
    """gelu_tanh = x sigmoid(2u): in the left tail, where f and f' are tiny, their fp32 values
    keep a relative error of a few times the rounding of the exp argument 2u (|2u| <= 83 at the
    clamp: 83 * 2^-23 ~ 1e-5), where 0.5 x (1 + tanh u) cancels to 0 or noise beyond x ~ -4."""
    x = torch.linspace(-9.5, -1.2, 50001, dtype=torch.float64).float().reshape(1, 1, -1)
    y, gx = _run("gelu_tanh", x)
    y_ref, gx_ref = _run("gelu_tanh", x.double())
    assert bool((y < 0).all()) and bool((gx < 0).all())  # no flush to 0 (f' < 0 left of -0.75)
    for got, ref in ((y, y_ref), (gx, gx_ref)):
        rel = ((got.double() - ref) / ref).abs()
        # the exp argument |2u| = 1.6 |x| + 0.0714 |x|^3 carries three fp32 roundings (at most
        # 1.5 * 2^-23 * |2u| absolute: that much relative error through exp), plus a few ulp
        two_u = x.double().abs() * 1.6 + x.double().abs() ** 3 * 0.0714
        bound = 1e-6 + 2.0 * 2.0 ** -23 * two_u
        assert bool((rel <= bound).all()), rel.max().item()


@needs_cpp
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.bfloat16, 1.6e-2)])
def test_cpp_low_precision_close_to_fp64(name, dtype, tol):
    x = _grid(torch.float64)
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_ref, gx_ref = _run(name, x.to(dtype).double(), g=g.to(dtype).double())
    y, gx = _run(name, x.to(dtype), g=g.to(dtype))
    # one rounding of the result (bf16: 2^-8) on top of the fp32 kernel error
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(gx.double(), gx_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", ["cpp", "eager"])
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("inplace", [False, True])
def test_gradcheck_and_gradgradcheck_fp64(name, inplace, backend, monkeypatch):
    if backend == "eager":
        monkeypatch.setattr(zoo_ops, "_use_cpp", lambda t: False)
    if inplace and name not in INPLACE_REAL:
        pytest.skip("inplace is a no-op for this activation")
    torch.manual_seed(0)
    x = _away_from_kinks(torch.randn(2, 3, 4, dtype=torch.float64) * 3).requires_grad_()
    if name == "rrelu":  # training form with a fixed seed: the same slopes on every call
        def f(t):
            return activation(t * 1, "rrelu", (1 / 8, 1 / 3, 12345), None, "output", inplace)
    else:
        m = make_activation(name, channels=3, inplace=inplace).double()

        def f(t):
            return m(t * 1)
    if name not in SURROGATE:
        assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("backend", ["cpp", "eager"])
@pytest.mark.parametrize("channel_wise", [False, True])
def test_swish_beta_gradcheck_and_gradgradcheck(channel_wise, backend, monkeypatch):
    if backend == "eager":
        monkeypatch.setattr(zoo_ops, "_use_cpp", lambda t: False)
    torch.manual_seed(0)
    x = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * 2).requires_grad_()
    beta = (torch.rand(3 if channel_wise else 1, dtype=torch.float64) + 0.5).requires_grad_()

    def f(t, b):
        return activation(t, "swish", (), b)

    assert torch.autograd.gradcheck(f, (x, beta))
    assert torch.autograd.gradgradcheck(f, (x, beta))
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(f, (xc, beta))


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("inplace", [False, True])
def test_forward_mode_ad_equals_backward(name, inplace):
    if inplace and name not in INPLACE_REAL:
        pytest.skip("inplace is a no-op for this activation")
    torch.manual_seed(0)
    x = _away_from_kinks(torch.randn(2, 3, 4, dtype=torch.float64) * 3)
    t = torch.randn_like(x)
    m = make_activation(name, channels=3, inplace=inplace).double().eval()
    _, vjp = _run(name, x, g=t)  # elementwise: the vjp with v = t is the jvp
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x.clone(), t)
        out = m(dual * 1)
        y, tangent = forward_ad.unpack_dual(out)
    torch.testing.assert_close(tangent, vjp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, m(x.clone()), rtol=0, atol=0)


def test_forward_mode_ad_of_swish_beta_matches_finite_difference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    beta = torch.tensor([0.7, 1.3, 2.0], dtype=torch.float64)
    tb = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)
    with forward_ad.dual_level():
        out = activation(x, "swish", (), forward_ad.make_dual(beta, tb))
        tangent = forward_ad.unpack_dual(out).tangent
    eps = 1e-6
    fd = (activation(x, "swish", (), beta + eps * tb)
          - activation(x, "swish", (), beta - eps * tb)) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=1e-7, atol=1e-9)


def _all_magnitudes(dtype):
    fi = torch.finfo(dtype)
    mags = torch.logspace(math.log10(fi.tiny), math.log10(fi.max) - 0.01, 200,
                          dtype=torch.float64)
    vals = torch.cat([mags, -mags, torch.tensor([0.0, fi.max, -fi.max], dtype=torch.float64)])
    return vals.to(dtype).reshape(1, 1, -1).expand(2, 3, -1).contiguous()


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("train", [False, True])
def test_finite_over_the_whole_float_range(name, dtype, train):
    x = _all_magnitudes(dtype)
    y, gx = _run(name, x, train)
    # selu's scale 1.0507 > 1: its true value overflows for the largest inputs, as it should
    overflow = (x.double().abs() * 1.0507009873554805 > torch.finfo(dtype).max) & (x > 0)
    ok = torch.isfinite(y) | (overflow & (name == "selu"))
    assert ok.all() and not torch.isnan(y).any(), (name, x[0, 0][~ok[0, 0]])
    assert torch.isfinite(gx).all(), (name, x[0, 0][~torch.isfinite(gx[0, 0])])


@pytest.mark.parametrize("name", ZOO)
def test_keeps_at_most_one_input_sized_tensor_for_backward(name):
    x = torch.randn(4, 3, 8, 8)
    for inplace in (False, True):
        m = make_activation(name, channels=3, inplace=inplace).train()
        h = (x.clone().requires_grad_()) * 1
        saved: dict[int, torch.Tensor] = {}

        def pack(t, saved=saved):
            saved[t.untyped_storage().data_ptr()] = t
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = m(h)
        big = [t for t in saved.values() if t.numel() == x.numel()]
        assert len(big) <= 1, name
        cpp = _activations_cpu.available()
        if name == "helu" or (cpp and name in ("relu", "leaky_relu") and not inplace):
            # a mask: 1 bit per element from the C++ kernels, a bool tensor from the eager path
            # (which keeps relu's and leaky_relu's output instead: no bigger than a bool mask)
            (kept,) = [t for t in saved.values() if t.dtype in (torch.uint8, torch.bool)]
            if cpp:
                assert kept.dtype == torch.uint8 and kept.shape == ((x.numel() + 7) // 8,)
            else:
                assert kept.dtype == torch.bool and kept.shape == x.shape
            assert not big, name
        elif name in INPLACE_REAL:
            # piecewise-linear / output-invertible: the output itself
            (kept,) = big
            assert kept.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
        if inplace and name in INPLACE_REAL:
            assert y.untyped_storage().data_ptr() == h.untyped_storage().data_ptr()


def memory_order_of(x: torch.Tensor) -> torch.Tensor:
    """The elements of a contiguous or channels_last 4-D tensor in memory order, flat."""
    if x.is_contiguous():
        return x.reshape(-1)
    return x.permute(0, 2, 3, 1).reshape(-1)


def _pack_reference(bits: torch.Tensor) -> torch.Tensor:
    pad = torch.zeros((-bits.numel()) % 8, dtype=torch.bool)
    b = torch.cat([bits, pad]).reshape(-1, 8).to(torch.uint8)
    return (b << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def _bits_reference(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Element i is bit i % 8 of byte i // 8 (little-endian bits), unpacked with plain ops."""
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((packed[:, None] >> shifts) & 1).reshape(-1)[:n].bool()


@needs_cpp
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "helu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("shape,fmt", [
    ((1, 1, 1, 13), torch.contiguous_format),        # one partial byte
    ((3, 5, 7, 9), torch.channels_last),             # memory order != logical order
    ((2, 3, 81, 81), torch.contiguous_format),       # several 16384-element work items
    ((2, 3, 81, 81), torch.channels_last),
])
def test_one_bit_mask_holds_the_predicate_in_memory_order(name, dtype, shape, fmt):
    """The saved mask is 1 bit per element in the input's memory order (the last byte's unused
    bits 0); ``unpack_mask`` restores it; the gradient equals g * f' from the predicate, with 1
    and 2 threads (work items write whole bytes)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    x.view(-1)[::7] = 0.0  # ties at the threshold of relu/leaky_relu
    x = x.contiguous(memory_format=fmt)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(4)).to(dtype)
    thr = -0.05 if name == "helu" else 0.0
    slope = 0.01 if name == "leaky_relu" else 0.0
    n = x.numel()
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            saved = []
            leaf = x.clone().requires_grad_()
            with torch.autograd.graph.saved_tensors_hooks(
                    lambda t, saved=saved: saved.append(t) or t, lambda t: t):
                y = make_activation(name, inplace=False)(leaf * 1)
            y.backward(g)
        finally:
            torch.set_num_threads(old)
        (packed,) = saved
        if dtype == torch.bfloat16 and name != "helu":
            # 16 bits: relu and leaky_relu keep their output (the bits cost more than they save)
            assert packed.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
            packed = _pack_reference(memory_order_of(x) > 0)
        assert packed.dtype == torch.uint8 and packed.shape == ((n + 7) // 8,)
        pred = memory_order_of(x) > thr
        assert torch.equal(_bits_reference(packed, n), pred)
        if n % 8:  # padding bits are 0
            assert int(packed[-1]) >> (n % 8) == 0
        unpacked = torch.ops.rectifiers_act.unpack_mask(packed, x.shape, x.stride())
        assert unpacked.stride() == x.stride() and torch.equal(unpacked, x > thr)
        cd = torch.float64 if dtype == torch.float64 else torch.float32
        d = torch.where(x > thr, torch.tensor(1.0, dtype=cd), torch.tensor(slope, dtype=cd))
        assert torch.equal(leaf.grad, (g.to(cd) * d).to(dtype))


@pytest.mark.parametrize("name,kw,kept", [
    ("relu", {}, "output"), ("leaky_relu", {}, "output"),
    ("leaky_relu", {"negative_slope": -0.5}, "mask"), ("helu", {}, "mask")])
def test_eager_path_keeps_the_output_where_it_gives_the_mask(monkeypatch, name, kw, kept):
    """Without the C++ kernels (CUDA, no compiler) a mask would be a bool per element: relu and
    leaky_relu (slope >= 0) keep their output instead; the gradient is the same either way."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x.view(-1)[::5] = 0.0
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))

    def run():
        saved = []
        leaf = x.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                      lambda t: t):
            y = make_activation(name, inplace=False, **kw)(leaf * 1)
        y.backward(g)
        return y, leaf.grad, saved

    y_c, gx_c, _ = run()
    monkeypatch.setattr(zoo_ops, "_use_cpp", lambda t: False)
    y_e, gx_e, saved = run()
    assert torch.equal(y_c, y_e) and torch.equal(gx_c, gx_e)
    (s,) = saved
    if kept == "output":
        assert s.untyped_storage().data_ptr() == y_e.untyped_storage().data_ptr()
    else:
        assert s.dtype == torch.bool and s.shape == x.shape


def test_rrelu_slopes_regenerated_from_the_seed_match_forward():
    torch.manual_seed(0)
    m = make_activation("rrelu").train()
    x = -torch.rand(4, 16, 9, 9) - 0.1
    leaf = x.clone().requires_grad_()
    torch.manual_seed(7)
    y = m(leaf * 1)
    y.backward(torch.ones_like(y))
    slopes = y.detach() / x
    torch.testing.assert_close(leaf.grad, slopes, rtol=1e-6, atol=0)  # backward = forward slope
    assert slopes.min() >= 1 / 8 - 1e-7 and slopes.max() <= 1 / 3 + 1e-7
    # U(1/8, 1/3): mean 0.2292, sd (1/3 - 1/8)/sqrt(12) = 0.0601; n = 5184
    n = slopes.numel()
    assert abs(slopes.mean().item() - (1 / 8 + 1 / 3) / 2) < 5 * 0.0601 / math.sqrt(n)
    assert abs(slopes.std().item() - (1 / 3 - 1 / 8) / math.sqrt(12)) < 0.005
    torch.manual_seed(7)
    again = m(x.clone())
    assert torch.equal(again, y.detach())  # reproducible under torch.manual_seed
    assert not torch.equal(m(x.clone()), y.detach())  # a fresh seed per forward


@needs_cpp
def test_rrelu_eager_slopes_equal_the_kernels():
    x = -torch.ones(3, 5, 7, 2)
    y = torch.empty_like(x)
    _activations_cpu.forward(x, 2, [0.125, 1 / 3, 987654.0], torch.ones(1), (1, x.numel()), y)
    # equal up to one fp32 rounding (the kernel may fuse lower + span * u into an FMA)
    torch.testing.assert_close(-y, rrelu_slopes(x, 0.125, 1 / 3, 987654), rtol=2.4e-7, atol=0)


@needs_cpp
def test_swish_beta_gradient_deterministic_for_any_thread_count():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 40, 40)
    g = torch.randn_like(x)
    sw = make_activation("swish", channels=64, channel_wise=True)
    grads: dict[torch.memory_format, list[torch.Tensor]] = {}
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            for fmt in (torch.contiguous_format, torch.channels_last):
                sw.beta.grad = None
                xf, gf = x.contiguous(memory_format=fmt), g.contiguous(memory_format=fmt)
                sw(xf).backward(gf)
                grads.setdefault(fmt, []).append(sw.beta.grad.clone())
    finally:
        torch.set_num_threads(threads)
    for per_format in grads.values():  # bitwise equal for any thread count, per layout
        assert all(torch.equal(per_format[0], gr) for gr in per_format[1:])
    grads = grads[torch.contiguous_format]
    xd, gd, bd = x.double().requires_grad_(), g.double(), sw.beta.detach().double()
    bd.requires_grad_()
    (xd * torch.sigmoid(bd.reshape(1, -1, 1, 1) * xd)).backward(gd)
    torch.testing.assert_close(grads[0].double(), bd.grad, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("channel_wise", [False, True])
def test_swish_bf16_autocast_keeps_fp32_beta_and_fp32_gradient(channel_wise):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 1)
    sw = make_activation("swish", channels=4, channel_wise=channel_wise)
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        y = sw(h)
    assert y.dtype == torch.bfloat16 and sw.beta.dtype == torch.float32
    y.float().sum().backward()
    assert sw.beta.grad.dtype == torch.float32
    ref = make_activation("swish", channels=4, channel_wise=channel_wise)
    ref(h.detach().float()).sum().backward()
    torch.testing.assert_close(sw.beta.grad, ref.beta.grad, rtol=2e-2, atol=2e-2)


def test_missing_compiler_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(_activations_cpu, "available", lambda: False)
    monkeypatch.setattr(_activations_cpu, "load_error", lambda: "RuntimeError: no C++ compiler")
    monkeypatch.setattr(zoo_ops, "_warned", False)
    x = torch.randn(2, 3, 4)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ activation kernels are unavailable"):
        y = make_activation("mish")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_activation("gelu")(x)  # once only
    torch.testing.assert_close(y, x * torch.tanh(nn.functional.softplus(x)))


def test_rectifiers_no_cpp_is_silent(monkeypatch):
    monkeypatch.setattr(_activations_cpu, "available", lambda: False)
    monkeypatch.setattr(_activations_cpu, "load_error", lambda: "disabled by RECTIFIERS_NO_CPP")
    monkeypatch.setattr(zoo_ops, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_activation("silu")(torch.randn(3, 4))


@pytest.mark.parametrize("name", ZOO)
def test_non_dense_input_uses_the_eager_path_with_equal_values(name):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)[:, :, ::2]  # strided, not dense
    m = make_activation(name, channels=3).double().eval()
    torch.testing.assert_close(m(x), m(x.contiguous()), rtol=1e-13, atol=1e-13)


def test_inplace_on_a_leaf_is_refused_before_writing():
    x = torch.randn(3, 4, requires_grad=True)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="leaf Variable"):
        make_activation("elu", inplace=True)(x)
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("name", ZOO)
def test_trace_and_export_see_plain_ops_with_equal_values(name):
    m = nn.Sequential(nn.Conv2d(3, 4, 1), make_activation(name, channels=4)).eval()
    x = torch.randn(2, 3, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, (x,), check_trace=False)
        exported = torch.export.export(m, (x,)).module()
    torch.testing.assert_close(traced(x), m(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(exported(x), m(x), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gelu", "helu", "swish", "smelu"])  # rrelu: compiled RNG differs
def test_torch_compile_trains_like_eager(name):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 1), make_activation(name, channels=4, channel_wise=True)
                      if name == "swish" else make_activation(name, channels=4)).train()
    x = torch.randn(2, 3, 5, 5)
    grads = []
    for fn in (m, torch.compile(m)):
        m.zero_grad()
        torch.manual_seed(1)
        fn(x).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_cpp
def test_ops_have_fake_implementations_for_tracing():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
        w = torch.ones(3)
        out = torch.empty_like(x)
        torch.ops.rectifiers_act.forward(x, 6, [], w, 3, 1, out, None)
        gi, gw = torch.ops.rectifiers_act.backward(x, x, 6, 0, [], w, 3, 1, None, True)
    assert gi.shape == x.shape and gi.stride() == x.stride() and gw.shape == (3,)
    assert gw.dtype == torch.float64


TRANSFORMABLE = [n for n in ZOO if n not in ("helu", "rrelu")]


@pytest.mark.parametrize("name", TRANSFORMABLE)
def test_torch_func_jvp_vmap_and_grad_equal_autograd(name):
    # torch.func transforms run the activation's ATen formula (the kernel stays outside them):
    # jvp = f'(x) t as autograd computes it, vmap = the activation applied to each sample,
    # grad of the parameters through functional_call = autograd's parameter gradient.
    from torch.func import functional_call, grad, jvp, vmap

    torch.manual_seed(0)
    f = make_activation(name, inplace=False).double()
    x = 3 * torch.randn(4, 3, 5, 5, dtype=torch.float64)
    t = torch.randn_like(x)
    y, ty = jvp(f, (x,), (t,))
    xr = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(f(xr), xr, t)  # elementwise: f'(x) t both ways
    torch.testing.assert_close(y, f(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(ty, gx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vmap(f)(x), f(x), rtol=0, atol=1e-12)
    params = {k: v.detach() for k, v in f.named_parameters()}
    if params:
        g = grad(lambda p: functional_call(f, p, (x,)).square().sum())(params)
        f.zero_grad()
        f(x).square().sum().backward()
        for k, v in f.named_parameters():
            torch.testing.assert_close(g[k], v.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["helu", "rrelu"])
def test_torch_func_refuses_activations_whose_gradient_is_not_their_formulas(name):
    from torch.func import jvp

    f = make_activation(name, inplace=False).train()
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(NotImplementedError, match="torch.func"):
        jvp(f, (x,), (torch.ones_like(x),))


# the activations whose bf16/fp16 kernels read f and f' from 65536-entry tables (swish with its
# learnable scalar beta: sigmoid(-|beta x|), from which f' and df/dbeta follow)
TABLED = ["gelu", "gelu_tanh", "silu", "swish", "mish", "golu", "sau"]


def _bits_equal_or_both_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.view(torch.int16) == b.view(torch.int16)) | (a.isnan() & b.isnan())


def _run_with_param_grads(name, x, g, tables=None):
    """``_run`` plus the module's parameter gradients (fp32 parameters, as under autocast)."""
    old = None if tables is None else torch.ops.rectifiers_act.set_tables(tables)
    try:
        m = make_activation(name, channels=x.shape[1])
        leaf = x.detach().clone().requires_grad_()
        y = m(leaf * 1)
        y.backward(g)
    finally:
        if old is not None:
            torch.ops.rectifiers_act.set_tables(old)
    return y.detach(), leaf.grad, [p.grad for p in m.parameters()]


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", TABLED)
def test_16bit_tables_equal_the_direct_loops_on_every_value(name, dtype):
    """Every one of the 65536 bit patterns (NaN, inf, subnormals included) through the module,
    with the tables and with the direct polynomial loops: the same outputs and gradients."""
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype).reshape(2, 1, 128, 256)  # one channel: the tables apply
    g = torch.linspace(-3, 3, x.numel()).reshape(x.shape).to(dtype)
    old = torch.ops.rectifiers_act.set_tables(True)
    try:
        y_t, gx_t, gw_t = _run_with_param_grads(name, x, g)
        torch.ops.rectifiers_act.set_tables(False)
        y_d, gx_d, gw_d = _run_with_param_grads(name, x, g)
    finally:
        torch.ops.rectifiers_act.set_tables(old)
    assert bool(_bits_equal_or_both_nan(y_t, y_d).all())
    same = _bits_equal_or_both_nan(gx_t, gx_d)
    if name == "swish":  # the beta gradient: a NaN input makes it NaN; the finite values' too
        finite = x.isfinite()
        xf, gf = x[finite].reshape(1, 1, -1), g[finite].reshape(1, 1, -1)
        gw_tf = _run_with_param_grads(name, xf, gf)[2]
        gw_df = _run_with_param_grads(name, xf, gf, tables=False)[2]
        assert gw_t[0].isnan().all() and gw_d[0].isnan().all()
        assert gw_tf[0].isfinite().all()
        if dtype == torch.bfloat16:
            assert torch.equal(gw_tf[0], gw_df[0])
        else:
            torch.testing.assert_close(gw_tf[0], gw_df[0], rtol=1e-3, atol=0)
    if dtype == torch.bfloat16:
        assert bool(same.all())
    else:
        # fp16: g++ may contract a few operations differently in the table-building loop (the
        # source says so); allow one fp16 ulp on at most 0.1 % of the values
        ulp = torch.finfo(dtype).eps * gx_d.float().abs().clamp(min=torch.finfo(dtype).tiny)
        close = (gx_t.float() - gx_d.float()).abs() <= ulp
        assert bool((same | close).all())
        assert int((~same).sum()) <= x.numel() // 1000


@needs_cpp
def test_16bit_tables_follow_the_parameters():
    """A table is cached per parameter set: a different sigma (sau) or beta (swish: f and
    sigmoid(-|beta x|)) must not reuse another's table; values and the beta gradient against
    fp64."""
    x = torch.linspace(-4, 4, 4096).reshape(1, 1, 64, 64).to(torch.bfloat16)
    g = torch.linspace(1, 2, 4096).reshape(x.shape).to(torch.bfloat16)
    for sigma in (1.0, 0.5, 2.0):
        m = make_activation("sau", channels=1, sigma=sigma)
        ref = make_activation("sau", channels=1, sigma=sigma)(x.double())
        torch.testing.assert_close(m(x).double(), ref, rtol=8e-3, atol=1e-6)
    for beta in (1.0, 0.5, 2.0):
        m = make_activation("swish", channels=1, init=beta).double()
        leaf = x.double().requires_grad_()
        y = m(leaf)
        y.backward(g.double())
        m_bf = make_activation("swish", channels=1, init=beta)
        leaf_bf = x.clone().requires_grad_()
        m_bf(leaf_bf).backward(g)
        torch.testing.assert_close(m_bf(x).double(), y.detach(), rtol=8e-3, atol=1e-6)
        torch.testing.assert_close(leaf_bf.grad.double(), leaf.grad, rtol=8e-3, atol=1e-6)
        # beta's gradient: a sum of 4096 fp32 products of bf16-rounded gradients
        torch.testing.assert_close(m_bf.beta.grad.double(), m.beta.grad, rtol=1e-3, atol=0)
