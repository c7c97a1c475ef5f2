from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rectifiers.export import (
    StaticSPP,
    check_export,
    export_onnx,
    export_program,
    export_torchscript,
    main,
    onnx_op_types,
    prepare_for_export,
    run_exported,
)
from rectifiers.models import create_model
from rectifiers.nn import PReLU

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = (1, 28, 28)


def _model(inplace: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)  # SPPNet builds activations in place by default: say which we test
    m = create_model("prelunet_small", num_classes=10, in_chans=1, widths=(8, 12, 16),
                     fc_dim=32, act_kwargs={"inplace": inplace})
    with torch.no_grad():  # learned-looking slopes, some negative: PReLU is not a ReLU here
        for mod in m.modules():
            if isinstance(mod, PReLU):
                mod.weight.uniform_(-0.5, 0.8)
    return m.eval()


@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (5, 9), (3, 2)])
def test_static_spp_equals_adaptive_max_pool(hw):
    x = torch.randn(2, 4, *hw)
    ref = torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in (7, 3, 2, 1)], 1)
    assert torch.equal(StaticSPP((7, 3, 2, 1), *hw)(x), ref)


def test_prepare_for_export_keeps_outputs_and_the_original_model():
    m = _model()
    p = prepare_for_export(m, SIZE)
    assert isinstance(p.spp, StaticSPP) and not isinstance(m.spp, StaticSPP)
    x = torch.randn(3, *SIZE)
    with torch.no_grad():
        assert torch.equal(p(x), m(x))


@pytest.mark.parametrize("inplace", [False, True])
def test_onnx_has_standard_prelu_and_matches_onnxruntime(tmp_path, inplace):
    m = _model(inplace)
    assert any(getattr(mod, "inplace", False) for mod in m.modules()) == inplace
    path = export_onnx(m, tmp_path / "m.onnx", SIZE, metadata={"rectifiers.model": "x"})
    ops = onnx_op_types(path)
    assert ops["PRelu"] == 7  # 5 convs + fc1 + fc2
    assert all("::" not in k for k in ops), ops  # standard domain only: no custom ops
    assert "PythonOp" not in ops and "ATen" not in ops
    diff = check_export(m, path, "onnx", SIZE, batch=5, rtol=1e-4, atol=1e-5)
    assert diff < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # atomic write, no temp left


def test_onnx_check_detects_a_wrong_model(tmp_path):
    m = _model()
    path = export_onnx(m, tmp_path / "m.onnx", SIZE)
    with torch.no_grad():
        m.classifier[-1].bias.add_(1.0)
    with pytest.raises(AssertionError, match="differs"):
        check_export(m, path, "onnx", SIZE)


def test_torch_export_and_torchscript_round_trip(tmp_path):
    m = _model()
    x = torch.randn(4, *SIZE)
    with torch.no_grad():
        ref = m(x)
    for fmt, fn in (("export", export_program), ("torchscript", export_torchscript)):
        path = fn(m, tmp_path / f"m.{fmt}", SIZE)
        torch.testing.assert_close(run_exported(path, fmt, x), ref, rtol=1e-5, atol=1e-6)


def test_cli_exports_a_checkpoint_and_checks_it(tmp_path, capsys):
    from rectifiers.train.checkpoint import save_checkpoint

    m = _model()
    kwargs = {"widths": [8, 12, 16], "fc_dim": 32}
    meta = {"model": "prelunet_small", "model_kwargs": kwargs, "num_classes": 10,
            "in_chans": 1, "act": "prelu", "init": "he", "image_size": 28,
            "normalization": {"kind": "standardize", "mean": [0.286], "std": [0.353],
                              "scale": 1 / 255}}
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", {"model": m.state_dict()}, meta)
    assert main([str(ckpt), "--format", "onnx", "--out", str(tmp_path / "o.onnx"),
                 "--check"]) == 0
    out = capsys.readouterr().out
    assert "check ok" in out and "PRelu x7" in out and "standardize" in out
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "o.onnx")).metadata_props}
    assert "standardize" in props["rectifiers.normalization"]
    assert main([str(ckpt), "--format", "export", "--check"]) == 0
    assert (tmp_path / "ck.pt2").is_file()
    from rectifiers.cli import main as cli  # user errors: one line from the top level, exit 2

    assert cli(["export", str(tmp_path / "missing.safetensors")]) == 2


@pytest.mark.slow
def test_dynamo_onnx_exporter_also_gives_prelu(tmp_path):
    pytest.importorskip("onnxscript")
    m = _model()
    path = export_onnx(m, tmp_path / "d.onnx", SIZE, dynamo=True)
    assert onnx_op_types(path)["PRelu"] == 7
    check_export(m, path, "onnx", SIZE)
