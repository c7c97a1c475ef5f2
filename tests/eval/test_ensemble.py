from __future__ import annotations

import copy

import pytest
import torch

from rectifiers.eval.ensemble import Ensemble, Member
from rectifiers.eval.views import ViewSpec, predict


def test_ensemble_of_two_identical_models_equals_one(valid_net):
    x = torch.randn(3, 3, 24, 27, dtype=torch.float64)
    view = ViewSpec(mode="dense", crop=18, scales=(24, 28))
    one = predict(valid_net, x, view)
    ens = Ensemble([Member(valid_net, view), Member(copy.deepcopy(valid_net), view)])
    torch.testing.assert_close(ens.predict(x), one, rtol=0, atol=1e-15)


def test_ensemble_is_the_weighted_mean_of_member_scores(valid_net):
    other = copy.deepcopy(valid_net)
    with torch.no_grad():
        other.fc.bias.add_(torch.arange(7, dtype=torch.float64))
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    v1 = ViewSpec(mode="center", crop=18, scales=(18,))
    v2 = ViewSpec(mode="ten_crop", crop=18, scales=(20,))
    p1, p2 = predict(valid_net, x, v1), predict(other, x, v2)
    ens = Ensemble([Member(valid_net, v1, weight=1.0), Member(other, v2, weight=3.0)])
    torch.testing.assert_close(ens.predict(x), (p1 + 3 * p2) / 4)
    assert not torch.allclose(p1, p2)


def test_ensemble_rejects_mismatched_classes(valid_net, valid_net_cls):
    other = valid_net_cls(num_classes=5).double().eval()
    v = ViewSpec(mode="center", crop=18, scales=(18,))
    with pytest.raises(ValueError, match="class set"):
        Ensemble([Member(valid_net, v), Member(other, v)]).predict(
            torch.zeros(1, 3, 18, 18, dtype=torch.float64))
