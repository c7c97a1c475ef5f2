"""PReLU: equality with torch.nn.PReLU, gradcheck, in-place exactness and memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rectifiers.nn import PReLU
from rectifiers.nn.functional import prelu

SLOPES = [0.25, -0.3, 0.0, 1e-20, 1.0, 2.5]


def _shape(rank: int, c: int) -> tuple[int, ...]:
    return (2, c, 3, 4, 3)[:rank] if rank > 1 else (7,)


def _ref(x, w, g):
    xr = x.detach().clone().requires_grad_()
    wr = w.detach().clone().requires_grad_()
    y = F.prelu(xr, wr)
    y.backward(g)
    return y.detach(), xr.grad, wr.grad


def _ours(x, w, g, inplace):
    xo = x.detach().clone().requires_grad_()
    wo = w.detach().clone().requires_grad_()
    y = prelu(xo * 1, wo, inplace=inplace)  # *1: in-place needs a non-leaf
    y.backward(g)
    return y.detach(), xo.grad, wo.grad


@pytest.mark.parametrize("backend", ["cpp", "eager"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("a", SLOPES)
def test_gradcheck_fp64_every_mode(inplace, shared, a, backend, monkeypatch):
    from rectifiers.nn import prelu as prelu_mod

    monkeypatch.setattr(prelu_mod, "_backend", backend)
    torch.manual_seed(0)
    c = 3
    w = torch.full((1 if shared else c,), a, dtype=torch.float64)
    if not shared:
        w[1] = 0.5  # mixed channels: the save mode is chosen over all of them
    w.requires_grad_()
    x = torch.randn(2, c, 3, 3, dtype=torch.float64)
    x = x + 0.05 * x.sign()  # keep |x| away from the kink so finite differences are valid
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: prelu(x * 1, w, inplace=inplace), (x, w))


@pytest.mark.parametrize("rank", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("inplace", [False, True])
def test_gradcheck_ranks_and_channels_last(rank, inplace):
    torch.manual_seed(rank)
    c = 1 if rank == 1 else 3
    x = torch.randn(_shape(rank, c), dtype=torch.float64)
    x = x + 0.05 * x.sign()
    if rank == 4:
        x = x.to(memory_format=torch.channels_last)
    if rank == 5:
        x = x.to(memory_format=torch.channels_last_3d)
    x.requires_grad_()
    w = torch.linspace(-0.5, 0.5, c, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: prelu(x * 1, w, inplace=inplace), (x, w))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    rank=st.integers(1, 5),
    c=st.integers(1, 6),
    shared=st.booleans(),
    inplace=st.booleans(),
    channels_last=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    a=st.sampled_from(SLOPES + [float("nan"), float("inf")]),
    seed=st.integers(0, 2**16),
)
def test_matches_torch_prelu(rank, c, shared, inplace, channels_last, dtype, a, seed):
    g_ = torch.Generator().manual_seed(seed)
    c = 1 if rank == 1 else c
    x = torch.randn(_shape(rank, c), generator=g_, dtype=dtype)
    if channels_last and rank in (4, 5):
        fmt = torch.channels_last if rank == 4 else torch.channels_last_3d
        x = x.to(memory_format=fmt)
    w = torch.randn(1 if shared else c, generator=g_, dtype=dtype) * 0.5
    w[0] = a
    g = torch.randn(x.shape, generator=g_, dtype=dtype)
    y_r, gx_r, gw_r = _ref(x, w, g)
    y_o, gx_o, gw_o = _ours(x, w, g, inplace)
    # forward and input gradient are the same selects as ATen: bitwise equal
    assert torch.equal(y_o.nan_to_num(9.0), y_r.nan_to_num(9.0))
    assert torch.equal(gx_o.nan_to_num(9.0), gx_r.nan_to_num(9.0))
    # slope gradient: same terms, another summation order (and /a for in-place)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(gw_o, gw_r, rtol=tol, atol=tol * x.numel(), equal_nan=True)
    if channels_last and rank in (4, 5):
        assert y_o.stride() == x.stride()


def test_eager_backend_matches_torch_prelu(monkeypatch):
    """The same property test under the eager backend (the fallback without a compiler)."""
    from rectifiers.nn import prelu as prelu_mod

    monkeypatch.setattr(prelu_mod, "_backend", "eager")
    test_matches_torch_prelu()


def test_module_matches_torch_module_and_state_dict_both_ways():
    torch.manual_seed(0)
    ours, ref = PReLU(4, init=0.1), torch.nn.PReLU(4, init=0.1)
    assert ours.weight.shape == ref.weight.shape == (4,)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    ref.weight.data.uniform_(-1, 1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(ours(x), ref(x))
    ours.weight.data.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    assert torch.equal(ours(x), ref(x))
    assert repr(PReLU()) == repr(torch.nn.PReLU()).replace("PReLU", "PReLU")
    assert "inplace=True" in repr(PReLU(3, inplace=True))
    assert PReLU.no_weight_decay is True


def test_channel_mismatch_error_names_expected_actual_and_fix():
    msg = r"expects 8 channels.*has 3 channels.*PReLU\(num_parameters=3\)"
    with pytest.raises(RuntimeError, match=msg):
        PReLU(8)(torch.randn(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="1-D input has one channel"):
        PReLU(8)(torch.randn(8))
    with pytest.raises(ValueError, match="positive int"):
        PReLU(0)


def test_channel_mismatch_inplace_leaves_input_untouched():
    x = torch.randn(2, 3, 4)
    before = x.clone()
    with pytest.raises(RuntimeError):
        PReLU(5, inplace=True)(x)
    assert torch.equal(x, before)


def test_inplace_overwrites_input_and_returns_it():
    x = torch.randn(2, 3, 4, 4)
    expect = F.prelu(x, torch.full((3,), 0.25))
    act = PReLU(3, inplace=True)
    with torch.no_grad():
        out = act(x)
    assert out.data_ptr() == x.data_ptr() and torch.equal(x, expect)
    h = torch.randn(2, 3, 4, 4, requires_grad=True) * 1
    out = act(h)
    assert out.data_ptr() == h.data_ptr()


def test_inplace_on_leaf_requiring_grad_raises_like_torch_and_does_not_write():
    x = torch.randn(2, 3, requires_grad=True)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="leaf Variable"):
        PReLU(3, inplace=True)(x)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        PReLU(3, inplace=True)(x[0:1])
    assert torch.equal(x.detach(), before)


def test_inplace_on_view_of_non_leaf_gives_correct_gradients():
    base = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    h = base * 2
    prelu(h[1:3], w, inplace=True)  # rewrites part of h through a view
    h.sum().backward()
    base_r = base.detach().clone().requires_grad_()
    w_r = w.detach().clone().requires_grad_()
    h_r = base_r * 2
    out = torch.cat([h_r[:1], F.prelu(h_r[1:3], w_r), h_r[3:]])
    out.sum().backward()
    torch.testing.assert_close(base.grad, base_r.grad)
    torch.testing.assert_close(w.grad, w_r.grad)


def _saved_bytes(fn, x):
    """Unique storages saved for backward, excluding the slope-sized tensors."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.numel() > 64:
            st_ = t.untyped_storage()
            seen[st_.data_ptr()] = st_.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    return y, seen


@pytest.mark.parametrize(
    "a, expected", [(0.25, "output"), (-0.3, "mask"), (0.0, "input"), (float("nan"), "input")]
)
@pytest.mark.parametrize("shared", [True, False])
def test_inplace_saves_no_extra_full_size_float_tensor(a, expected, shared):
    torch.manual_seed(0)
    c = 4
    w = torch.full((1 if shared else c,), a, requires_grad=True)
    x = torch.randn(3, c, 8, 8, requires_grad=True)
    h = x * 1
    nbytes_h = h.untyped_storage().nbytes()
    y, seen = _saved_bytes(lambda t: prelu(t, w, inplace=True), h)
    total = sum(seen.values())
    if expected == "output":
        assert set(seen) == {y.untyped_storage().data_ptr()}  # the output itself, nothing more
    elif expected == "mask":
        assert total == nbytes_h + h.numel()  # output + 1 byte/element mask
    else:
        # a copy of the input instead of the output: x cannot be recovered from y
        assert total == nbytes_h and y.untyped_storage().data_ptr() not in seen
    # gradients still equal the out-of-place ones
    g = torch.randn_like(y)
    y.backward(g)
    _, gx_r, gw_r = _ref(x.detach(), w.detach(), g)
    assert torch.equal(x.grad.nan_to_num(9.0), gx_r.nan_to_num(9.0))
    torch.testing.assert_close(w.grad, gw_r, rtol=1e-5, atol=1e-4, equal_nan=True)


def test_out_of_place_saves_only_the_input():
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    y, seen = _saved_bytes(lambda t: PReLU(4)(t), x)
    assert list(seen) == [x.untyped_storage().data_ptr()]


def test_denormal_slope_inplace_falls_back_and_is_exact():
    x = torch.full((2, 3), -1e-30, requires_grad=True)
    w = torch.tensor([1e-12], requires_grad=True)  # a*x underflows: y loses x
    y = prelu(x * 1, w, inplace=True)
    y.sum().backward()
    assert torch.allclose(w.grad, torch.tensor([-6e-30]))


def test_bf16_autocast_fp32_slope_gradient_in_fp32():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)
    act = PReLU(8)
    x = torch.randn(4, 3, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        y = act(h)
    assert y.dtype == torch.bfloat16 and act.weight.dtype == torch.float32
    g = torch.randn(y.shape)
    y.float().backward(g)
    # reference: bf16 products (as autograd hands a bf16 gradient), accumulated in fp64;
    # a bf16 accumulation (torch.nn.PReLU under autocast) would be off by ~2^-8 relative
    terms = (g.bfloat16() * h.detach().clamp(max=0)).double()
    expect = terms.sum((0, 2, 3))
    scale = terms.abs().sum((0, 2, 3))
    assert torch.all((act.weight.grad.double() - expect).abs() <= 1e-6 * scale + 1e-6)
    # bf16 input with an fp32 slope also works without autocast (torch.nn.PReLU raises)
    y2 = act(h.detach())
    assert y2.dtype == torch.bfloat16


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_eager_and_graph_paths_agree_under_tracing():
    act = PReLU(3)
    x = torch.randn(2, 3, 4)
    traced = torch.jit.trace(act, x)
    assert "prelu" in str(traced.graph)
    assert torch.equal(traced(x), act(x))


def test_backend_switch_validates_name():
    from rectifiers.nn.prelu import get_prelu_backend, set_prelu_backend

    assert get_prelu_backend() in ("cpp", "eager", "compile")
    with pytest.raises(ValueError, match="eager"):
        set_prelu_backend("cuda-magic")


# ---------------------------------------------------------------- fused C++ kernels ("cpp")


@pytest.fixture
def cpp_backend():
    """Run under the C++ backend; skip (with the reason) where the extension cannot build."""
    from rectifiers.nn import _prelu_cpu
    from rectifiers.nn.prelu import get_prelu_backend, set_prelu_backend

    if not _prelu_cpu.available():
        pytest.skip(f"C++ PReLU extension unavailable: {_prelu_cpu.load_error()}")
    old = get_prelu_backend()
    set_prelu_backend("cpp")
    yield _prelu_cpu
    set_prelu_backend(old)


@pytest.fixture
def count_cpp(cpp_backend, monkeypatch):
    """Count calls into the C++ forward/backward: proves the fast path really ran."""
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        orig = getattr(cpp_backend, name)

        def wrapped(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)

        monkeypatch.setattr(cpp_backend, name, wrapped)

    # the whole layer in C++ (forward kernel + a C++ autograd node whose backward is the C++
    # kernel): count its forward, and its backward by a hook on the node it recorded
    orig_apply = cpp_backend.apply

    def apply(*a, **k):
        y = orig_apply(*a, **k)
        if y is not None:
            calls["forward"] += 1
            nodes = [y.grad_fn] if y.grad_fn is not None else []
            for _ in range(3):  # the node itself, or behind the copy_ of an in-place fall-back
                found = [n for n in nodes if type(n).__name__ == "CppFunction"]
                if found:
                    found[0].register_hook(
                        lambda *_: calls.__setitem__("backward", calls["backward"] + 1))
                    break
                nodes = [f for n in nodes for f, _ in n.next_functions if f is not None]
        return y

    monkeypatch.setattr(cpp_backend, "apply", apply)
    return calls


def _fmt(rank: int):
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(rank)


@pytest.mark.parametrize(
    "rank, channels_last", [(1, False), (2, False), (3, False), (4, False), (4, True),
                            (5, False), (5, True)]
)
@pytest.mark.parametrize("mode", ["plain", "inplace", "inplace_mask", "inplace_zero"])
def test_cpp_gradcheck_fp64(count_cpp, rank, channels_last, mode):
    torch.manual_seed(rank)
    shared = rank == 1
    c = 1 if shared else 3
    x = torch.randn(_shape(rank, c), dtype=torch.float64)
    x = x + 0.05 * x.sign()
    if channels_last:
        x = x.to(memory_format=_fmt(rank))
    x.requires_grad_()
    w = {"plain": [0.25, -0.4, 1.5], "inplace": [0.25, 0.5, 1.0],
         "inplace_mask": [0.25, -0.5, 0.1], "inplace_zero": [0.0, 0.3, 0.2]}[mode][:c]
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    inplace = mode != "plain"
    assert torch.autograd.gradcheck(lambda x, w: prelu(x * 1, w, inplace=inplace), (x, w))
    assert count_cpp["forward"] > 0 and count_cpp["backward"] > 0


@pytest.mark.parametrize(
    "shape, channels_last",
    [
        ((3, 5), False),  # rank 2: rows of C, inner = 1
        ((4, 6, 7), False),  # short planes: rows mode with inner > 1
        ((2, 3, 40000), False),  # planes split into several work items
        ((2, 8, 9, 11), True),  # channels_last rows
        ((2, 4, 3, 5, 6), True),  # channels_last_3d
        ((3, 1, 70000), False),  # one channel, long plane
    ],
)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_cpp_matches_torch_prelu_fp32_bitwise(count_cpp, shape, channels_last, shared, inplace):
    torch.manual_seed(len(shape))
    x = torch.randn(shape)
    if channels_last:
        x = x.to(memory_format=_fmt(len(shape)))
    c = 1 if shared else shape[1]
    w = torch.rand(c) * 0.9 + 0.05
    g = torch.randn(shape)
    y_r, gx_r, gw_r = _ref(x, w, g)
    y_o, gx_o, gw_o = _ours(x, w, g, inplace)
    assert count_cpp["forward"] == 1 and count_cpp["backward"] == 1
    assert torch.equal(y_o, y_r) and torch.equal(gx_o, gx_r)
    assert y_o.stride() == x.stride() and gx_o.stride() == x.stride()
    # slope gradient: fp64 reference sum of ATen's fp32 per-element terms; ours sums the same
    # terms in another order (fp32 blocks of <= 16384, fp64 across blocks), the reference
    # (ATen) in fp32: both within n * eps32 * sum|terms| of the exact value
    dims = [d for d in range(x.ndim) if shared or d != 1]
    terms = (g * x.clamp(max=0)).double()
    exact, scale = terms.sum(dims).reshape(-1), terms.abs().sum(dims).reshape(-1)
    bound = 2e-7 * scale * (1 if not inplace else 4) + 1e-30
    assert torch.all((gw_o.double() - exact).abs() <= bound)
    assert torch.all((gw_r.double() - exact).abs() <= 50 * bound)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpp_low_precision_matches_aten(count_cpp, dtype, channels_last):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 6, 7).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.tensor([0.25, 0.1, 0.7, 0.3, 0.05]).to(dtype)
    g = torch.randn(x.shape).to(dtype)
    y_r, gx_r, _ = _ref(x, w, g)
    y_o, gx_o, gw_o = _ours(x, w, g, inplace=False)
    assert count_cpp["backward"] == 1
    assert torch.equal(y_o, y_r) and torch.equal(gx_o, gx_r)  # same fp32 compute + rounding
    # terms rounded to the dtype like ATen's per-element gradient, summed in fp32/fp64 and
    # rounded once to the slope dtype: within half an ulp of the exact sum (+ fp32 sum error)
    terms = (g * x.clamp(max=0)).double()
    exact, scale = terms.sum((0, 2, 3)), terms.abs().sum((0, 2, 3))
    half_ulp = torch.finfo(dtype).eps / 2
    assert gw_o.dtype == dtype
    assert torch.all((gw_o.double() - exact).abs() <= half_ulp * exact.abs() + 1e-6 * scale)


def _same_bits_or_both_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal where not NaN (so inf is not max, -0 is not 0), NaN at the same places (its
    payload is not meaningful: ATen's vector and scalar conversions make different NaNs)."""
    nan = a.isnan()
    if not torch.equal(nan, b.isnan()):
        return False
    bits = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}
    return torch.equal(a[~nan].view(bits[a.dtype]), b[~nan].view(bits[b.dtype]))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mode", ["out", "inplace", "inplace_mask", "inplace_input"])
def test_cpp_special_values_match_aten_in_every_save_mode(count_cpp, dtype, mode,
                                                          channels_last):
    """NaN, +-inf, +-0, subnormals and the dtype's extremes in x and in g: values and input
    gradients are ATen's bit for bit, in runs long enough for the kernels' vector bodies and
    their tails (planes of 81 = 5 x 16 + 1; channels_last slope tiles of 255 = 15 x 16 + 15),
    in every save mode of the in-place layer."""
    slopes = {"inplace_mask": [0.25, -0.5, 0.75], "inplace_input": [0.0, 1.5, 0.25]}
    w = torch.tensor(slopes.get(mode, [0.25, 0.1, 0.75])).to(dtype)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 9, 9, generator=gen).to(dtype)
    g = torch.randn(2, 3, 9, 9, generator=gen).to(dtype)
    fi = torch.finfo(dtype)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, fi.max,
                            -fi.max, fi.tiny, fi.smallest_normal / 4, -fi.smallest_normal / 4],
                           dtype=dtype)
    for t in (x, g):
        idx = torch.randperm(t.numel(), generator=gen)[:4 * special.numel()]
        t.view(-1)[idx] = special.repeat(4)
    if channels_last:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    y_r, gx_r, _ = _ref(x, w, g)
    y_o, gx_o, _ = _ours(x, w, g, inplace=mode != "out")
    assert count_cpp["backward"] == 1
    if mode == "inplace_input":
        # x.copy_(prelu(x.clone())): autograd adds copy_'s zero gradient for the overwritten
        # x to the gradient through the clone, and 0 + -0 is +0
        gx_r = gx_r + 0.0
    assert _same_bits_or_both_nan(y_o, y_r)
    assert _same_bits_or_both_nan(gx_o, gx_r)


def test_cpp_deterministic_for_any_thread_count(cpp_backend):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 50, 50)
    w = torch.linspace(0.1, 0.9, 6)
    g = torch.randn(x.shape)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _ours(x, w, g, inplace=False)
        torch.set_num_threads(2)
        two = _ours(x, w, g, inplace=False)
    finally:
        torch.set_num_threads(old)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_cpp_odd_strides_and_expanded_grads_fall_back_or_adapt(count_cpp):
    torch.manual_seed(0)
    w = torch.tensor([0.2, 0.3, 0.4], requires_grad=True)
    base = torch.randn(4, 3, 8, 8)
    x = base[:, :, ::2].requires_grad_()  # non-dense view: the eager path takes it
    y = prelu(x, w)
    y.sum().backward()  # expanded (stride 0) upstream gradient
    _, gx_r, gw_r = _ref(x.detach(), w.detach(), torch.ones(x.shape))
    assert count_cpp["forward"] == 0
    assert torch.equal(x.grad, gx_r)
    torch.testing.assert_close(w.grad, gw_r)
    # dense input with a stride-0 gradient: the C++ backward gets a dense copy of it
    x2 = base.clone().requires_grad_()
    w.grad = None
    prelu(x2, w).sum().backward()
    _, gx_r, gw_r = _ref(base, w.detach(), torch.ones(base.shape))
    assert count_cpp["backward"] == 1
    assert torch.equal(x2.grad, gx_r)
    torch.testing.assert_close(w.grad, gw_r)


def test_cpp_no_grad_inplace_bumps_version_and_is_exact(count_cpp):
    x = torch.randn(2, 4, 5, 5)
    expect = F.prelu(x, torch.full((4,), 0.25))
    v0 = x._version
    with torch.no_grad():
        out = PReLU(4, inplace=True)(x)
    assert out is x and torch.equal(x, expect) and x._version > v0
    assert count_cpp["forward"] == 1


def test_unavailable_extension_warns_once_and_falls_back(monkeypatch):
    from rectifiers.nn import _prelu_cpu
    from rectifiers.nn import prelu as prelu_mod

    monkeypatch.setattr(_prelu_cpu, "available", lambda: False)
    monkeypatch.setattr(_prelu_cpu, "load_error", lambda: "RuntimeError: no C++ compiler")
    monkeypatch.setattr(prelu_mod, "_warned", False)
    monkeypatch.setattr(prelu_mod, "_backend", "cpp")
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.full((3,), 0.25, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager"):
        y = prelu(x, w)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must stay silent
        y2 = prelu(x, w)
    assert torch.equal(y, y2) and torch.equal(y, F.prelu(x, w))


def test_cpp_kernel_rejects_overlapping_out(cpp_backend):
    x = torch.randn(10)
    w = torch.tensor([0.25])
    with pytest.raises(RuntimeError, match="overlap"):
        cpp_backend.forward(x[:8], w, (1, 8), x[1:9])


@pytest.mark.slow
def test_cpp_extension_builds_from_an_empty_cache(tmp_path):
    """A fresh machine: compile into an empty cache dir in a new process, then use it."""
    import os
    import subprocess
    import sys

    from rectifiers.nn import _prelu_cpu

    try:
        _prelu_cpu._compiler()
    except RuntimeError as e:
        pytest.skip(str(e))
    code = (
        "import torch; from rectifiers.nn import _prelu_cpu as m; "
        "assert m.available(), m.load_error(); "
        "x = torch.randn(2, 3, 4, 4); w = torch.full((3,), 0.2); y = torch.empty_like(x); "
        "m.forward(x, w, (3, 16), y); "
        "assert torch.equal(y, torch.nn.functional.prelu(x, w))"
    )
    env = dict(os.environ, RECTIFIERS_CACHE=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=900)
    assert list(tmp_path.glob("ext/prelu_cpu_*/prelu_cpu.so"))


# ------------------------------------------------------- graph capture: script, export, compile


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("inplace", [False, True])
def test_torchscript_module_and_inside_sequential(inplace):
    torch.manual_seed(0)
    act = PReLU(3, inplace=inplace)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.25, -0.5, 1.5]))
    x = torch.randn(2, 3, 4, 4)
    scripted = torch.jit.script(act)
    assert torch.equal(scripted(x.clone()), F.prelu(x, act.weight.detach()))
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), act)
    s_seq = torch.jit.script(seq)
    with torch.no_grad():
        assert torch.equal(s_seq(x), seq(x))


def test_zero_dim_slope_works_like_f_prelu():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for inplace in (False, True):
        y = prelu(x * 1, w, inplace=inplace)
        assert torch.equal(y, F.prelu(x, w))
        (gx, gw), (rx, rw) = (torch.autograd.grad(y.sum(), (x, w)),
                              torch.autograd.grad(F.prelu(x, w).sum(), (x, w)))
        assert torch.equal(gx, rx) and gw.shape == () and torch.allclose(gw, rw)
    assert torch.autograd.gradgradcheck(lambda x, w: prelu(x * 1, w, inplace=True), (x, w))


@pytest.mark.parametrize("inplace", [False, True])
def test_torch_export_gives_the_standard_prelu_op(inplace):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), PReLU(4, inplace=inplace)).eval()
    x = torch.randn(1, 3, 8, 8)
    ep = torch.export.export(net, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert "aten.prelu.default" in targets and not any("rectifiers" in t for t in targets)
    assert torch.equal(ep.module()(x), net(x))


@pytest.mark.parametrize("shared", [False, True])
def test_registered_operators_gradients_and_inplace_semantics(shared):
    """torch.ops.rectifiers.prelu / prelu_ carry their own autograd (no wrapper needed)."""
    torch.manual_seed(0)
    c = 1 if shared else 3
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.2, -0.4, 0.6][:c], dtype=torch.float64, requires_grad=True)
    f = torch.ops.rectifiers.prelu
    assert torch.autograd.gradgradcheck(f, (x, w))
    h = x * 1
    v = h._version
    out = torch.ops.rectifiers.prelu_(h, w)
    assert out is h and h._version > v
    assert torch.equal(h, F.prelu(x, w))
    assert torch.autograd.gradgradcheck(lambda x, w: torch.ops.rectifiers.prelu_(x * 1, w), (x, w))
    with pytest.raises(RuntimeError, match="leaf Variable"):
        torch.ops.rectifiers.prelu_(x, w)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("inplace", [False, True])
def test_compile_fullgraph_prelu_net_matches_eager(inplace, device):
    """torch.compile(fullgraph=True): no graph break, same values and gradients (on CUDA too,
    where a GPU is present: Inductor's generated kernels)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), PReLU(8, inplace=inplace), torch.nn.Conv2d(8, 8, 3),
        PReLU(1, inplace=inplace), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5),
        PReLU(5, inplace=inplace),
    ).to(device)
    x = torch.randn(2, 3, 10, 10, device=device)
    ref = net(x)
    ref.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    out = torch.compile(net, fullgraph=True)(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref)
    for p, g in zip(net.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
    # the registered operators compile too (opaque ops with fake kernels, no graph break)
    w = torch.full((8,), 0.25, device=device, requires_grad=True)
    h = torch.randn(2, 8, 5, device=device, requires_grad=True)
    fn = torch.compile(lambda h, w: torch.ops.rectifiers.prelu_(h * 2, w).sum(), fullgraph=True)
    fn(h, w).backward()
    torch.testing.assert_close(w.grad, F.prelu(h.detach() * 2, w.detach()).clamp(max=0).sum(
        (0, 2)) / 0.25)


def test_portable_kernels_the_non_cpu_path_match_f_prelu():
    """The CompositeExplicitAutograd kernels (every device but CPU, e.g. CUDA) run on CPU
    tensors here, and on the meta device through the dispatcher."""
    from rectifiers.nn import prelu as prelu_mod

    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4).to(memory_format=torch.channels_last)
    w = torch.tensor([0.25, -0.5, 0.0])
    ref = F.prelu(x, w)
    out = prelu_mod._forward_portable(x, w)
    assert torch.equal(out, ref) and out.stride() == ref.stride()
    h = x.clone()
    assert prelu_mod._inplace_kernel(h, w) is h and torch.equal(h, ref)
    meta = torch.ops.rectifiers.prelu(x.to("meta"), w.to("meta"))
    assert meta.shape == x.shape and meta.device.type == "meta"
    with pytest.raises(RuntimeError, match="channels"):
        torch.ops.rectifiers.prelu(x.to("meta"), torch.ones(4, device="meta"))


def test_inplace_layer_trains_on_a_non_cpu_device():
    """The in-place save-mode check reads the slopes on the host: slopes on another device
    (meta here, CUDA in practice) must not reach numpy directly."""
    from rectifiers.nn import PReLU

    layer = PReLU(3, inplace=True).to("meta")
    x = torch.empty(2, 3, 4, 4, device="meta", requires_grad=True)
    y = layer(x.clone())
    assert y.shape == x.shape and y.device.type == "meta"


# ------------------------------------------------ the C++ hot path against the Python path


def _both_paths(cpp_backend, monkeypatch, fn):
    """``fn()`` through the C++ layer (``_prelu_cpu.apply``) and through the Python autograd
    kernels (``apply`` disabled), both on the same fused kernels."""
    hot = fn()
    with monkeypatch.context() as m:
        m.setattr(cpp_backend, "apply", lambda *a, **k: None)
        cold = fn()
    return hot, cold


@pytest.mark.parametrize("case", ["out", "inplace", "inplace_mask", "inplace_input", "view",
                                  "bf16_autocast", "shared_0d", "checkpoint"])
def test_cpp_layer_equals_python_path(cpp_backend, monkeypatch, case):
    """Values, input and slope gradients bitwise equal, and the C++ node really recorded."""
    slopes = {"inplace_mask": [0.25, -0.5, 0.75], "inplace_input": [0.0, 1.5, 0.25]}
    w0 = torch.tensor(slopes.get(case, [0.25, 0.1, 0.75]))
    if case == "shared_0d":
        w0 = torch.tensor(0.3)
    x0 = torch.randn(4, 3, 6, 5, generator=torch.Generator().manual_seed(7))
    g = torch.randn(2 if case == "view" else 4, 3, 6, 5,
                    generator=torch.Generator().manual_seed(8))

    def run():
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        h = x * 1
        if case == "view":
            y = prelu(h[:2], w, inplace=True)  # a dense view of a non-leaf, written in place
        elif case == "bf16_autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = prelu(h.to(torch.bfloat16), w, inplace=True)
        elif case == "checkpoint":
            y = torch.utils.checkpoint.checkpoint(
                lambda t, w: prelu(t * 2, w, inplace=True), h, w, use_reentrant=False)
        else:
            y = prelu(h, w, inplace=case != "out")
        names = {type(y.grad_fn).__name__}
        y.backward(g.to(y.dtype))
        return y.detach(), x.grad, w.grad, names

    (y1, gx1, gw1, n1), (y2, gx2, gw2, n2) = _both_paths(cpp_backend, monkeypatch, run)
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
    assert gw1.dtype == gw2.dtype == w0.dtype and gw1.shape == w0.shape
    assert torch.equal(gw1, gw2)
    if case not in ("view", "inplace_input", "checkpoint"):  # those wrap the node in another
        assert n1 == {"CppFunction"} and "CppFunction" not in n2


def test_cpp_layer_in_place_on_a_leaf_is_refused_before_writing(cpp_backend):
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="leaf Variable"):
        prelu(x, torch.full((3,), 0.25), inplace=True)
    assert torch.equal(x.detach(), before)


def test_slope_prefetch_one_copy_per_step_and_version_checked(monkeypatch):
    """The logic of the GPU slope prefetch (rectifiers.nn._prelu_slopes), run on CPU
    tensors: after a step every tracked slope is read from one shared copy; a slope written
    since (its version moved) or re-allocated is read afresh, never from a stale copy."""
    import torch.optim.optimizer as optim_mod

    from rectifiers.nn._prelu_slopes import _SlopePrefetch

    hooks = []
    monkeypatch.setattr(optim_mod, "register_optimizer_step_post_hook", hooks.append)
    pf = _SlopePrefetch()
    a = torch.nn.Parameter(torch.tensor([0.25, -0.5, 0.75]))
    b = torch.nn.Parameter(torch.tensor(0.3))  # 0-d, as F.prelu accepts
    c = torch.nn.Parameter(torch.tensor([0.1, 0.2], dtype=torch.float64))
    assert torch.equal(pf.read(a), a.detach()) and torch.equal(pf.read(b), b.detach())
    pf.read(c)
    pf.read(a * 1)  # a non-leaf is read but not tracked
    assert hooks == [pf._after_step] and len(pf._copies) == 3
    opt = torch.optim.SGD([a, b, c], lr=0.5)
    for p in (a, b, c):
        p.grad = torch.ones_like(p)
    opt.step()
    pf._after_step(opt, (), {})
    host_a, host_b, host_c = pf._copies[a][2], pf._copies[b][2], pf._copies[c][2]
    # one buffer for the fp32 slopes (one copy), another for the fp64 ones
    assert host_a.untyped_storage().data_ptr() == host_b.untyped_storage().data_ptr()
    assert host_c.untyped_storage().data_ptr() != host_a.untyped_storage().data_ptr()
    assert host_a.data_ptr() != a.data_ptr()  # a copy, not the parameter
    for p, host in ((a, host_a), (b, host_b), (c, host_c)):
        got = pf.read(p)
        assert got is host and got.shape == p.shape and torch.equal(got, p.detach())
    with torch.no_grad():
        a.mul_(-1)  # written after the step: the version moves, the copy is stale
    assert torch.equal(pf.read(a), a.detach()) and pf.read(a) is not host_a
    a.data = torch.tensor([0.5, 0.5, 0.5])  # another storage
    assert torch.equal(pf.read(a), a.detach())
    assert pf.read(b) is host_b  # untouched
