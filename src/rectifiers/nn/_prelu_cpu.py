"""Build, cache and call the fused C++ CPU kernels of PReLU (``rectifiers/csrc/prelu_cpu.cpp``).

The extension is compiled on first use with the system C++ compiler (``$CXX`` or ``c++``)
straight into a shared library that registers ``torch.ops.rectifiers_prelu.forward`` and
``.backward`` (no pybind11, no ninja: one compiler call, ~10 s of CPU time). The library is
cached per machine under ``$RECTIFIERS_CACHE`` (default ``$XDG_CACHE_HOME/rectifiers`` or
``~/.cache/rectifiers``) in a directory named by a hash of the source, the torch version, the
compiler, its flags and the CPU's instruction-set flags (it is built with ``-march=native``),
so a changed source or a different machine never loads a stale binary. Concurrent first uses
(e.g. DDP ranks) serialise on a file lock; the library is written to a temporary name and
renamed atomically.

If anything fails (no compiler, build error), :func:`available` returns ``False`` and
:func:`load_error` says why; ``rectifiers.nn.prelu`` then warns once and uses the eager path.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["available", "load_error", "layout", "forward", "backward", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_SOURCE = Path(__file__).resolve().parents[1] / "csrc" / "prelu_cpu.cpp"
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17", "-w"]

_lock = threading.Lock()
_state: dict[str, object] = {"loaded": False, "error": None}


def _cache_root() -> Path:
    env = os.environ.get("RECTIFIERS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rectifiers"


def _cpu_flags() -> str:
    # -march=native code must not run on another CPU that shares this home directory
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _compiler() -> str:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(
            f"no C++ compiler ({cxx!r} not found on PATH); install g++ (Debian: "
            "apt-get install g++) or set CXX"
        )
    return cxx


def _command(cxx: str, out: Path) -> list[str]:
    from torch.utils import cpp_extension

    inc = []
    for p in cpp_extension.include_paths():
        inc += ["-isystem", p]
    libs = []
    for p in cpp_extension.library_paths():
        libs += [f"-L{p}", f"-Wl,-rpath,{p}"]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        cxx, *_FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *inc, str(_SOURCE), "-o", str(out),
        *libs, "-lc10", "-ltorch_cpu",
    ]


def _library_path(cxx: str) -> Path:
    version = subprocess.run(
        [cxx, "--version"], capture_output=True, text=True, check=False, timeout=60
    ).stdout
    h = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), torch.__version__.encode(), version.encode(),
                 " ".join(_FLAGS).encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return _cache_root() / "ext" / f"prelu_cpu_{h.hexdigest()[:20]}" / "prelu_cpu.so"


def _build(so: Path, cxx: str) -> None:
    so.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(so.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key
        if so.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=so.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            proc = subprocess.run(
                _command(cxx, Path(tmp)), capture_output=True, text=True, check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                raise RuntimeError(f"compiling {_SOURCE.name} failed:\n{tail}")
            os.replace(tmp, so)  # atomic: a reader never sees a half-written library
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _load() -> bool:
    if _state["loaded"] or _state["error"] is not None:
        return bool(_state["loaded"])
    with _lock:
        if _state["loaded"] or _state["error"] is not None:
            return bool(_state["loaded"])
        if os.environ.get("RECTIFIERS_NO_CPP", "") not in ("", "0"):
            _state["error"] = "disabled by RECTIFIERS_NO_CPP"
            return False
        try:
            cxx = _compiler()
            so = _library_path(cxx)
            if not so.exists():
                try:
                    _build(so, cxx)
                except OSError:
                    # unwritable cache (read-only home): build into a per-user temp dir
                    so = Path(tempfile.gettempdir()) / f"rectifiers-{os.getuid()}" / (
                        so.parent.name) / so.name
                    if not so.exists():
                        _build(so, cxx)
            torch.ops.load_library(str(so))
            _state["loaded"] = True
        except Exception as e:  # any failure means: use the eager path, say why once
            _state["error"] = f"{type(e).__name__}: {e}"
    return bool(_state["loaded"])


def available() -> bool:
    """Build (first call only, cached per machine) and load the extension; ``True`` if usable."""
    return _load()


def load_error() -> str | None:
    """Why the extension is unavailable (``None`` if it loaded or was not tried yet)."""
    return _state["error"]  # type: ignore[return-value]


def layout(x: torch.Tensor, shared: bool) -> tuple[int, int] | None:
    """``(C, inner)`` viewing ``x`` as ``[outer][C][inner]`` in memory, or ``None``.

    Channel-shared: ``C = 1``, ``inner = numel`` for any dense tensor. Channel-wise (dim 1):
    NCHW-contiguous gives ``inner = prod(shape[2:])``; channels_last (rank 4/5, channel dim
    innermost) gives ``inner = 1``. Other layouts return ``None`` (the caller falls back).
    """
    if shared:
        return (1, max(x.numel(), 1)) if x.is_contiguous() or _channels_last(x) else None
    c = x.shape[1]
    if x.is_contiguous():
        inner = 1
        for d in x.shape[2:]:
            inner *= d
        return c, max(inner, 1)
    if _channels_last(x):
        return c, 1
    return None


def _channels_last(x: torch.Tensor) -> bool:
    if x.ndim == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    if x.ndim == 5:
        return x.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def forward(x: torch.Tensor, w: torch.Tensor, lay: tuple[int, int], out: torch.Tensor) -> None:
    """``out = x > 0 ? x : w_c * x`` (``out`` may be ``x``); ``w`` is ``(C,)`` in x's dtype."""
    torch.ops.rectifiers_prelu.forward(x, w, lay[0], lay[1], out)


def backward(
    g: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    mask: torch.Tensor | None,
    lay: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, dE/da)`` in one pass; ``dE/da`` is fp64, shape ``(C,)``.

    ``grad_input = pos ? g : w_c * g`` and ``dE/da_c = sum_{!pos} g * s`` with
    ``pos = mask`` if given else ``s > 0``. ``g`` is made to match ``s``'s strides first.
    """
    if g.stride() != s.stride() or g.dtype != s.dtype:
        g = torch.empty_like(s).copy_(g)  # e.g. an expanded grad from .sum().backward()
    if mask is not None and mask.stride() != s.stride():
        mask = torch.empty_like(s, dtype=torch.bool).copy_(mask)
    return torch.ops.rectifiers_prelu.backward(g, s, w, mask, lay[0], lay[1])
