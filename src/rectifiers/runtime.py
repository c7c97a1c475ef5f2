"""Where and in which precision a model runs: the device and autocast, defined once.

Every command (``train``, ``eval``, ``export``, ``bench``, the reproduction experiments and the
benchmarks) picks its device with :func:`resolve_device` and wraps forward passes in
:func:`autocast`, so ``--device`` and ``--amp`` mean the same everywhere.

* ``--device``: ``auto`` (the local CUDA device if there is one, else the CPU), ``cpu``, ``cuda``.
* ``--amp``: ``none`` (fp32), ``bf16`` (CPU and CUDA autocast), ``fp16`` (CUDA only: it needs
  a grad scaler for training).
"""

from __future__ import annotations

import contextlib
import os

import torch

from rectifiers.errors import ConfigError

__all__ = ["AMP_MODES", "DEVICES", "autocast", "check_amp", "resolve_device"]

AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the local CUDA device (``LOCAL_RANK`` under torchrun) if any, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but CUDA is not available; "
                              "use --device cpu or auto")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name not in DEVICES:
        try:
            return torch.device(name)
        except RuntimeError as e:
            raise ConfigError(f"--device {name!r} is not a device; use one of "
                              f"{', '.join(DEVICES)}") from e
    return torch.device(name)


def check_amp(device: torch.device, amp: str) -> None:
    """Raise :class:`ConfigError` for an unknown mode or fp16 without CUDA."""
    if amp not in AMP_MODES:
        raise ConfigError(f"--amp {amp!r} is not one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (it relies on a grad scaler); "
                          "on CPU use --amp bf16 or none")


def autocast(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``amp`` on ``device`` (a no-op for ``none``)."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_MODES:
        raise ConfigError(f"--amp {amp!r} is not one of {', '.join(AMP_MODES)}")
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type,
                          dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
