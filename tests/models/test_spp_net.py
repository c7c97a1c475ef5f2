"""SPPNet builds its activations in place, and that changes no number."""

import torch

from rectifiers.models import create_model


def _pair(act: str):
    out = []
    for inplace in (True, False):
        torch.manual_seed(0)
        out.append(create_model("prelunet_small", num_classes=5, in_chans=1, widths=(4, 6, 8),
                                fc_dim=12, act=act, act_kwargs={"inplace": inplace}))
    return out


def test_activations_are_in_place_by_default():
    m = create_model("prelunet_small", num_classes=5, in_chans=1, widths=(4, 6, 8), fc_dim=12)
    acts = [mod for name, mod in m.named_modules() if name.split(".")[-1].startswith("act")]
    assert acts and all(getattr(a, "inplace", False) for a in acts)
    off = create_model("prelunet_small", num_classes=5, in_chans=1, widths=(4, 6, 8),
                       fc_dim=12, act_kwargs={"inplace": False})
    assert not any(getattr(mod, "inplace", False) for mod in off.modules())


def test_in_place_gives_the_same_outputs_and_gradients():
    for act in ("prelu", "relu"):
        a, b = _pair(act)
        b.load_state_dict(a.state_dict())
        a.eval()
        b.eval()
        x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        ya, yb = a(x), b(x)
        # exact: a (P)ReLU output is x or a*x, one rounding whichever kernel computes it
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
        ya.square().sum().backward()
        yb.square().sum().backward()
        for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-6, atol=1e-7, msg=n)


def test_layer_names_follow_the_plan():
    import pytest

    from rectifiers.models.spp_net import Conv

    c = Conv("conv2_1", 8, 3)
    assert (c.act_name, c.pad_name) == ("act2_1", "pad2_1")
    with pytest.raises(ValueError, match="start with 'conv'"):
        Conv("block1", 8, 3)
    m = create_model("prelunet_small", num_classes=5, in_chans=1, widths=(4, 6, 8), fc_dim=12)
    names = [n for n, _ in m.trunk.named_children()]
    for n in names:
        if n.startswith("conv"):
            assert names[names.index(n) + 1] == "act" + n[4:]  # each conv's activation follows
