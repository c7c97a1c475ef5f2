"""Atomic file writes: nothing a user saves is ever half-written.

Every writer in the package (checkpoints, run logs, reports, plots, exports, IDX files) goes
through :func:`atomic_path`: write to a temporary file in the target's directory, fsync it,
``os.replace`` it over the target (atomic on POSIX and Windows within one file system), then
fsync the directory so the rename itself survives a crash. On any error the temporary file is
removed and the old target, if any, is untouched.

Errors the user can fix become one clear :class:`~rectifiers.errors.UserError` naming the path
(they are also :class:`OSError`, so code that catches ``OSError`` keeps working):

* :class:`DiskFullError` -- the disk (or quota, or the file size limit) filled up during the
  write;
* :class:`FileWriteError` -- the target's directory cannot be created or written (permissions,
  read-only file system, a parent that is a file), or the target is a directory.

A process killed mid-write leaves a temporary ``.<stem>.<random>.tmp<suffix>`` next to the
target; :func:`temporaries_of` finds them so a later run can remove them.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rectifiers.errors import UserError

__all__ = ["DiskFullError", "FileWriteError", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "temporaries_of"]

# errno -> what happened, for the writes that failed because the file could not grow
_DISK_FULL = {
    errno.EFBIG: "the file reached the size limit (ulimit -f, or the file system's maximum)",
    getattr(errno, "EDQUOT", errno.ENOSPC): "the disk quota is exhausted",
    errno.ENOSPC: "no space left on the device",
}


class FileWriteError(UserError, OSError):
    """A file could not be written for a reason the user can fix (permissions, a directory)."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno n]" prefix
        return self.strerror if self.errno is not None and self.strerror else super().__str__()


class DiskFullError(FileWriteError):
    """The disk or quota filled up while writing; the previous file, if any, is intact."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not allow fsync on directories
        pass
    finally:
        os.close(fd)


def _free_space(directory: Path) -> str:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.0f} MiB" if free < 2**30 else f"{free / 2**30:.1f} GiB"


def _disk_full(path: Path, e: OSError) -> DiskFullError:
    existed = "the previous file is intact" if path.exists() else "nothing was written"
    fix = ("raise the limit or write elsewhere" if e.errno == errno.EFBIG
           else "free some space or write elsewhere")
    return DiskFullError(
        e.errno, f"{_DISK_FULL[e.errno]} while writing {path} (free space now: "
        f"{_free_space(path.parent)}); {existed}. {fix[0].upper()}{fix[1:]}")


def _unwritable(path: Path, e: OSError, what: str) -> FileWriteError:
    return FileWriteError(
        e.errno, f"cannot {what} {path}: {e.strerror or e}. Choose a writable location")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically becomes ``path``.

    The temporary file keeps ``path``'s suffix, so writers that infer the format from the
    name (matplotlib, onnx, gzip) behave as for the real target.

    Raises:
        DiskFullError: the disk filled up (the old ``path`` is untouched, the temporary removed).
        FileWriteError: ``path`` is a directory, or its directory cannot be created or written.

    Example:
        >>> with atomic_path("out/model.onnx") as tmp:
        ...     torch.onnx.export(model, x, str(tmp))
    """
    path = Path(path)
    if path.is_dir():
        raise FileWriteError(errno.EISDIR, f"{path} is a directory; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(path.parent, e, "create the directory") from e
    suffix = f".tmp{path.suffix}"  # ".tmp" alone when the target has no suffix
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise _disk_full(path, e) from e
        raise _unwritable(path, e, "write") from e
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno in _DISK_FULL and not isinstance(e, DiskFullError):
                raise _disk_full(path, e) from e
            raise
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the file a normal file's permissions
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _unwritable(path, e, "replace") from e
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def temporaries_of(path: str | os.PathLike) -> list[Path]:
    """Temporaries that :func:`atomic_path` left next to ``path`` when its process was killed.

    ``path``'s name may contain ``*`` (e.g. ``run/checkpoint-*.safetensors``) to match several
    targets. Only names of the exact form ``.<stem>.<8 random chars>.tmp<suffix>`` are returned.
    """
    path = Path(path)
    stem = ".*".join(re.escape(part) for part in path.stem.split("*"))
    pattern = re.compile(rf"\.{stem}\.[A-Za-z0-9_]{{8}}\.tmp{re.escape(path.suffix)}")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink())
