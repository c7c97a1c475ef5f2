"""Helpers shared by the view modes (:mod:`~rectifiers.eval.views`), dense testing
(:mod:`~rectifiers.eval.dense`) and export (:mod:`rectifiers.export`).

Kept in their own module so ``views -> dense -> common`` has no cycle.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from rectifiers.data.transforms import resize_shorter
from rectifiers.errors import ConfigError

__all__ = ["Normalize", "adaptive_bins", "prepare", "probe_writable", "softmax_scores"]

Normalize = Callable[[torch.Tensor], torch.Tensor]


def prepare(x: torch.Tensor, scale: int, normalize: Normalize | None = None) -> torch.Tensor:
    """Raw batch -> float, shorter side ``scale``, then ``normalize`` (full-image views).

    Float before resizing: resizing uint8 would round every pixel to an integer.
    """
    x = resize_shorter(x if x.is_floating_point() else x.float(), int(scale))
    return normalize(x) if normalize is not None else x


def softmax_scores(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, in at least float32 (averaging bf16/fp16 scores loses digits)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits.softmax(-1)


def adaptive_bins(size: int, n: int) -> list[tuple[int, int]]:
    """Bins of adaptive pooling along one axis of length ``size`` into ``n`` bins:
    ``[floor(i*size/n), ceil((i+1)*size/n))`` for ``i = 0..n-1`` (PyTorch's rule)."""
    return [((i * size) // n, -((-(i + 1) * size) // n)) for i in range(n)]


def probe_writable(directory: Path, what: str) -> None:
    """Raise :class:`ConfigError` (starting with ``what``, e.g. ``"--out-dir runs/x"``) unless
    files can be created in ``directory`` or, if it does not exist yet, in its first existing
    ancestor. Creates nothing that stays: a command checks this before its work, so its
    results are never lost to an unwritable output path, and a refused command leaves no
    empty directory behind."""
    anc = Path(directory)
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{what}: {anc} is a file, not a directory; choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{what}: {anc} is not writable ({e.strerror or e}); choose a "
                          f"writable location") from e
