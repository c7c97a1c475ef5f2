from __future__ import annotations

import pytest
import torch

from rectifiers.eval.views import (
    ViewSpec,
    default_scales,
    default_view,
    predict,
    ten_crop,
    ten_crop_boxes,
)


def _coord_image(h: int, w: int) -> torch.Tensor:
    """(1, 2, h, w): channel 0 holds the row index, channel 1 the column index."""
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    return torch.stack([rows, cols]).unsqueeze(0)


def test_ten_crop_boxes_are_corners_centre_and_flips():
    h, w, c = 10, 13, 6
    boxes = ten_crop_boxes(h, w, c)
    expected = [(0, 0), (0, 7), (4, 0), (4, 7), (2, 4)]  # centre: round(4/2), round(7/2)=4
    assert [(b[0], b[1]) for b, _ in boxes[:5]] == expected
    assert [f for _, f in boxes] == [False] * 5 + [True] * 5
    assert [b for b, _ in boxes[5:]] == [b for b, _ in boxes[:5]]


def test_ten_crop_pixels_come_from_the_right_positions():
    h, w, c = 10, 13, 6
    x = _coord_image(h, w)
    views = ten_crop(x, c)  # (10, 1, 2, c, c)
    assert views.shape == (10, 1, 2, c, c)
    r = torch.arange(c, dtype=torch.float64)
    for k, (box, flipped) in enumerate(ten_crop_boxes(h, w, c)):
        top, left = box[0], box[1]
        v = views[k, 0]
        assert torch.equal(v[0], (top + r).view(c, 1).expand(c, c))
        cols = left + r if not flipped else (w - 1) - (left + r)
        assert torch.equal(v[1], cols.view(1, c).expand(c, c)), (k, box, flipped)
    # the flipped top-left view is the mirrored top-right corner of the original image
    assert torch.equal(views[5, 0, 1, 0], torch.arange(w - 1, w - 1 - c, -1, dtype=torch.float64))


def test_ten_crop_rejects_crop_larger_than_image():
    with pytest.raises(ValueError, match="larger than the image"):
        ten_crop_boxes(5, 8, 6)


def test_default_scales_follow_the_paper_and_the_small_model_rule():
    assert default_scales("dense", 224) == (256, 384, 480)
    assert default_scales("ten_crop", 224) == (256,)
    assert default_scales("center", 224) == (256,)
    assert default_scales("center", 28) == (28,)
    assert default_scales("ten_crop", 28) == (32,)
    assert default_scales("dense", 28) == (28, 32, 36)


def test_viewspec_rejects_bad_input():
    with pytest.raises(ValueError, match="view mode"):
        ViewSpec(mode="twelve")
    with pytest.raises(ValueError, match=">= the crop"):
        ViewSpec(mode="center", crop=224, scales=(200,))


class _Probe(torch.nn.Module):
    """Records its inputs; scores = a fixed linear map of the mean pixel per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        m = x.mean(dim=(2, 3))
        return torch.cat([m, -m], 1)


def test_predict_center_and_ten_crop_feed_the_expected_views():
    x = _coord_image(10, 13)
    probe = _Probe()
    out = predict(probe, x, ViewSpec(mode="center", crop=6, scales=(10,)))
    assert probe.seen[0].shape == (1, 2, 6, 6)
    assert torch.equal(probe.seen[0][0, 0, 0], torch.full((6,), 2.0, dtype=torch.float64))
    assert out.shape == (1, 4) and torch.allclose(out.sum(1), torch.ones(1, dtype=out.dtype))
    probe.seen.clear()
    predict(probe, x, ViewSpec(mode="ten_crop", crop=6, scales=(10,)))
    assert probe.seen[0].shape == (10, 2, 6, 6)  # one forward pass for all views


def test_predict_groups_images_of_different_sizes_and_applies_normalize():
    a, b = torch.rand(3, 20, 24) * 255, torch.rand(3, 30, 20) * 255
    probe = _Probe()
    norm = lambda t: t / 255.0  # noqa: E731
    out = predict(probe, [a, b, a], ViewSpec(mode="center", crop=16, scales=(16,)), norm)
    assert out.shape == (3, 6)
    assert torch.allclose(out[0], out[2])
    assert all(float(s.max()) <= 1.0 for s in probe.seen)  # normalised after the geometry


def test_default_view_uses_the_model_crop(valid_net):
    v = default_view(valid_net, "dense")
    assert v.crop == 18 and v.scales == (18, 21, 23)
