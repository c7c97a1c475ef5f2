"""Build, cache and load the package's C++ CPU kernels (``rectifiers/csrc/*.cpp``), safely.

Each kernel source is compiled on first use with the system C++ compiler (``$CXX`` or ``c++``)
straight into a shared library that registers its ``torch.ops`` (no pybind11, no ninja: one
compiler call). The library is cached per machine under ``$RECTIFIERS_CACHE`` (default
``$XDG_CACHE_HOME/rectifiers`` or ``~/.cache/rectifiers``) in a directory named by a hash of the
source and the headers of ``csrc/``, the torch version, the compiler, its flags and the CPU's
instruction-set flags (it is built with ``-march=native``), so a changed source or a different
machine never loads a stale binary. Concurrent first uses (e.g. DDP ranks) serialise on a file
lock; the library is written to a temporary name and renamed atomically.

Security: a shared library runs code when it is loaded, so nothing is loaded that another user
could have written. Before loading, the library file and every directory from the cache root
down to it must be owned by the current user (or root) and not writable by group or others;
the cache directories are created with mode 0700. If the cache is unusable (read-only home,
foreign owner, loose permissions) the library is built into a fresh private directory made by
:func:`tempfile.mkdtemp` (mode 0700, unpredictable name) and loaded from there; nothing is ever
loaded from a predictable path in a shared temporary directory.

If anything fails (no compiler, build error), :meth:`Extension.available` returns ``False`` and
:meth:`Extension.load_error` says why; callers then warn once and use their eager path. Setting
``RECTIFIERS_NO_CPP=1`` disables every extension.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["Extension", "cache_root", "kernel_layout", "UnsafePathError"]

_CSRC = Path(__file__).resolve().parent / "csrc"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17", "-w")


class UnsafePathError(OSError):
    """A cache path another user could write to (wrong owner or group/other-writable)."""


def cache_root() -> Path:
    """The per-user cache directory (``$RECTIFIERS_CACHE`` or ``$XDG_CACHE_HOME/rectifiers``)."""
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


def compiler() -> str:
    """The C++ compiler to use, or a ``RuntimeError`` naming how to get one."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(
            f"no C++ compiler ({cxx!r} not found on PATH); install g++ (Debian: "
            "apt-get install g++) or set CXX"
        )
    return cxx


def check_private(path: Path) -> None:
    """Raise :class:`UnsafePathError` unless ``path`` is ours (or root's) and not writable by
    group or others. Symbolic links are judged by what they point to and by themselves."""
    uid = os.getuid()
    for p in (path, path.resolve()) if path.is_symlink() else (path,):
        st = os.lstat(p)
        if st.st_uid not in (uid, 0):
            raise UnsafePathError(f"{p} is owned by uid {st.st_uid}, not by this user ({uid})")
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafePathError(f"{p} is writable by group or others (mode {st.st_mode:o})")


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 where missing; never loosen existing ones."""
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)


class Extension:
    """One C++ source in ``rectifiers/csrc`` compiled into a torch ops library, loaded once."""

    def __init__(self, source: str, extra_flags: tuple[str, ...] = ()) -> None:
        self.source = _CSRC / source
        self.name = Path(source).stem
        self.flags = FLAGS + tuple(extra_flags)
        self._lock = threading.Lock()
        self._loaded = False
        self._error: str | None = None
        self.path: Path | None = None  # the library that was loaded

    # -- building ---------------------------------------------------------------------------
    def _command(self, cxx: str, out: Path) -> list[str]:
        from torch.utils import cpp_extension

        inc: list[str] = []
        for p in cpp_extension.include_paths():
            inc += ["-isystem", p]
        libs: list[str] = []
        for p in cpp_extension.library_paths():
            libs += [f"-L{p}", f"-Wl,-rpath,{p}"]
        abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
        return [
            cxx, *self.flags, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *inc, str(self.source),
            "-o", str(out), *libs, "-lc10", "-ltorch_cpu",
        ]

    def key(self, cxx: str) -> str:
        """Directory name of this build: source, torch, compiler, flags and CPU hashed."""
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, check=False, timeout=60
        ).stdout
        h = hashlib.sha256()
        # the headers of csrc/ too: a source may include them, and an edit must rebuild
        headers = b"".join(p.name.encode() + b"\0" + p.read_bytes()
                           for p in sorted(_CSRC.glob("*.h")))
        for part in (self.source.read_bytes(), headers, torch.__version__.encode(),
                     version.encode(), " ".join(self.flags).encode(), _cpu_flags().encode()):
            h.update(part)
            h.update(b"\0")
        return f"{self.name}_{h.hexdigest()[:20]}"

    def _build(self, so: Path, cxx: str) -> None:
        with open(so.parent / "build.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key
            if so.exists():
                return
            fd, tmp = tempfile.mkstemp(dir=so.parent, suffix=".so.tmp")
            os.close(fd)
            try:
                proc = subprocess.run(
                    self._command(cxx, Path(tmp)), capture_output=True, text=True,
                    check=False, timeout=900,
                )
                if proc.returncode != 0:
                    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                    raise RuntimeError(f"compiling {self.source.name} failed:\n{tail}")
                os.chmod(tmp, 0o700)
                os.replace(tmp, so)  # atomic: a reader never sees a half-written library
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _cached_library(self, cxx: str) -> Path:
        """Build into (or find in) the per-user cache; raises ``OSError`` if it is unusable."""
        d = cache_root()
        _private_dir(d)
        check_private(d)  # before anything is created inside it
        for part in ("ext", self.key(cxx)):
            d = d / part
            _private_dir(d)
            check_private(d)
        so = d / f"{self.name}.so"
        if not so.exists():
            self._build(so, cxx)
        check_private(so)
        return so

    def _private_library(self, cxx: str) -> Path:
        """Build into a fresh private temporary directory (mode 0700, unpredictable name)."""
        d = Path(tempfile.mkdtemp(prefix=f"rectifiers-{self.name}-"))
        so = d / f"{self.name}.so"
        self._build(so, cxx)
        check_private(d)
        check_private(so)
        return so

    # -- loading ----------------------------------------------------------------------------
    def available(self) -> bool:
        """Build (first call only, cached per machine) and load; ``True`` if usable."""
        if self._loaded or self._error is not None:
            return self._loaded
        with self._lock:
            if self._loaded or self._error is not None:
                return self._loaded
            if os.environ.get("RECTIFIERS_NO_CPP", "") not in ("", "0"):
                self._error = "disabled by RECTIFIERS_NO_CPP"
                return False
            try:
                cxx = compiler()
                try:
                    so = self._cached_library(cxx)
                except OSError:  # read-only, foreign or loose cache: build privately instead
                    so = self._private_library(cxx)
                torch.ops.load_library(str(so))
                self.path = so
                self._loaded = True
            except Exception as e:  # any failure means: use the eager path, say why once
                self._error = f"{type(e).__name__}: {e}"
        return self._loaded

    def load_error(self) -> str | None:
        """Why the extension is unavailable (``None`` if it loaded or was not tried yet)."""
        return self._error


def kernel_layout(x: torch.Tensor, shared: bool) -> tuple[int, int] | None:
    """``(C, inner)`` viewing ``x`` as ``[outer][C][inner]`` in memory, or ``None``: how every
    kernel of ``csrc/`` walks a tensor with a per-channel parameter.

    Channel-shared: ``C = 1``, ``inner = numel`` for any dense tensor. Channel-wise (dim 1):
    NCHW-contiguous gives ``inner = prod(shape[2:])``; channels_last (rank 4/5, channel dim
    innermost) gives ``inner = 1``. Other layouts return ``None`` (the caller falls back).
    """
    channels_last = (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)) or (
        x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d))
    if shared:
        return (1, max(x.numel(), 1)) if x.is_contiguous() or channels_last else None
    c = x.shape[1]
    if x.is_contiguous():
        inner = 1
        for d in x.shape[2:]:
            inner *= d
        return c, max(inner, 1)
    return (c, 1) if channels_last else None
