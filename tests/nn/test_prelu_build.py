"""The C++ kernel cache is private (issue 10, security part; ``rectifiers._cpp``).

A shared library runs code when it is loaded, so the builder must never load one that another
user could have written: cache directories writable by group/others or owned by another uid
are refused, the private ``mkdtemp`` fallback is used instead, and nothing is ever loaded from
a predictable shared path such as ``$TMPDIR/rectifiers-<uid>``. These tests replace the
compiler call and ``torch.ops.load_library`` with recorders, so they run without compiling;
the one real build is marked slow.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rectifiers import _cpp
from rectifiers._cpp import Extension, UnsafePathError, check_private


@pytest.fixture
def fake_build(monkeypatch):
    """Extension builds write a dummy file; loads are recorded instead of executed."""
    loaded: list[Path] = []
    built: list[Path] = []

    def build(self, so: Path, cxx: str) -> None:
        so.write_bytes(b"not a library")
        os.chmod(so, 0o700)
        built.append(so)

    monkeypatch.setattr(Extension, "_build", build)
    monkeypatch.setattr(Extension, "key", lambda self, cxx: f"{self.name}_testkey")
    monkeypatch.setattr(_cpp, "compiler", lambda: "c++")
    monkeypatch.setattr(_cpp.torch.ops, "load_library", lambda p: loaded.append(Path(p)))
    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    return built, loaded


def _private(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _fake_owner(monkeypatch, under: Path, uid: int = 4242) -> None:
    """Make every path at or below ``under`` look owned by ``uid`` (we run as any user)."""
    real = os.lstat
    prefix = os.path.abspath(under)

    def lstat(p, *a, **k):
        st = real(p, *a, **k)
        path = os.path.abspath(os.fspath(p))  # no syscalls: resolve() would recurse into lstat
        if path == prefix or path.startswith(prefix + os.sep):
            fields = list(st)
            fields[stat.ST_UID] = uid
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "getuid", lambda: 1000 if uid != 1000 else 1001)


# ------------------------------------------------------------------------ check_private


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722, 0o702])
def test_directory_writable_by_group_or_others_is_refused(tmp_path, mode):
    d = tmp_path / "loose"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(UnsafePathError, match="writable by group or others"):
        check_private(d)


def test_private_directory_and_file_are_accepted(tmp_path):
    d = _private(tmp_path / "mine")
    f = d / "lib.so"
    f.write_bytes(b"x")
    os.chmod(f, 0o700)
    check_private(d)
    check_private(f)


def test_path_owned_by_another_uid_is_refused(tmp_path, monkeypatch):
    d = _private(tmp_path / "theirs")
    _fake_owner(monkeypatch, d)
    with pytest.raises(UnsafePathError, match="owned by uid 4242"):
        check_private(d)


def test_symlink_to_a_loose_directory_is_refused(tmp_path):
    target = tmp_path / "shared"
    target.mkdir()
    os.chmod(target, 0o777)
    link = _private(tmp_path / "cache") / "ext"
    link.symlink_to(target)
    with pytest.raises(UnsafePathError):
        check_private(link)


# ---------------------------------------------------------------------- Extension loading


def test_private_cache_is_used_and_created_0700(tmp_path, monkeypatch, fake_build):
    built, loaded = fake_build
    root = tmp_path / "cache"
    monkeypatch.setenv("RECTIFIERS_CACHE", str(root))
    ext = Extension("prelu_cpu.cpp")
    assert ext.available(), ext.load_error()
    assert loaded == [root / "ext" / "prelu_cpu_testkey" / "prelu_cpu.so"]
    for d in (root, root / "ext", root / "ext" / "prelu_cpu_testkey"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    # a second extension object finds the cached library without building again
    ext2 = Extension("prelu_cpu.cpp")
    assert ext2.available() and len(built) == 1 and loaded[-1] == loaded[0]


@pytest.mark.parametrize("where", ["root", "leaf_dir", "library"])
def test_loose_cache_falls_back_to_a_fresh_private_directory(tmp_path, monkeypatch, fake_build,
                                                             where):
    built, loaded = fake_build
    root = _private(tmp_path / "cache")
    leaf = _private(root / "ext" / "prelu_cpu_testkey")
    os.chmod(root / "ext", 0o700)
    planted = leaf / "prelu_cpu.so"
    planted.write_bytes(b"planted")
    os.chmod(planted, 0o700)
    os.chmod({"root": root, "leaf_dir": leaf, "library": planted}[where], 0o777)
    monkeypatch.setenv("RECTIFIERS_CACHE", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(_private(tmp_path / "tmp")))
    ext = Extension("prelu_cpu.cpp")
    assert ext.available(), ext.load_error()
    (lib,) = loaded
    assert lib != planted and not lib.is_relative_to(root)
    assert lib.parent.parent == tmp_path / "tmp" and lib.parent.name.startswith("rectifiers-")
    assert stat.S_IMODE(os.stat(lib.parent).st_mode) == 0o700
    assert built == [lib]


def test_cache_owned_by_another_user_falls_back(tmp_path, monkeypatch, fake_build):
    _, loaded = fake_build
    root = _private(tmp_path / "cache")
    monkeypatch.setenv("RECTIFIERS_CACHE", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(_private(tmp_path / "tmp")))
    _fake_owner(monkeypatch, root)
    ext = Extension("prelu_cpu.cpp")
    assert ext.available(), ext.load_error()
    (lib,) = loaded
    assert not lib.is_relative_to(root) and lib.is_relative_to(tmp_path / "tmp")


def test_never_loads_from_the_predictable_shared_tmp_path(tmp_path, monkeypatch, fake_build):
    """An attacker pre-creates $TMPDIR/rectifiers-<uid>/... with a library: never used."""
    _, loaded = fake_build
    tmp = _private(tmp_path / "tmp")
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    trap = tmp / f"rectifiers-{os.getuid()}"
    for sub in ("", "ext", "ext/prelu_cpu_testkey"):
        (trap / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(trap / sub, 0o777)
    (trap / "ext" / "prelu_cpu_testkey" / "prelu_cpu.so").write_bytes(b"evil")
    # an unusable cache: read-only parent, so the builder must take its fallback
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o777)
    monkeypatch.setenv("RECTIFIERS_CACHE", str(ro / "cache"))
    ext = Extension("prelu_cpu.cpp")
    assert ext.available(), ext.load_error()
    (lib,) = loaded
    assert not lib.is_relative_to(trap)
    assert lib.parent != tmp / "rectifiers" and lib.parent.name != f"rectifiers-{os.getuid()}"


def test_no_cpp_environment_disables_without_building(monkeypatch, fake_build):
    built, loaded = fake_build
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    ext = Extension("prelu_cpu.cpp")
    assert not ext.available()
    assert "RECTIFIERS_NO_CPP" in ext.load_error()
    assert built == [] and loaded == []


def test_no_compiler_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "definitely-not-a-compiler-xyz")
    monkeypatch.setenv("RECTIFIERS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    ext = Extension("prelu_cpu.cpp")
    assert not ext.available()
    assert "no C++ compiler" in ext.load_error()


def test_no_cpp_env_gives_the_eager_prelu_with_one_warning():
    """RECTIFIERS_NO_CPP=1 in a fresh process: one RuntimeWarning, F.prelu's values."""
    code = (
        "import warnings, torch; import torch.nn.functional as F\n"
        "from rectifiers.nn import PReLU\n"
        "x = torch.randn(2, 3, 4, 4); m = PReLU(3)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    y = m(x); y2 = m(x)\n"
        "msgs = [str(v.message) for v in w if issubclass(v.category, RuntimeWarning)]\n"
        "assert len(msgs) == 1 and 'RECTIFIERS_NO_CPP' in msgs[0], msgs\n"
        "assert torch.equal(y, F.prelu(x, m.weight.detach()))\n"
    )
    env = dict(os.environ, RECTIFIERS_NO_CPP="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)


@pytest.mark.slow
def test_real_build_with_a_loose_cache_uses_the_private_fallback(tmp_path):
    """A real compile (minutes on a loaded 2-core machine): the library is built and loaded
    from a fresh private directory when the configured cache is world-writable."""
    try:
        _cpp.compiler()
    except RuntimeError as e:
        pytest.skip(str(e))
    loose = tmp_path / "cache"
    loose.mkdir()
    os.chmod(loose, 0o777)
    code = (
        "import torch; from rectifiers.nn import _prelu_cpu as m\n"
        "assert m.available(), m.load_error()\n"
        "print(m.EXTENSION.path)\n"
    )
    env = dict(os.environ, RECTIFIERS_CACHE=str(loose), TMPDIR=str(_private(tmp_path / "t")))
    env.pop("RECTIFIERS_NO_CPP", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=1800,
                         capture_output=True, text=True).stdout.strip()
    lib = Path(out)
    assert lib.is_relative_to(tmp_path / "t") and not list(loose.iterdir())


def test_build_key_covers_the_headers_of_csrc(tmp_path, monkeypatch):
    """A source may include csrc/*.h: editing a header must give a new key (a rebuild)."""
    import shutil

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "k.cpp").write_text('#include "k.h"\n')
    header = tmp_path / "k.h"
    header.write_text("inline int f() { return 1; }\n")
    monkeypatch.setattr(_cpp, "_CSRC", tmp_path)
    ext = _cpp.Extension("k.cpp")
    k1 = ext.key("c++")
    assert ext.key("c++") == k1  # stable
    header.write_text("inline int f() { return 2; }\n")
    assert ext.key("c++") != k1
