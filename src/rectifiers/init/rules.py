"""The initialisation rules, one in-place function per rule, read like ``torch.nn.init``.

Notation follows the paper (Sec. 2.2): ``n = k^2 c`` the fan-in of a conv weight (Eq. 10),
``n^ = k^2 d`` its fan-out (Eq. 14), ``a`` the initial negative slope of the rectifier after
the layer (Eq. 15). Every function takes ``generator`` (a ``torch.Generator`` or an int seed)
and is then deterministic; a CPU generator also works for weights on another device (the draw
is made on the CPU and copied), so seeded runs give the same weights on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from rectifiers.init.gain import activation_gain

__all__ = [
    "FAN_MODES",
    "Generator",
    "calculate_fan",
    "default_",
    "he_normal_",
    "he_uniform_",
    "lecun_normal_",
    "orthogonal_",
    "xavier_normal_",
    "xavier_uniform_",
]

FAN_MODES = ("fan_in", "fan_out")
_XAVIER_MODES = ("fan_in", "fan_out", "fan_avg")

Generator = torch.Generator | int | None


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _as_generator(generator: Generator) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(
        f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}"
    )


def _check_weight(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 2:
        raise ValueError(
            f"{name}: fan-in/fan-out need a weight with at least 2 dimensions "
            f"(linear: (out, in), conv: (out, in/groups, *kernel)); got shape {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise TypeError(f"{name}: weight must be floating point, got {tensor.dtype}")


def _fill_random_(
    tensor: torch.Tensor, kind: str, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Fill with N(0, scale^2) (kind 'normal') or U(-scale, scale) (kind 'uniform')."""
    with torch.no_grad():
        if generator is not None and generator.device != tensor.device:
            # Draw where the generator lives so a seed means the same weights on every device.
            src = torch.empty(tensor.shape, dtype=torch.float32, device=generator.device)
            _fill_random_(src, kind, scale, generator)
            return tensor.copy_(src)
        if kind == "normal":
            return tensor.normal_(0.0, scale, generator=generator)
        return tensor.uniform_(-scale, scale, generator=generator)


def calculate_fan(tensor: torch.Tensor, mode: str = "fan_in", groups: int = 1) -> int:
    """Fan of a linear ``(out, in)`` or conv ``(out, in/groups, *kernel)`` weight.

    ``fan_in = (c_in/groups) * prod(kernel)`` is Eq. 10's ``n = k^2 c``: the number of inputs one
    output sums. ``fan_out = (c_out/groups) * prod(kernel)`` is Eq. 14's ``n^ = k^2 d``: the
    number of outputs one input feeds. For a grouped conv pass ``groups`` so the fan-out counts
    only the filters of the input's own group (``torch.nn.init`` uses ``c_out * prod(kernel)``
    there, which overstates it by the group count). Strides are ignored, as in the paper.

    Example:
        >>> calculate_fan(torch.empty(64, 3, 7, 7), "fan_out")
        3136
    """
    _check_weight(tensor, "calculate_fan")
    if mode not in FAN_MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {FAN_MODES}")
    if groups < 1 or tensor.shape[0] % groups != 0:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide the output channels ({tensor.shape[0]})"
        )
    receptive = math.prod(tensor.shape[2:])
    if mode == "fan_in":
        return int(tensor.shape[1] * receptive)
    return int(tensor.shape[0] // groups * receptive)


def _fan(tensor: torch.Tensor, mode: str, groups: int, allowed: Sequence[str], name: str) -> float:
    if mode not in allowed:
        raise ValueError(f"{name}: unknown mode {mode!r}; use one of {tuple(allowed)}")
    _check_weight(tensor, name)
    if mode == "fan_avg":
        fan_in = calculate_fan(tensor, "fan_in", groups)
        return (fan_in + calculate_fan(tensor, "fan_out", groups)) / 2
    return calculate_fan(tensor, mode, groups)


# --------------------------------------------------------------------------------------
# the paper's rule
# --------------------------------------------------------------------------------------
def he_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""He et al. 2015 (Eq. 10 / 14 / 15): fill ``tensor`` with N(0, std^2),

    ``std = sqrt(2 / ((1 + a^2) n))``,

    with ``n = k^2 c_in`` for ``mode="fan_in"`` (forward case, Eq. 10: keeps Var[y_l] constant)
    or ``n = k^2 c_out`` for ``mode="fan_out"`` (backward case, Eq. 14: keeps Var[dx_l]
    constant; the paper used it for its large models). ``a`` is the initial negative slope of
    the rectifier after the layer (Eq. 15: ``1/2 (1 + a^2) n Var[w] = 1``; ``a = 0`` is ReLU,
    ``a = 1`` the linear case = Xavier's forward rule). ``groups``: see :func:`calculate_fan`.

    Example:
        >>> w = torch.empty(128, 64, 3, 3)
        >>> he_normal_(w, a=0.25, mode="fan_out")  # PReLU(0.25), std = sqrt(2/1.0625/1152)
    """
    fan = _fan(tensor, mode, groups, FAN_MODES, "he_normal_")
    std = math.sqrt(2.0 / ((1.0 + a * a) * fan))
    return _fill_random_(tensor, "normal", std, _as_generator(generator))


def he_uniform_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""He rule with a uniform draw: U(-b, b), ``b = sqrt(3) * std = sqrt(6 / ((1 + a^2) n))``.

    Same variance as :func:`he_normal_` (Eq. 10 / 14 / 15); only the distribution differs.

    Example:
        >>> w = torch.empty(256, 512)
        >>> he_uniform_(w)  # bound sqrt(6/512)
    """
    fan = _fan(tensor, mode, groups, FAN_MODES, "he_uniform_")
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan))
    return _fill_random_(tensor, "uniform", bound, _as_generator(generator))


# --------------------------------------------------------------------------------------
# neighbours
# --------------------------------------------------------------------------------------
def xavier_normal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    mode: str = "fan_avg",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""Xavier / Glorot normal: N(0, gain^2 / n).

    * ``mode="fan_avg"`` (default): Glorot & Bengio's rule, ``Var = 2 / (fan_in + fan_out)``.
    * ``mode="fan_in"`` / ``"fan_out"``: the paper's Gaussian, one-direction adaptation
      ``N(0, 1/n)`` (Sec. 2.2, footnote 3), which under ReLU shrinks the signal by ``2^(-1/2)``
      per layer (Eq. 8 with ``n Var[w] = 1``).

    Example:
        >>> w = torch.empty(256, 256, 2, 2)
        >>> xavier_normal_(w, mode="fan_in")  # the paper's "Xavier" of Figs. 2-3
    """
    n = _fan(tensor, mode, groups, _XAVIER_MODES, "xavier_normal_")
    return _fill_random_(tensor, "normal", gain / math.sqrt(n), _as_generator(generator))


def xavier_uniform_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    mode: str = "fan_avg",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""Xavier / Glorot uniform: U(-b, b), ``b = gain * sqrt(3 / n)`` (variance ``gain^2/n``).

    With the default ``mode="fan_avg"`` this is Glorot & Bengio's own rule,
    ``b = gain * sqrt(6 / (fan_in + fan_out))``; ``"fan_in"`` gives Caffe's ``xavier`` filler.

    Example:
        >>> w = torch.empty(10, 4096)
        >>> xavier_uniform_(w)  # bound sqrt(6/4106)
    """
    n = _fan(tensor, mode, groups, _XAVIER_MODES, "xavier_uniform_")
    return _fill_random_(tensor, "uniform", gain * math.sqrt(3.0 / n), _as_generator(generator))


def lecun_normal_(tensor: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    r"""LeCun normal: N(0, 1 / fan_in), the init SELU's self-normalisation assumes.

    Example:
        >>> w = torch.empty(64, 32)
        >>> lecun_normal_(w)  # std 1/sqrt(32)
    """
    n = _fan(tensor, "fan_in", 1, FAN_MODES, "lecun_normal_")
    return _fill_random_(tensor, "normal", 1.0 / math.sqrt(n), _as_generator(generator))


def default_(
    tensor: torch.Tensor, bias: torch.Tensor | None = None, generator: Generator = None
) -> torch.Tensor:
    r"""PyTorch's Conv/Linear ``reset_parameters``: weight, bias ~ U(-b, b), b = 1/sqrt(fan_in).

    (``kaiming_uniform_(a=sqrt(5))`` reduces to this bound.) Variance ``1/(3 fan_in)``, so its
    std is ``sqrt(6)`` below He's: what most users get without thinking. Reimplemented here so a
    ``generator`` makes it deterministic.

    Example:
        >>> lin = nn.Linear(20, 30)
        >>> default_(lin.weight, lin.bias, generator=0)
    """
    g = _as_generator(generator)
    bound = 1.0 / math.sqrt(_fan(tensor, "fan_in", 1, FAN_MODES, "default_"))
    _fill_random_(tensor, "uniform", bound, g)
    if bias is not None:
        _fill_random_(bias, "uniform", bound, g)
    return tensor


def orthogonal_(
    tensor: torch.Tensor,
    gain: float | str | nn.Module | Callable[..., torch.Tensor] = 1.0,
    generator: Generator = None,
) -> torch.Tensor:
    r"""Fill with ``gain * Q``, Q a (semi-)orthogonal matrix (Saxe et al. 2014).

    The weight is viewed as ``(out, in*prod(kernel))``; Q comes from the QR decomposition of a
    Gaussian matrix with the signs of R's diagonal folded in, so Q is Haar-distributed. ``gain``
    is a number or an activation (registry name, module, callable); an activation is turned into
    :func:`activation_gain` ``= 1/sqrt(E[phi(z)^2])`` (sqrt(2) for ReLU: the paper's factor).

    Example:
        >>> w = torch.empty(256, 128, 3, 3)
        >>> orthogonal_(w, gain="relu")
    """
    _check_weight(tensor, "orthogonal_")
    if not isinstance(gain, (int, float)):
        gain = activation_gain(gain)
    g = _as_generator(generator)
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    device = g.device if g is not None else tensor.device
    flat = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float64, device=device)
    flat.normal_(0.0, 1.0, generator=g)
    q, r = torch.linalg.qr(flat)
    # QR is unique only up to column signs; fixing sign(diag R) makes Q uniform (Haar).
    q = q * torch.where(torch.diagonal(r) >= 0, 1.0, -1.0)
    if rows < cols:
        q = q.T
    with torch.no_grad():
        tensor.copy_((gain * q).reshape(tensor.shape))
    return tensor
