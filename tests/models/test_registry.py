"""create_model / list_models: names, errors, kwargs, reproducibility, rebuild from config."""

from __future__ import annotations

import json

import pytest
import torch

from rectifiers import init as rinit
from rectifiers.models import create_model, list_models, register_model

ALL = {"prelunet_a", "prelunet_b", "prelunet_c", "prelunet_small14", "plain_deep",
       "prelunet_small", "plain_small"}


def test_list_models_has_the_family() -> None:
    assert ALL <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_names_fail_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'prelunet_d'; known: .*prelunet_a"):
        create_model("prelunet_d")
    with pytest.raises(ValueError, match="unknown activation 'prelu2'; known: .*relu"):
        create_model("prelunet_small", act="prelu2")
    with pytest.raises(ValueError, match="unknown init scheme 'kaiming'; known: .*he"):
        create_model("prelunet_small", init="kaiming")


def test_unknown_keyword_lists_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['dept'\]; it accepts .*depth"):
        create_model("plain_small", dept=22)


def test_bad_sizes_fail_clearly() -> None:
    with pytest.raises(ValueError, match="num_classes and in_chans must be >= 1"):
        create_model("prelunet_small", num_classes=0)
    with pytest.raises(ValueError, match="drop_rate must be in"):
        create_model("prelunet_small", drop_rate=1.0)
    with pytest.raises(ValueError, match="width_mult must be > 0"):
        create_model("prelunet_a", width_mult=0)


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("prelunet_a")(lambda **kw: None)


def test_same_generator_seed_gives_identical_weights() -> None:
    a = create_model("prelunet_small", num_classes=10, in_chans=1, generator=123)
    b = create_model("prelunet_small", num_classes=10, in_chans=1, generator=123)
    c = create_model("prelunet_small", num_classes=10, in_chans=1, generator=124)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.trunk.conv1.weight, c.trunk.conv1.weight)


def test_model_config_rebuilds_the_same_architecture() -> None:
    m = create_model("plain_small", num_classes=7, in_chans=3, act="relu", depth=9, width=8)
    cfg = json.loads(json.dumps(m.model_config))  # must survive a JSON checkpoint
    name = cfg.pop("name")
    m2 = create_model(name, **cfg)
    assert [(k, v.shape) for k, v in m.state_dict().items()] == \
        [(k, v.shape) for k, v in m2.state_dict().items()]
    assert m2.model_config == m.model_config


def test_init_is_delegated_to_rectifiers_init() -> None:
    # create_model(init=x) == build + initialize(x) with the same generator.
    for scheme in ("xavier", "he"):
        m = create_model("prelunet_small", num_classes=10, in_chans=1, init=scheme, generator=5)
        ref = create_model("prelunet_small", num_classes=10, in_chans=1, init=None)
        fc_std = (0.01,) if scheme == "he" else None
        rinit.initialize(ref, scheme=scheme, fc_std=fc_std, generator=5)
        for (k, v), v2 in zip(m.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(v, v2), (scheme, k)


def test_init_none_keeps_pytorch_default() -> None:
    torch.manual_seed(0)
    m = create_model("prelunet_small", num_classes=10, in_chans=1, init=None)
    w = m.trunk.conv2_1.weight  # PyTorch default: U(+-1/sqrt(fan_in)), bias non-zero
    assert w.abs().max() <= 1 / (32 * 9) ** 0.5
    assert m.trunk.conv2_1.bias.abs().sum() > 0


def test_build_then_initialise_equals_create_model_with_init() -> None:
    from rectifiers.models.registry import initialize_model

    kw = dict(num_classes=10, in_chans=1, widths=[4, 4, 8], fc_dim=16, input_size=12)
    a = create_model("prelunet_small", init="he", generator=torch.Generator().manual_seed(3), **kw)
    b = create_model("prelunet_small", init=None, **kw)
    assert b.model_config["init"] is None
    initialize_model(b, "he", generator=torch.Generator().manual_seed(3))
    assert b.model_config["init"] == "he"
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # a data-dependent scheme needs the batch, which only the second step can take
    with pytest.raises(ValueError, match="data-dependent"):
        create_model("prelunet_small", init="lsuv", **kw)
    x = torch.randn(32, 1, 12, 12)
    initialize_model(b, "lsuv", data=x, generator=0)


def test_model_description_is_what_a_checkpoint_rebuilds_from() -> None:
    from rectifiers.models.registry import model_description
    from rectifiers.train.checkpoint import build_model_from_meta

    m = create_model("plain_small", num_classes=3, in_chans=2, act="leaky_relu",
                     act_kwargs={"negative_slope": 0.1}, depth=5, width=4)
    desc = model_description(m)
    assert desc["model"] == "plain_small" and desc["act"] == "leaky_relu"
    assert desc["model_kwargs"] == {"act_kwargs": {"negative_slope": 0.1}, "depth": 5, "width": 4}
    json.dumps(desc)  # stored as JSON in the checkpoint header
    rebuilt = build_model_from_meta(desc)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="create_model"):
        model_description(torch.nn.Linear(2, 2))
