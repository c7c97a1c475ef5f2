"""IDX file reader (the format of MNIST and Fashion-MNIST), with validation.

An IDX file is a big-endian header followed by raw data::

    bytes 0-1  : 0x00 0x00                      (magic, always zero)
    byte  2    : element type  (0x08 = uint8, 0x09 = int8, 0x0B = int16,
                                0x0C = int32, 0x0D = float32, 0x0E = float64)
    byte  3    : number of dimensions d
    4 * d bytes: the size of each dimension, big-endian uint32
    rest       : prod(dims) elements of the element type, big-endian, C order

Files may be gzip-compressed (``.gz``). Every check below produces a
:class:`DatasetError` that names the file, what is wrong and how to fix it, so a
truncated download or a swapped file never turns into a silent shape error later.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from rectifiers.errors import UserError
from rectifiers.files import atomic_path

__all__ = ["DatasetError", "DatasetNotFoundError", "read_idx", "write_idx"]

# element-type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}


class DatasetError(UserError, RuntimeError):
    """A data file or folder is missing, corrupt or inconsistent.

    The message always names the offending path, what is wrong and the fix.
    """


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A required data file or directory does not exist."""


def _read_bytes(path: Path, fix: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: file not found. {fix}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        # EOFError: gzip stream cut short (truncated download); BadGzipFile: not gzip at all.
        raise DatasetError(
            f"{path}: cannot decompress/read ({type(e).__name__}: {e}); the file is truncated "
            f"or corrupt. {fix}"
        ) from e


def read_idx(
    path: str | os.PathLike,
    *,
    expected_ndim: int | None = None,
    expected_dtype: np.dtype | str | None = None,
    expected_shape: tuple[int | None, ...] | None = None,
    fix: str = "Re-download or reinstall the file.",
) -> np.ndarray:
    """Read and validate an IDX file (optionally gzipped) into a native-endian numpy array.

    Args:
        path: the file; a ``.gz`` suffix means gzip.
        expected_ndim: fail unless the header declares this many dimensions.
        expected_dtype: fail unless the element type is this (e.g. ``np.uint8``).
        expected_shape: fail unless dims match; ``None`` entries match anything.
        fix: appended to every error message (how the user can repair the problem).

    Returns:
        An array of shape ``dims`` in native byte order.

    Example::

        labels = read_idx("train-labels-idx1-ubyte.gz", expected_ndim=1, expected_dtype="u1")
    """
    path = Path(path)
    raw = _read_bytes(path, fix)
    if len(raw) < 4:
        raise DatasetError(
            f"{path}: only {len(raw)} bytes, not an IDX file (the header is 4+ bytes). {fix}")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (expected 0x0000TTDD with a known "
            f"type code TT); this is not an IDX file. {fix}"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(
            f"{path}: magic 0x{raw[:4].hex()} declares {ndim} dimensions, expected {expected_ndim} "
            f"(images and labels files swapped?). {fix}"
        )
    if expected_dtype is not None and dtype.newbyteorder("=") != np.dtype(expected_dtype):
        raise DatasetError(
            f"{path}: element type {dtype.newbyteorder('=')} but expected "
            f"{np.dtype(expected_dtype)}. {fix}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} of {header} bytes). {fix}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if expected_shape is not None:
        if len(expected_shape) != ndim or any(
            e is not None and e != d for e, d in zip(expected_shape, dims, strict=True)
        ):
            want = ", ".join("*" if e is None else str(e) for e in expected_shape)
            raise DatasetError(f"{path}: dimensions {dims}, expected ({want}). {fix}")
    count = int(np.prod(dims, dtype=np.int64))
    want_bytes = header + count * dtype.itemsize
    if len(raw) != want_bytes:
        what = "truncated" if len(raw) < want_bytes else "has trailing bytes"
        raise DatasetError(
            f"{path}: file {what}: {len(raw)} bytes but the header {dims} implies "
            f"{want_bytes}. {fix}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    # Native byte order and a writable copy so torch.from_numpy works without warnings.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically.

    The inverse of :func:`read_idx`; used to build fixtures and small custom datasets.
    """
    path = Path(path)
    arr = np.ascontiguousarray(array)
    code = _DTYPE_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: dtype {arr.dtype} has no IDX type code; use one of "
                         f"{sorted(str(d) for d in _DTYPE_CODES)}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + arr.astype(arr.dtype.newbyteorder(">"), copy=False).tobytes()
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.open(tmp, "wb") as f:
                f.write(payload)
        else:
            tmp.write_bytes(payload)
