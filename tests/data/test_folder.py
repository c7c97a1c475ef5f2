"""ImageNet-layout folders: class indexing, decoding, corrupt files, layout errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from rectifiers.data import DatasetError, DatasetNotFoundError, ImageFolder, build_loader


def _make(root, classes=("cat", "dog", "ant"), n=3, splits=("train", "val"), size=(20, 30)):
    rng = np.random.default_rng(0)
    arrays = {}
    for sp in splits:
        for c in classes:
            d = root / sp / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                name = f"{i}.png" if i % 2 == 0 else f"{i}.JPG"
                Image.fromarray(a).save(d / name)
                arrays[str(d / name)] = a
    return arrays


def test_classes_sorted_labels_and_lossless_decode(tmp_path):
    arrays = _make(tmp_path)
    ds = ImageFolder(tmp_path, "train")
    assert ds.classes == ("ant", "cat", "dog") and ds.class_to_idx["dog"] == 2
    assert len(ds) == 9 and ds.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    path, k = ds.samples[3]
    assert path.endswith("cat/0.png") and k == 1
    img = ds.load(3)
    assert img.shape == (3, 20, 30) and img.dtype == torch.uint8
    assert np.array_equal(img.permute(1, 2, 0).numpy(), arrays[path])  # PNG is lossless
    gray = ImageFolder(tmp_path, "val", in_chans=1).load(0)
    assert gray.shape == (1, 20, 30)


def test_jpeg_draft_decodes_at_reduced_size(tmp_path):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(d / "big.jpg", quality=90)
    ds = ImageFolder(tmp_path, "train")
    small = ds.load(0, shorter_side=100)
    # draft picks the smallest 1/2^k scale whose shorter side is still >= 100: 1/4 -> 120x160
    assert small.shape == (3, 120, 160)
    view = ds.load_view(0, resize=100, crop_size=64)
    assert view.shape == (3, 64, 64) and (view.float() - 128).abs().max() <= 3


def test_corrupt_image_raise_names_path_or_skip_counts(tmp_path):
    _make(tmp_path, n=2)
    bad = tmp_path / "train" / "cat" / "zz_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = ImageFolder(tmp_path, "train")
    k = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(DatasetError, match=r"zz_bad\.jpg: cannot decode image.*on_error='skip'"):
        ds.load(k)
    loader = build_loader("folder", 7, train=False, split="train", root=tmp_path, crop_size=16,
                          eval_resize=18, stats_samples=4, on_error="skip")
    sizes = [x.shape[0] for x, _ in loader]
    assert sum(sizes) == 6 and loader.skipped == 1 and loader.skipped_paths == [str(bad)]
    strict = build_loader("folder", 7, train=False, split="train", root=tmp_path, crop_size=16,
                          eval_resize=18, normalize="none")
    with pytest.raises(DatasetError, match="zz_bad.jpg"):
        list(strict)


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="split folder not found"):
        ImageFolder(tmp_path, "train")
    _make(tmp_path / "a", classes=("x", "y"))
    (tmp_path / "a" / "train" / "z").mkdir()
    with pytest.raises(DatasetError, match=r"only in train/: \['z'\], only in val/: \[\]"):
        ImageFolder(tmp_path / "a", "train")
    (tmp_path / "a" / "val" / "z").mkdir()
    with pytest.raises(DatasetError, match=r"train/z: empty class folder"):
        ImageFolder(tmp_path / "a", "train")
    (tmp_path / "b" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class sub-folders"):
        ImageFolder(tmp_path / "b", "train")
    with pytest.raises(ValueError, match="on_error"):
        ImageFolder(tmp_path / "a", "train", on_error="ignore")


def test_folder_loader_deterministic_across_num_workers(tmp_path):
    # bit-equal on any CPU: workers run 1 thread, the main process several, but every op is
    # per image (decode, resize, crop) or elementwise (colour noise, normalisation)
    _make(tmp_path, n=4, size=(24, 36))
    kw = dict(train=True, root=tmp_path, seed=3, crop_size=16, eval_resize=18, stats_samples=6,
              augment=dict(crop_size=16, scale_range=(16, 24), flip=True, pca_std=0.1))
    a = build_loader("folder", 4, num_workers=0, **kw)
    b = build_loader("folder", 4, num_workers=2, **kw)
    assert a.normalization["kind"] == "mean_image" and len(a) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.shape == (4, 3, 16, 16) and torch.equal(xa, xb) and torch.equal(ya, yb)


def _jpeg_bytes(tmp_path, size=64):
    p = tmp_path / "ok.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p, quality=90)
    data = p.read_bytes()
    p.unlink()
    return data


def _defect(root, kind, tmp_path):
    """One defect in a tiny folder; returns the path the error message must name."""
    cat = root / "train" / "cat"
    if kind == "truncated_jpeg":
        data = _jpeg_bytes(tmp_path)
        (cat / "cut.jpg").write_bytes(data[: len(data) // 2])
        return cat / "cut.jpg"
    if kind == "zero_byte":
        (cat / "empty.jpg").write_bytes(b"")
        return cat / "empty.jpg"
    if kind == "text_as_jpg":
        (cat / "notes.jpg").write_text("these are my notes, not a picture\n")
        return cat / "notes.jpg"
    if kind == "symlink_loop":
        (cat / "loop.jpg").symlink_to("loop.jpg")
        return cat / "loop.jpg"
    if kind == "broken_symlink":
        (cat / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
        return cat / "gone.jpg"
    raise AssertionError(kind)


BAD_FILES = ["truncated_jpeg", "zero_byte", "text_as_jpg", "symlink_loop", "broken_symlink"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_each_bad_file_is_one_error_naming_it_and_the_fix(tmp_path, kind):
    _make(tmp_path / "d", n=2)
    bad = _defect(tmp_path / "d", kind, tmp_path)
    with pytest.raises(DatasetError) as info:  # listing or first decode, whichever meets it
        list(build_loader("folder", 4, train=False, split="train", root=tmp_path / "d",
                          crop_size=16, eval_resize=18, normalize="none"))
    msg = str(info.value)
    assert str(bad) in msg and "--skip-bad-images" in msg and "\n" not in msg
    if kind == "zero_byte":
        assert "empty file (0 bytes)" in msg
    if kind == "symlink_loop":
        assert "self-looping symbolic link" in msg


def test_skip_bad_images_skips_each_kind_counts_and_lists_them(tmp_path):
    _make(tmp_path / "d", n=2)
    bad = sorted(str(_defect(tmp_path / "d", k, tmp_path)) for k in BAD_FILES)
    loader = build_loader("folder", 4, train=False, split="train", root=tmp_path / "d",
                          crop_size=16, eval_resize=18, normalize="none", skip_bad_images=True)
    assert loader.skipped == 2  # the two links are left out when listing
    n = sum(x.shape[0] for x, _ in loader)
    assert n == 6 and loader.skipped == 5 and sorted(loader.skipped_paths) == bad
    list(loader)  # a second epoch skips again but lists each path once
    assert loader.skipped == 8 and sorted(loader.skipped_paths) == bad
    out = loader.write_skipped(tmp_path / "run")
    assert out == tmp_path / "run" / "skipped_images.txt"
    assert out.read_text().splitlines() == bad
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["skipped_images.txt"]  # atomic
    clean = build_loader("folder", 4, train=False, split="val", root=tmp_path / "d",
                         crop_size=16, eval_resize=18, normalize="none", skip_bad_images=True)
    assert clean.write_skipped(tmp_path / "run2") is None and not (tmp_path / "run2").exists()


def test_empty_class_and_differing_classes_name_the_folder(tmp_path):
    _make(tmp_path, classes=("cat", "dog"), n=1)
    (tmp_path / "train" / "cow").mkdir()
    (tmp_path / "val" / "cow").mkdir()
    (tmp_path / "train" / "cow" / "readme.txt").write_text("no image here")
    with pytest.raises(DatasetError, match=r"train/cow: empty class folder.*remove the folder"):
        ImageFolder(tmp_path, "train")
    (tmp_path / "val" / "cow").rmdir()
    (tmp_path / "val" / "emu").mkdir()
    with pytest.raises(DatasetError, match=r"only in train/: \['cow'\], only in val/: \['emu'\]"):
        ImageFolder(tmp_path, "train")


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path, mode):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    ramp = (np.arange(16 * 32).reshape(16, 32) * 128).astype(np.uint16)  # 0 .. 65408
    # a 16-bit PNG opens as I;16; a 32-bit integer TIFF (another way to store 16-bit data) as I
    img = Image.fromarray(ramp) if mode == "I;16" else Image.fromarray(ramp.astype(np.int32))
    img.save(d / ("deep.png" if mode == "I;16" else "deep.tif"))
    with Image.open(next(d.iterdir())) as check:
        assert check.mode == mode
    expect = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    gray = ImageFolder(tmp_path, "train", in_chans=1).load(0)
    assert gray.shape == (1, 16, 32) and np.array_equal(gray[0].numpy(), expect)
    rgb = ImageFolder(tmp_path, "train").load(0)
    assert rgb.shape == (3, 16, 32) and all(np.array_equal(c.numpy(), expect) for c in rgb)
    assert len(np.unique(expect)) > 200  # a ramp, not a 0/255 mask
