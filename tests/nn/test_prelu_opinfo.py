"""PyTorch's own PReLU checks, run against ``rectifiers.nn.PReLU`` / ``functional.prelu``.

The installed torch's OpInfo ``nn.functional.prelu`` (sample, reference and error inputs) and
ModuleInfo ``nn.PReLU`` (module inputs) go through the checks ``test_ops``,
``test_ops_gradients``, ``test_ops_fwd_gradients`` and ``test_modules`` apply: values and
first-order gradients against ``F.prelu`` (fp32/fp64/bf16/fp16), gradcheck, gradgradcheck
(reverse over reverse and forward over reverse), forward-mode AD, batched gradients (vmap),
the exception type of every error input, and the module checks -- for both backends
(``cpp``, ``eager``) and both in-place settings. The double-backward sweep over every sample is
marked slow; the default run keeps one backend of it.

Every check runs on each available device: CPU always, CUDA where a GPU is present (there the
operators take their portable kernels; ``backend`` only chooses the CPU kernels).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from rectifiers.nn import PReLU
from rectifiers.nn import prelu as prelu_mod
from rectifiers.nn.functional import prelu

pytest.importorskip("expecttest")  # torch.testing._internal needs it (dev dependency)
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402
from torch.testing._internal.common_modules import module_db  # noqa: E402

OP = next(o for o in op_db if o.name == "nn.functional.prelu")
MODULE = next(m for m in module_db if m.module_cls is torch.nn.PReLU)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=["cpp", "eager"])
def backend(request, monkeypatch, device):
    if request.param == "cpp" and device == "cpu":
        from rectifiers.nn import _prelu_cpu

        if not _prelu_cpu.available():
            pytest.skip(f"C++ PReLU extension unavailable: {_prelu_cpu.load_error()}")
    monkeypatch.setattr(prelu_mod, "_backend", request.param)
    return request.param


def _split(sample):
    """``(x, weight)`` of an OpInfo sample (the weight is positional or a keyword)."""
    w = sample.args[0] if sample.args else sample.kwargs["weight"]
    return sample.input, w


def _ours(inplace: bool):
    def fn(x, w):
        # in place needs a non-leaf input and must not write into the sample
        return prelu(x.clone() if inplace else x, w, inplace=inplace)

    return fn


def _grads(fn, x, w, g):
    x = x.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    y = fn(x, w)
    y.backward(g)
    return y.detach(), x.grad, w.grad


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal, nan equal to nan (the same selects as ATen)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.nan_to_num(7.0), b.nan_to_num(7.0)
    )


# ------------------------------------------------------------------------------- OpInfo


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_inputs_values_and_first_order_grads(backend, device, inplace, dtype):
    """test_ops' reference checks: values and gradients equal ``F.prelu``'s."""
    gen = torch.Generator().manual_seed(0)
    n = 0
    for sample in OP.reference_inputs(device, dtype, requires_grad=True):
        x, w = _split(sample)
        g = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
        y_r, gx_r, gw_r = _grads(F.prelu, x, w, g)
        y_o, gx_o, gw_o = _grads(_ours(inplace), x, w, g)
        assert _same(y_o, y_r), sample
        assert _same(gx_o, gx_r), sample
        # slope gradient: the same per-element terms, summed in another order (ours in fp32
        # or fp64, ATen's in its own order): within a few roundings of the terms' magnitude
        dims = [d for d in range(x.ndim) if w.numel() == 1 or d != 1]
        terms = (g.double() * x.detach().double().clamp(max=0)).abs()
        scale = terms.sum(dims).reshape(gw_r.shape) if dims else terms.reshape(gw_r.shape)
        eps = torch.finfo(dtype).eps
        diff = (gw_o.double() - gw_r.double()).abs()
        finite = torch.isfinite(gw_r)
        assert gw_o.dtype == gw_r.dtype and gw_o.shape == gw_r.shape
        assert torch.equal(finite, torch.isfinite(gw_o)), sample
        assert torch.all(diff[finite] <= 4 * eps * scale[finite] + 1e-30), sample
        n += 1
    assert n > 50  # the reference set really ran


def _gradcheck_samples(device):
    return list(OP.sample_inputs(device, torch.float64, requires_grad=True))


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_sample_inputs_gradcheck_forward_ad_batched(backend, device, inplace):
    """test_ops_gradients / test_ops_fwd_gradients: gradcheck with forward-mode AD and
    batched (vmap) gradients, as torch runs them for ``nn.functional.prelu``."""
    for sample in _gradcheck_samples(device):
        x, w = _split(sample)
        w = w.detach().requires_grad_()
        assert gradcheck(
            _ours(inplace), (x, w), check_forward_ad=True, check_batched_grad=True,
            check_batched_forward_grad=True,
        ), sample


def _gradgrad_all(device, inplace, full=True):
    for sample in _gradcheck_samples(device):
        x, w = _split(sample)
        w = w.detach().requires_grad_()
        assert gradgradcheck(
            _ours(inplace), (x, w), check_fwd_over_rev=full, check_rev_over_rev=True,
            check_batched_grad=full,
        ), sample


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_sample_inputs_gradgradcheck_cpp(device, inplace):
    """test_ops_gradients' gradgrad, default backend (the slow sweep adds the eager backend,
    forward over reverse (fwgrad_bwgrad) and batched second-order gradients)."""
    from rectifiers.nn import _prelu_cpu

    if device == "cpu" and not _prelu_cpu.available():
        pytest.skip(f"C++ PReLU extension unavailable: {_prelu_cpu.load_error()}")
    _gradgrad_all(device, inplace, full=False)


@pytest.mark.slow
@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_sample_inputs_gradgradcheck_every_backend(backend, device, inplace):
    _gradgrad_all(device, inplace)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_error_inputs_raise_torch_exception_type(backend, device, inplace):
    """test_ops' error inputs: the exception type torch raises, with our message, and an
    in-place call leaves its input untouched."""
    n = 0
    for err in OP.error_inputs(device):
        x, w = _split(err.sample_input)
        with pytest.raises(err.error_type):
            F.prelu(x, w)
        before = x.clone()
        with pytest.raises(err.error_type, match="PReLU") as info:
            prelu(x, w, inplace=inplace)
        assert type(info.value) is err.error_type
        assert torch.equal(x, before)
        n += 1
    assert n == 3


@pytest.mark.parametrize(
    "x, w",
    [
        (torch.ones(3, dtype=torch.long), torch.ones(1, dtype=torch.long)),
        (torch.ones(3, dtype=torch.long), torch.ones(1)),
        (torch.ones(2, 3), torch.ones(1, dtype=torch.long)),
        (torch.ones(4), torch.ones(4)),
        (torch.ones(3), 0.25),
        (torch.ones(3, device="meta"), torch.ones(1)),
        (torch.ones(3, dtype=torch.complex64), torch.ones(1, dtype=torch.complex64)),
    ],
    ids=["int", "int-float", "float-int", "1d-multi", "non-tensor", "device", "complex"],
)
def test_more_bad_inputs_raise_torch_exception_type(x, w):
    with pytest.raises(Exception) as ref:
        F.prelu(x, w)
    with pytest.raises(type(ref.value)) as info:
        prelu(x, w)
    assert type(info.value) is type(ref.value)


# ----------------------------------------------------------------------------- ModuleInfo


def _module_inputs(dtype, device):
    return MODULE.module_inputs_func(
        MODULE, device=device, dtype=dtype, requires_grad=True, training=True
    )


def _twins(module_input, dtype, device, inplace, init_only=False):
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    torch.manual_seed(0)
    ref = torch.nn.PReLU(*args, **kwargs, device=device, dtype=dtype)
    ours = PReLU(*args, **kwargs, inplace=inplace, device=device, dtype=dtype)
    if init_only:
        return ours, ref
    with torch.no_grad():
        ref.weight.uniform_(-0.5, 0.9)  # mixed signs: every in-place save mode
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _run(module, x, inplace):
    return module(x.clone() if inplace else x)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_module_inputs_forward_grads_factory_and_layouts(backend, device, inplace, dtype):
    """test_modules: forward (and reference_fn), factory kwargs, state_dict, repr, gradients,
    non-contiguous and channels_last inputs."""
    n = 0
    for mi in _module_inputs(dtype, device):
        if mi.reference_fn is not None:
            # torch's reference functions assume the initial (equal) slopes
            fresh, _ = _twins(mi, dtype, device, inplace, init_only=True)
            xin = mi.forward_input.args[0].detach()
            expect = mi.reference_fn(fresh, xin)
            torch.testing.assert_close(_run(fresh, xin, inplace), expect)
        ours, ref = _twins(mi, dtype, device, inplace)
        assert ours.weight.dtype == dtype and ours.weight.shape == ref.weight.shape
        assert ours.weight.device == mi.forward_input.args[0].device
        assert list(ours.state_dict()) == list(ref.state_dict())
        assert repr(ours).startswith("PReLU(num_parameters=")
        x = mi.forward_input.args[0]
        g = torch.randn(x.shape, dtype=dtype, device=device)
        variants = [x]
        if x.ndim >= 1 and x.numel() > 1:
            variants.append(x.detach().repeat_interleave(2, dim=-1)[..., ::2])  # strided
        if x.ndim in (4, 5):
            fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
            variants.append(x.detach().to(memory_format=fmt))
        for xv in variants:
            xo = xv.detach().clone().requires_grad_()
            xr = xv.detach().clone().requires_grad_()
            y_o, y_r = _run(ours, xo, inplace), ref(xr)
            assert _same(y_o, y_r), mi.desc
            ours.zero_grad()
            ref.zero_grad()
            y_o.backward(g)
            y_r.backward(g)
            assert _same(xo.grad, xr.grad), mi.desc
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
        n += 1
    assert n == 8


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_module_inputs_gradcheck_and_gradgradcheck(backend, device, inplace):
    """test_modules' test_grad / test_gradgrad: input and parameters, through
    ``torch.func.functional_call`` as torch does."""
    for mi in _module_inputs(torch.float64, device):
        ours, _ = _twins(mi, torch.float64, device, inplace)
        x = mi.forward_input.args[0]
        w = ours.weight.detach().clone().requires_grad_()

        def fn(x, w, ours=ours):
            xin = x.clone() if inplace else x
            return torch.func.functional_call(ours, {"weight": w}, (xin,))

        assert gradcheck(fn, (x, w), check_forward_ad=True, fast_mode=True), mi.desc
        assert gradgradcheck(fn, (x, w), fast_mode=True), mi.desc


# vmap over the slopes: torch's own _prelu_kernel batch rule warns about a resized output
@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
def test_torch_func_matches_torch_nn_prelu(device):
    """grad, vmap, jacrev, jvp and functional_call give torch.nn.PReLU's results."""
    torch.manual_seed(0)
    ours, ref = PReLU(3).to(device), torch.nn.PReLU(3).to(device)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.25, -0.5, 0.1]))
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 2, 3, 5).to(device)

    def loss(module, params, x):
        return torch.func.functional_call(module, params, (x,)).pow(2).sum()

    p_o, p_r = dict(ours.named_parameters()), dict(ref.named_parameters())
    g_o = torch.func.grad(functools.partial(loss, ours))(p_o, x[0])
    g_r = torch.func.grad(functools.partial(loss, ref))(p_r, x[0])
    torch.testing.assert_close(g_o["weight"], g_r["weight"])
    assert torch.equal(torch.func.vmap(ours)(x), torch.func.vmap(ref)(x))
    inpl = PReLU(3, inplace=True).to(device)
    inpl.load_state_dict(ref.state_dict())
    assert torch.equal(torch.func.vmap(lambda t: inpl(t * 1))(x), torch.func.vmap(ref)(x))
    w0 = ref.weight.detach()
    j_o = torch.func.jacrev(lambda w: prelu(x[0], w))(w0)
    j_r = torch.func.jacrev(lambda w: F.prelu(x[0], w))(w0)
    torch.testing.assert_close(j_o, j_r)
    jx_o = torch.func.jacrev(lambda t: prelu(t, w0))(x[0])
    jx_r = torch.func.jacrev(lambda t: F.prelu(t, w0))(x[0])
    assert torch.equal(jx_o, jx_r)
    t = torch.randn_like(x)
    for inplace in (False, True):
        out_o = torch.func.jvp(
            lambda v, i=inplace: prelu(v * 1, w0, inplace=i), (x[0],), (t[0],)
        )
        out_r = torch.func.jvp(lambda v: F.prelu(v, w0), (x[0],), (t[0],))
        assert torch.equal(out_o[0], out_r[0]) and torch.equal(out_o[1], out_r[1])
    # vmap over the slopes, and over both
    ws = torch.rand(5, 3).to(device)
    torch.testing.assert_close(
        torch.func.vmap(lambda w: prelu(x[0], w))(ws), torch.stack([F.prelu(x[0], w) for w in ws])
    )
    xs = torch.randn(5, 2, 3, 4).to(device)
    torch.testing.assert_close(
        torch.func.vmap(prelu)(xs, ws),
        torch.stack([F.prelu(a, b) for a, b in zip(xs, ws, strict=True)]),
    )


def test_registered_operators_under_vmap_and_forward_ad(device):
    """The operators themselves (not only the Python wrapper) have vmap and forward AD."""
    torch.manual_seed(0)
    x, w = torch.randn(6, 2, 3, 4).to(device), torch.tensor([0.2, -0.3, 0.5], device=device)
    ref = torch.stack([F.prelu(v, w) for v in x])
    assert torch.equal(torch.func.vmap(torch.ops.rectifiers.prelu, (0, None))(x, w), ref)
    ws = torch.rand(6, 3).to(device)
    got = torch.func.vmap(torch.ops.rectifiers.prelu, (None, 0))(x[0], ws)
    torch.testing.assert_close(got, torch.stack([F.prelu(x[0], v) for v in ws]))
    xb = x.clone()
    torch.func.vmap(torch.ops.rectifiers.prelu_, (0, None))(xb, w)
    assert torch.equal(xb, ref)
    import torch.autograd.forward_ad as fwad

    x0 = x[0]
    t = torch.randn_like(x0)
    with fwad.dual_level():
        for op in (torch.ops.rectifiers.prelu, lambda a, b: torch.ops.rectifiers.prelu_(a * 1, b)):
            y = op(fwad.make_dual(x0, t), w)
            tangent = fwad.unpack_dual(y).tangent
            assert torch.equal(tangent, torch.where(x0 > 0, t, t * w.reshape(1, 3, 1)))
