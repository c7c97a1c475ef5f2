from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rectifiers.eval.dense import dense_scores, naive_window_scores, score_windows


def test_dense_equals_naive_per_view_on_a_padding_free_trunk(valid_net):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 30, 37, dtype=torch.float64)
    scales = (30, 34)
    dense = dense_scores(valid_net, x, scales, flip=True, window_batch=7)
    naive = naive_window_scores(valid_net, x, scales, crop=valid_net.crop,
                                stride=valid_net.stride, flip=True, batch=5)
    assert dense.shape == (2, 7)
    torch.testing.assert_close(dense.sum(1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(dense, naive, rtol=0, atol=1e-12)
    # and the views really differ: averaging them is not trivially one number
    single = dense_scores(valid_net, x, (30,), flip=False)
    assert (single - dense).abs().max() > 1e-4


def test_dense_window_average_matches_explicit_loop(valid_net):
    torch.manual_seed(2)
    fmap = torch.randn(3, 16, 6, 7, dtype=torch.float64)
    got = score_windows(valid_net.head, fmap, 3, window_batch=4)
    ref = torch.stack([
        valid_net.head(fmap[:, :, i:i + 3, j:j + 3]).softmax(-1)
        for i in range(4) for j in range(5)
    ]).mean(0)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_dense_uses_whole_map_when_smaller_than_window(valid_net):
    fmap = torch.randn(1, 16, 2, 5, dtype=torch.float64)
    got = score_windows(valid_net.head, fmap, 3)
    ref = torch.stack([valid_net.head(fmap[:, :, :, j:j + 3]).softmax(-1) for j in range(3)])
    torch.testing.assert_close(got, ref.mean(0))


def test_dense_runs_the_trunk_once_per_scale(valid_net):
    calls = []
    valid_net.trunk.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    x = torch.randn(4, 3, 30, 30, dtype=torch.float64)
    dense_scores(valid_net, x, (30, 40, 48), flip=True, window_batch=3)
    # image and its flip go through the trunk together: one call per scale, batch 2B
    assert [c[0] for c in calls] == [8, 8, 8]
    assert [c[-1] for c in calls] == [30, 40, 48]


def test_flip_is_scored_on_the_flipped_image(valid_net):
    x = torch.randn(1, 3, 26, 26, dtype=torch.float64)
    both = dense_scores(valid_net, x, (26,), flip=True)
    plain = dense_scores(valid_net, x, (26,), flip=False)
    mirrored = dense_scores(valid_net, x.flip(-1), (26,), flip=False)
    torch.testing.assert_close(both, (plain + mirrored) / 2)


def test_dense_needs_an_spp_model():
    with pytest.raises(TypeError, match="features"):
        dense_scores(torch.nn.Linear(3, 3), torch.zeros(1, 3, 8, 8), (8,))


def test_window_batch_changes_memory_not_results(valid_net):
    fmap = torch.randn(5, 16, 6, 7, dtype=torch.float64)
    ref = score_windows(valid_net.head, fmap, 3, window_batch=10_000)
    for wb in (1, 4, 9):
        torch.testing.assert_close(score_windows(valid_net.head, fmap, 3, window_batch=wb), ref)


def test_flip_happens_before_normalisation(valid_net):
    # a left-right asymmetric "mean image": flipping after normalising would flip it too
    mean = torch.linspace(0, 1, 30, dtype=torch.float64).expand(1, 3, 30, 30)
    x = torch.randn(1, 3, 30, 30, dtype=torch.float64)
    got = dense_scores(valid_net, x, (30,), flip=True, normalize=lambda t: t - mean)
    ref = (dense_scores(valid_net, x - mean, (30,), flip=False)
           + dense_scores(valid_net, x.flip(-1) - mean, (30,), flip=False)) / 2
    torch.testing.assert_close(got, ref)


def test_spp_fast_path_equals_pooling_each_window():
    from rectifiers.eval.dense import spp_head_parts
    from rectifiers.models import create_model

    torch.manual_seed(3)
    m = create_model("prelunet_small", num_classes=10, in_chans=1, widths=(4, 8, 8),
                     fc_dim=16, spp_levels=(7, 3, 2, 1)).eval().double()
    assert spp_head_parts(m) is not None
    x = torch.randn(3, 1, 36, 44, dtype=torch.float64)
    for scales in ((28,), (36, 40), (20,)):  # 20: map smaller than the window
        fast = dense_scores(m, x, scales, window_batch=50)
        slow = dense_scores(m, x, scales, window_batch=50, fast_spp=False)
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)


def test_spp_classifier_is_only_offered_when_head_is_plain_spp_max(valid_net):
    from rectifiers.eval.dense import spp_head_parts
    from rectifiers.models import create_model
    from rectifiers.models.spp_net import SPPNet
    from rectifiers.nn import SPP

    m = create_model("prelunet_small", num_classes=10, in_chans=1, widths=(4, 8, 8), fc_dim=16)
    levels, classifier = spp_head_parts(m)
    assert levels == m.spp.levels and classifier is m.classifier
    m.spp = SPP(m.spp.levels, pool="avg")
    assert spp_head_parts(m) is None  # the fast path is a max-pool identity only
    assert spp_head_parts(valid_net) is None  # no spp_classifier method: windows go via head

    class Scaled(SPPNet):
        def head(self, fmap):
            return 2 * super().head(fmap)

    s = Scaled.__new__(Scaled)
    s.__dict__.update(create_model("prelunet_small", num_classes=10, in_chans=1,
                                   widths=(4, 8, 8), fc_dim=16).__dict__)
    assert s.spp_classifier() is None  # a subclass that changes head is not SPP + classifier


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6, 7, 8, 13, 14])
def test_sliding_max_equals_max_pool(k):
    from rectifiers.eval.dense import sliding_max

    x = torch.randn(2, 3, 15, 17)
    torch.testing.assert_close(sliding_max(x, k, 2), F.max_pool2d(x, (k, 1), stride=1),
                               rtol=0, atol=0)
    torch.testing.assert_close(sliding_max(x, k, 3), F.max_pool2d(x, (1, k), stride=1),
                               rtol=0, atol=0)
