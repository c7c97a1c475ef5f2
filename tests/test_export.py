from __future__ import annotations

import os

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


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    """User errors are printed as one line (exit 2) only without RECTIFIERS_DEBUG."""
    monkeypatch.delenv("RECTIFIERS_DEBUG", raising=False)


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


# ------------------------------------------------------------------ defaults and bad input
def _ck(tmp_path, name="ck.safetensors", **meta_extra):
    from rectifiers.train.checkpoint import save_checkpoint

    kwargs = {"widths": [8, 12, 16], "fc_dim": 32}
    meta = {"model": "prelunet_small", "model_kwargs": kwargs, "num_classes": 10,
            "in_chans": 1, "act": "prelu", "init": "he", "image_size": 28,
            "normalization": {"kind": "standardize", "mean": [0.286], "std": [0.353],
                              "scale": 1 / 255}}
    meta.update(meta_extra)
    return save_checkpoint(tmp_path / name, {"model": _model().state_dict()}, meta)


def test_input_size_comes_from_the_checkpoint_and_a_mean_image_is_summarised(tmp_path, capsys):
    """A prelunet_small (class default 28 px) trained at 40 px exports at 40, and its 1x40x40
    mean image is printed as a shape and range, not as 1600 numbers."""
    import onnx

    from rectifiers.cli import main as cli

    mean = torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(0))
    ck = _ck(tmp_path, image_size=40,
             normalization={"kind": "mean_image", "mean": mean.tolist(), "scale": 1 / 255})
    assert cli(["export", str(ck), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "(N, 1, 40, 40)" in out and "mean=image 1x40x40" in out
    assert len(out) < 1000  # no mean image as text
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [1, 40, 40]


@pytest.mark.parametrize("argv, needle", [
    (["--input-size", "1", "0", "0"], "--input-size needs C H W >= 1, got 1 0 0"),
    (["--input-size", "3", "28", "28"], "--input-size has 3 channel(s) but the model takes 1"),
    (["--input-size", "1", "3", "3"], "--input-size 3 is too small"),
    (["--rtol", "nan"], "--rtol must be a finite number"),
])
def test_bad_export_flags(tmp_path, capsys, argv, needle):
    from rectifiers.cli import main as cli

    ck = _ck(tmp_path)
    assert cli(["export", str(ck), "--format", "torchscript", "--out",
                str(tmp_path / "m.pt"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.pt").exists()


def test_export_to_a_directory_or_an_unwritable_path(tmp_path, capsys):
    from rectifiers.cli import main as cli

    ck = _ck(tmp_path)
    (tmp_path / "dir").mkdir()
    assert cli(["export", str(ck), "--format", "torchscript", "--out",
                str(tmp_path / "dir")]) == 2
    assert f"--out {tmp_path / 'dir'} is a directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli(["export", str(ck), "--format", "torchscript", "--out",
                str(blocker / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'm.pt'}: {blocker} is a file" in err and blocker.read_text() == "x"


def test_export_on_a_full_disk_is_one_error_and_leaves_nothing(tmp_path):
    """torch.jit.save aborts the process when its C++ writer fails; export saves into memory
    and writes from Python, so a full disk (here: a file-size limit, EFBIG) is one message."""
    import subprocess
    import sys
    from pathlib import Path

    ck = _ck(tmp_path)
    out = tmp_path / "out" / "m.pt"
    out.parent.mkdir()

    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
           "RECTIFIERS_NO_CPP": "1"}
    r = subprocess.run([sys.executable, "-m", "rectifiers", "export", str(ck), "--format",
                        "torchscript", "--out", str(out)], capture_output=True, text=True,
                       env=env, timeout=300, preexec_fn=limit)
    text = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in text and str(out) in text, text
    assert list(out.parent.iterdir()) == []  # no partial file, no temporary


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_export_into_a_read_only_directory(tmp_path, capsys):
    from rectifiers.cli import main as cli

    ck = _ck(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = cli(["export", str(ck), "--format", "torchscript", "--out", str(ro / "m.pt")])
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "--out" in capsys.readouterr().err


def test_export_user_error_in_a_subprocess_has_no_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    ck = _ck(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
           "RECTIFIERS_NO_CPP": "1"}
    env.pop("RECTIFIERS_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "rectifiers", "export", str(ck), "--input-size",
                        "1", "0", "0"], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out and "--input-size" in out, out
