"""IDX parsing and Fashion-MNIST loading: hand-written files, corrupt files, the real data."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from rectifiers.data import (
    DEFAULT_FASHION_MNIST_DIR,
    DatasetError,
    DatasetNotFoundError,
    load_fashion_mnist,
    read_idx,
    write_idx,
)


def _hand_idx(type_code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    # written from the format description, independently of write_idx
    head = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + payload


def test_read_hand_written_uint8_idx_plain_and_gz(tmp_path):
    data = bytes(range(24))
    raw = _hand_idx(0x08, (2, 3, 4), data)
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "a-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        arr = read_idx(tmp_path / name)
        assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4)
        assert arr.ravel().tolist() == list(range(24))
        assert arr[1, 2, 3] == 23  # C order


def test_read_big_endian_int32_idx(tmp_path):
    vals = [1, -2, 70000]
    raw = _hand_idx(0x0C, (3,), struct.pack(">iii", *vals))
    (tmp_path / "b").write_bytes(raw)
    arr = read_idx(tmp_path / "b")
    assert arr.tolist() == vals and arr.dtype == np.int32


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_roundtrip(tmp_path, dtype):
    arr = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
    write_idx(tmp_path / "x.gz", arr)
    back = read_idx(tmp_path / "x.gz")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_truncated_gzip_names_file_and_problem(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(p, np.zeros((10, 28, 28), np.uint8))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        read_idx(p)


def test_truncated_payload_reports_sizes(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(_hand_idx(0x08, (4, 5), bytes(19)))
    with pytest.raises(DatasetError, match=r"x: file truncated: 31 bytes .* implies 32"):
        read_idx(p)
    p.write_bytes(_hand_idx(0x08, (4, 5), bytes(21)))
    with pytest.raises(DatasetError, match="trailing bytes"):
        read_idx(p)


def test_wrong_magic_and_wrong_kind_of_file(tmp_path):
    p = tmp_path / "y"
    p.write_bytes(b"\x1f\x00\x08\x01" + bytes(8))
    with pytest.raises(DatasetError, match=r"y: wrong magic number 0x1f000801"):
        read_idx(p)
    p.write_bytes(_hand_idx(0x08, (3,), bytes(3)))  # a labels file where images are expected
    with pytest.raises(DatasetError, match="declares 1 dimensions, expected 3"):
        read_idx(p, expected_ndim=3)
    with pytest.raises(DatasetError, match=r"dimensions \(3,\), expected \(2\)"):
        read_idx(p, expected_shape=(2,))


def _fake_fashion(root: Path, n_train=12, n_test=5, **override):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    files.update(override)
    for name, arr in files.items():
        write_idx(root / name, arr)
    return files


def test_load_fashion_mnist_from_custom_dir(tmp_path):
    files = _fake_fashion(tmp_path)
    x, y = load_fashion_mnist(tmp_path, "train")
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(12)]
    assert np.array_equal(x[:, 0].numpy(), files["train-images-idx3-ubyte.gz"])
    xt, _ = load_fashion_mnist(tmp_path, "test")
    assert xt.shape == (5, 1, 28, 28)
    x[0] = 0  # the in-memory cache must not be mutated through a returned tensor
    assert np.array_equal(load_fashion_mnist(tmp_path, "train")[0][0, 0].numpy(),
                          files["train-images-idx3-ubyte.gz"][0])


def test_missing_file_error_tells_the_fix(tmp_path):
    _fake_fashion(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError) as e:
        load_fashion_mnist(tmp_path, "test")
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "RECTIFIERS_DATA" in msg and "--data-dir" in msg
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nope", "train")


def test_inconsistent_fashion_files(tmp_path):
    _fake_fashion(tmp_path, **{"train-labels-idx1-ubyte.gz": np.zeros(11, np.uint8)})
    with pytest.raises(DatasetError, match="12 images but .* 11 labels"):
        load_fashion_mnist(tmp_path, "train")
    _fake_fashion(tmp_path, **{"t10k-labels-idx1-ubyte.gz": np.full(5, 10, np.uint8)})
    with pytest.raises(DatasetError, match="label 10 out of range"):
        load_fashion_mnist(tmp_path, "test")
    _fake_fashion(tmp_path, **{"t10k-images-idx3-ubyte.gz": np.zeros((5, 32, 32), np.uint8)})
    with pytest.raises(DatasetError, match=r"dimensions \(5, 32, 32\), expected \(\*, 28, 28\)"):
        load_fashion_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist(tmp_path, "val")


_REAL = Path(DEFAULT_FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not _REAL.exists(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_counts_and_balance():
    x, y = load_fashion_mnist(split="train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.bincount(y, minlength=10).tolist() == [6000] * 10
    xt, yt = load_fashion_mnist(split="test")
    assert xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(yt, minlength=10).tolist() == [1000] * 10
    assert 0 <= int(y.min()) and int(y.max()) == 9
    assert int(x.max()) == 255 and int(x.min()) == 0


def _damage(root: Path, kind: str) -> str:
    """Damage the test split of a fake Fashion-MNIST in ``root``; returns the file to name."""
    _fake_fashion(root)
    images, labels = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
    if kind == "truncated_gzip":
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 2])
    elif kind == "wrong_magic":
        write_idx(root / "plain", np.zeros((5, 28, 28), np.uint8))
        raw = bytearray((root / "plain").read_bytes())
        raw[0] = 0x1F
        with gzip.open(images, "wb") as f:
            f.write(bytes(raw))
    elif kind == "truncated_payload":
        with gzip.open(images, "wb") as f:
            f.write(_hand_idx(0x08, (5, 28, 28), bytes(5 * 28 * 28 - 100)))
    elif kind == "swapped":
        raw_i, raw_l = images.read_bytes(), labels.read_bytes()
        images.write_bytes(raw_l)
        labels.write_bytes(raw_i)
    elif kind == "label_out_of_range":
        write_idx(labels, np.array([0, 1, 2, 3, 200], np.uint8))
        return str(labels)
    elif kind == "count_mismatch":
        write_idx(labels, np.zeros(4, np.uint8))
    elif kind == "not_gzip":
        write_idx(root / "plain", np.zeros((5, 28, 28), np.uint8))
        images.write_bytes((root / "plain").read_bytes())  # IDX bytes under a .gz name
    else:
        raise AssertionError(kind)
    return str(images)


@pytest.mark.parametrize("kind", ["truncated_gzip", "wrong_magic", "truncated_payload",
                                  "swapped", "label_out_of_range", "count_mismatch", "not_gzip"])
def test_damaged_fashion_mnist_is_one_user_error_naming_file_and_fix(tmp_path, kind):
    from rectifiers.data import open_dataset
    from rectifiers.errors import UserError

    named = _damage(tmp_path, kind)
    with pytest.raises(DatasetError) as e:
        open_dataset("fashion_mnist", "test", tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg
    assert named in msg and "--data-dir" in msg and "apt-get install" in msg
    open_dataset("fashion_mnist", "train", tmp_path)  # the undamaged split still opens
