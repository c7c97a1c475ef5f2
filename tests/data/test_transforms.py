"""Batch transforms: exact geometry on position-encoded images, statistics of the random ones."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rectifiers.data.transforms import (
    Normalizer,
    apply_crop_fractions,
    batch_crop,
    center_crop_box,
    channel_stats,
    crop,
    five_crop_boxes,
    flip_where,
    pad,
    pca_lighting,
    pca_stats,
    resize_shorter,
    sample_crop_fractions,
    sample_flips,
    sample_pca_alphas,
    sample_scales,
    scale_jitter,
    shorter_side_size,
)


def _pos_image(n=3, c=2, h=9, w=11):
    """x[i, c, y, x] encodes its own position, so any crop/flip is checkable exactly."""
    i = torch.arange(n).view(n, 1, 1, 1)
    ch = torch.arange(c).view(1, c, 1, 1)
    y = torch.arange(h).view(1, 1, h, 1)
    x = torch.arange(w).view(1, 1, 1, w)
    return i * 100000 + ch * 10000 + y * 100 + x


def test_crop_and_boxes_on_position_encoded_image():
    img = _pos_image(1, 1, 9, 11)[0]
    c = crop(img, (2, 3, 4, 5))
    assert c[0, 0, 0] == 203 and c[0, -1, -1] == 507 and c.shape == (1, 4, 5)
    assert center_crop_box(9, 11, 5) == (2, 3, 5, 5)
    assert center_crop_box(10, 10, 5) == (2, 2, 5, 5)  # round(2.5) == 2 (banker's, as torchvision)
    boxes = five_crop_boxes(9, 11, 4)
    corners = [int(crop(img, b)[0, 0, 0]) for b in boxes]
    assert corners == [0, 7, 500, 507, 204]  # centre: round(2.5)=2, round(3.5)=4
    with pytest.raises(ValueError, match="does not fit"):
        crop(img, (6, 0, 4, 4))
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop_box(3, 3, 4)


@pytest.mark.parametrize("p", [0, 2])
def test_batch_crop_equals_per_sample_slicing(p):
    x = _pos_image(5, 2, 9, 11)
    g = torch.Generator().manual_seed(1)
    u = sample_crop_fractions(5, g)
    off = apply_crop_fractions(u, 9 + 2 * p, 11 + 2 * p, 6, 7)
    flips = sample_flips(5, g)
    flips[0], flips[1] = True, False
    got = batch_crop(x, off[:, 0], off[:, 1], 6, 7, reflect_pad=p, flips=flips)
    xp = F.pad(x.double(), (p,) * 4, mode="reflect").long() if p else x
    for i in range(5):
        ref = xp[i, :, off[i, 0]:off[i, 0] + 6, off[i, 1]:off[i, 1] + 7]
        assert torch.equal(got[i], ref.flip(-1) if flips[i] else ref)


def test_uint8_reflect_pad_matches_torch_and_zeros_mode():
    x = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8)
    ref = F.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    assert torch.equal(pad(x, 2), ref)
    z = pad(x, 1, "zeros")
    assert z.shape == (2, 3, 7, 8) and int(z[:, :, 0].sum()) == 0
    with pytest.raises(ValueError, match="pad mode"):
        pad(x, 1, "edge")


def test_flip_where_is_exact():
    x = _pos_image(4, 1, 3, 5)
    m = torch.tensor([True, False, True, False])
    y = flip_where(x, m)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[1], x[1])
    assert torch.equal(flip_where(y, m), x)


def test_crop_fractions_cover_all_offsets_uniformly():
    g = torch.Generator().manual_seed(0)
    n = 40000
    off = apply_crop_fractions(sample_crop_fractions(n, g), 32, 32, 28, 28)
    counts = torch.bincount(off[:, 0], minlength=5).double()
    assert counts.numel() == 5  # offsets 0..4, never 5
    # each of 5 offsets: binomial(n, 1/5); 5 sigma bound
    sigma = math.sqrt(n * 0.2 * 0.8)
    assert ((counts - n / 5).abs() < 5 * sigma).all()
    u_max = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # even u == 1 stays inside
    edge = apply_crop_fractions(u_max, 32, 32, 28, 28)
    assert edge.tolist() == [[4, 0]]


def test_resize_shorter_sizes_and_values():
    assert shorter_side_size(300, 400, 256) == (256, 341)
    assert shorter_side_size(400, 300, 256) == (341, 256)
    x = torch.full((2, 3, 40, 60), 77, dtype=torch.uint8)
    y = resize_shorter(x, 20)
    assert y.shape == (2, 3, 20, 30) and y.dtype == torch.uint8 and bool((y == 77).all())
    assert resize_shorter(x[0], 40) is x[0] or torch.equal(resize_shorter(x[0], 40), x[0])
    # antialiased downscale of a +/-1 checkerboard averages out (no aliasing): mean ~ 0
    cb = ((torch.arange(64).view(-1, 1) + torch.arange(64)) % 2).float().view(1, 1, 64, 64) * 2 - 1
    small = resize_shorter(cb, 16)
    assert small.abs().max() < 0.05


def test_resize_shorter_close_to_pillow():
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((160, 120), Image.BICUBIC))  # smooth content
    ours = resize_shorter(torch.from_numpy(img.copy()).permute(2, 0, 1), 48)
    pil = np.asarray(Image.fromarray(img).resize((64, 48), Image.BILINEAR))
    diff = (ours.permute(1, 2, 0).float() - torch.from_numpy(pil.copy()).float()).abs()
    assert ours.shape == (3, 48, 64) and diff.mean() < 1.5


def test_scale_jitter_equals_per_sample_reference_and_covers_range():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    scales = sample_scales(64, 28, 36, g)
    u = sample_crop_fractions(64, g)
    out = scale_jitter(x, scales, u, 28)
    assert out.shape == (64, 1, 28, 28) and out.dtype == torch.uint8
    for i in range(0, 64, 7):
        r = resize_shorter(x[i], int(scales[i]))
        o = apply_crop_fractions(u[i:i + 1], r.shape[-2], r.shape[-1], 28, 28)[0]
        assert torch.equal(out[i], crop(r, (int(o[0]), int(o[1]), 28, 28)))
    many = sample_scales(20000, 256, 512, g)
    assert int(many.min()) == 256 and int(many.max()) == 512
    # U{256..512} has mean 384 and variance (257^2 - 1) / 12
    sd = math.sqrt((257**2 - 1) / 12 / 20000)
    assert abs(many.double().mean().item() - 384) < 5 * sd
    with pytest.raises(ValueError, match="shorter side 20 < crop 28"):
        scale_jitter(x[:1], torch.tensor([20]), u[:1], 28)


def _rotation(seed):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q


def test_pca_lighting_offset_covariance():
    """Offsets V diag(l) a with a ~ N(0, s^2 I) have covariance V diag(s^2 l^2) V^T."""
    n, s = 20000, 0.1
    eigvec = _rotation(0)
    eigval = torch.tensor([0.3, 0.1, 0.02], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    alphas = sample_pca_alphas(n, s, g).double()
    x = torch.zeros(n, 3, 2, 2, dtype=torch.float64)
    y = pca_lighting(x, alphas, eigval, eigvec)
    off = y[:, :, 0, 0]
    assert torch.equal(y[:, :, 1, 1], off)  # one offset per image, same for every pixel
    cov = torch.cov(off.T)
    true = eigvec @ torch.diag((s * eigval) ** 2) @ eigvec.T
    # std of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    d = torch.diag(true)
    se = ((torch.outer(d, d) + true**2) / n).sqrt()
    assert ((cov - true).abs() < 5 * se).all()
    assert (off.mean(0).abs() < 5 * d.sqrt() / math.sqrt(n)).all()


def test_pca_stats_recovers_principal_axes():
    v = _rotation(1)
    sd = torch.tensor([0.2, 0.05, 0.01], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    pix = 0.5 + (torch.randn(200000, 3, generator=g, dtype=torch.float64) * sd) @ v.T
    img = (pix.clamp(0, 1) * 255).round().to(torch.uint8).T.reshape(3, 200, 1000).unsqueeze(0)
    eigval, eigvec = pca_stats(img)
    assert torch.allclose(eigval.double(), sd, rtol=0.05, atol=3e-3)
    # eigenvectors up to sign; the first two are well separated
    assert (eigvec.double()[:, :2].T @ v[:, :2]).diag().abs().min() > 0.99


def test_channel_stats_and_normalizer_roundtrip():
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(x)
    xf = x.double() / 255
    assert np.allclose(mean, xf.mean((0, 2, 3)).tolist(), atol=1e-9)
    assert np.allclose(std, xf.std((0, 2, 3), unbiased=False).tolist(), atol=1e-9)
    norm = Normalizer("standardize", mean, std)
    y = norm(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert torch.equal(again(x), y)


def test_normalizer_mean_image_and_errors():
    mean_img = torch.rand(1, 4, 4)
    n = Normalizer("mean_image", mean_img.tolist())
    x = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert torch.allclose(n(x), x / 255 - mean_img, atol=1e-6)
    assert n(torch.zeros(1, 1, 8, 8, dtype=torch.uint8)).shape == (1, 1, 8, 8)  # resized mean
    assert torch.allclose(Normalizer("none")(x), x / 255)
    with pytest.raises(ValueError, match="needs 'std'"):
        Normalizer("standardize", [0.5])
    with pytest.raises(ValueError, match="kind must be one of"):
        Normalizer("whiten", [0.5])
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalizer("standardize", [0.5], [0.0])


def test_random_parameters_are_deterministic_under_a_seed():
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return (sample_scales(8, 256, 512, g), sample_crop_fractions(8, g), sample_flips(8, g),
                sample_pca_alphas(8, 0.1, g))

    a, b, c = draw(5), draw(5), draw(6)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])
