"""Checkpoint files: round trip, weights-only best, checksums, non-finite weights, full disk,
damaged metadata. Unit tests on small hand-made states (no training)."""

from __future__ import annotations

import errno
import json
import struct
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from rectifiers.errors import UserError
from rectifiers.files import DiskFullError
from rectifiers.models import create_model
from rectifiers.train import checkpoint as ckpt
from rectifiers.train.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    NonFiniteWeightsError,
    copy_checkpoint,
    load_checkpoint,
    load_model,
    read_meta,
    save_checkpoint,
    weights_finite,
)

MODEL_KW = {"widths": [4, 4, 8], "fc_dim": 16, "input_size": 12}


def _model():
    torch.manual_seed(0)
    return create_model("prelunet_small", num_classes=3, in_chans=1, **MODEL_KW)


def _meta(**extra):
    return {"model": "prelunet_small", "model_kwargs": MODEL_KW, "num_classes": 3, "in_chans": 1,
            "act": "prelu", "init": "he", "epoch": 1, "step": 8, **extra}


def _full_state(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 12, 12)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "schedule": {"scale": 1.0, "best": float("inf")}, "rng": torch.get_rng_state()}


def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_roundtrip_of_every_stored_dtype_and_layout(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    state = {"model": {"t": base.t(),  # non-contiguous view
                       "shared_a": base[0], "shared_b": base[1],  # views of one storage
                       "bf16": torch.randn(5).to(torch.bfloat16), "f16": torch.randn(2, 2).half(),
                       "f64": torch.randn(3, dtype=torch.float64), "i64": torch.tensor(7),
                       "u8": torch.arange(4, dtype=torch.uint8),
                       "mask": torch.tensor([True, False]),
                       "empty": torch.zeros(0, 3)},
             "opt": {0: {"buf": torch.ones(2)}, 1: {"buf": None}},
             "groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}
    path = save_checkpoint(tmp_path / "c.safetensors", state, {"model": "m"})
    got, meta = load_checkpoint(path)
    assert meta == {"model": "m"}
    for k, v in state["model"].items():
        assert got["model"][k].dtype == v.dtype and torch.equal(got["model"][k], v), k
    assert set(got["opt"]) == {0, 1} and got["opt"][1]["buf"] is None
    assert got["groups"][0]["betas"] == (0.9, 0.99)
    # A standard safetensors reader reads our writer's files.
    plain = load_file(str(path))
    assert torch.equal(plain["/model/t"], base.t()) and plain["/model/bf16"].dtype == torch.bfloat16


def test_best_checkpoint_holds_weights_and_metadata_only_and_loads_everywhere(tmp_path):
    model = _model()
    last = save_checkpoint(tmp_path / ckpt.LAST, _full_state(model), _meta())
    best = copy_checkpoint(last, tmp_path / ckpt.BEST)
    assert set(load_file(str(best))) == {f"/model/{k}" for k in model.state_dict()}
    # the optimiser's momentum buffers (one per parameter) are not in the best checkpoint
    n_params = sum(p.numel() for p in model.parameters())
    assert last.stat().st_size - best.stat().st_size >= 4 * n_params
    assert read_meta(best) == read_meta(last)
    for path in (best, last, tmp_path):  # eval/export read both kinds, and run directories
        loaded, meta = load_model(path)
        assert meta["model"] == "prelunet_small" and not loaded.training
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
    # a weights-only checkpoint cannot be resumed: one clear message naming the last one
    with pytest.raises(CheckpointError, match=r"weights only.*resume from .*checkpoint-last"):
        load_checkpoint(best, for_resume=True)
    state, _ = load_checkpoint(last, for_resume=True)
    assert set(state) == {"model", "optimizer", "schedule", "rng"}


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / ckpt.LAST
    save_checkpoint(path, {"model": _model().state_dict()}, _meta())
    before = path.read_bytes()

    def write_then_fill_the_disk(target, tensors, metadata):
        target.write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_safetensors", write_then_fill_the_disk)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(path, {"model": _model().state_dict()}, _meta(step=99))
    message = str(info.value)
    assert isinstance(info.value, UserError) and isinstance(info.value, OSError)
    assert str(path) in message and "no space left" in message and "intact" in message
    assert "\n" not in message and "Errno" not in message
    assert path.read_bytes() == before  # byte-identical
    assert _files(tmp_path) == [ckpt.LAST]  # no half-written temporary left behind
    monkeypatch.undo()
    assert read_meta(path)["step"] == 8


def test_tampered_tensors_fail_the_checksum_naming_file_and_tensor(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": _model().state_dict()}, _meta())
    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_len])
    key = "/model/classifier.fc3.weight"
    start = 8 + header_len + header[key]["data_offsets"][0]
    data[start + 5] ^= 0x40  # one flipped bit: still finite, still parseable
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.safetensors fails its checksum") as info:
        load_model(path)
    assert key in str(info.value)
    assert not weights_finite(path)


def test_non_finite_weights_are_never_written_over_a_good_checkpoint(tmp_path):
    path = tmp_path / ckpt.LAST
    good = _model().state_dict()
    save_checkpoint(path, {"model": good}, _meta())
    before = path.read_bytes()
    bad = {k: v.clone() for k, v in good.items()}
    next(v for v in bad.values() if v.is_floating_point())[0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="not finite.*left as it was"):
        save_checkpoint(path, {"model": bad}, _meta(step=9))
    assert path.read_bytes() == before
    assert weights_finite(path)


def test_a_checkpoint_with_non_finite_weights_is_refused_on_load(tmp_path):
    sd = _model().state_dict()
    sd["classifier.fc1.weight"] = sd["classifier.fc1.weight"].clone()
    sd["classifier.fc1.weight"][0, 0] = float("inf")
    path = save_checkpoint(tmp_path / "nan.safetensors", {"model": sd}, _meta(),
                           require_finite=False)
    assert not weights_finite(path)
    assert not weights_finite(tmp_path / "missing.safetensors")
    for load in (load_model, load_checkpoint):
        with pytest.raises(NonFiniteWeightsError, match=r"nan\.safetensors.*fc1\.weight"):
            load(path)


def test_metadata_without_model_names_the_file_and_what_is_missing(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": _model().state_dict()},
                           {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*lacks 'model', 'num_classes'"):
        load_model(path)
    path = save_checkpoint(tmp_path / "d.safetensors", {"model": _model().state_dict()},
                           _meta(model="resnet_404"))
    with pytest.raises(CheckpointError, match=r"d\.safetensors.*resnet_404"):
        load_model(path)


def _hand_made(path, skeleton, tensors, **header):
    meta = {"format": ckpt.FORMAT, "version": "1", "meta": json.dumps(_meta()),
            "state": json.dumps(skeleton), **header}
    save_file(tensors, str(path), metadata=meta)
    return path


def test_a_state_naming_a_missing_tensor_is_a_checkpoint_error(tmp_path):
    sd = _model().state_dict()
    tensors = {f"/model/{k}": v.contiguous() for k, v in sd.items()}
    skeleton = {"model": {k: {"__tensor__": f"/model/{k}"} for k in sd}}
    del tensors["/model/classifier.fc1.weight"]
    path = _hand_made(tmp_path / "c.safetensors", skeleton, tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with pytest.raises(CheckpointError,
                           match=r"c\.safetensors.*'/model/classifier\.fc1\.weight'"):
            load_model(path)
        # a state without "model" at all
        path = _hand_made(tmp_path / "o.safetensors", {"optimizer": {}}, {"x": torch.ones(1)})
        with pytest.raises(CheckpointError, match=r"o\.safetensors holds no model"):
            load_model(path)


def test_version_1_checkpoints_without_checksums_load_with_a_warning(tmp_path):
    model = _model()
    sd = model.state_dict()
    skeleton = {"model": {k: {"__tensor__": f"/model/{k}"} for k in sd},
                "optimizer": {"state": {}}}
    path = _hand_made(tmp_path / "old.safetensors", skeleton,
                      {f"/model/{k}": v.contiguous() for k, v in sd.items()})
    with pytest.warns(CheckpointWarning, match=r"old\.safetensors has no checksums"):
        loaded, _ = load_model(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
    with pytest.warns(CheckpointWarning):
        state, _ = load_checkpoint(path, for_resume=True)  # version 1 with an optimizer
    assert "optimizer" in state
    # ...and copying it (best from last) writes a verified version-2 file
    with pytest.warns(CheckpointWarning):
        best = copy_checkpoint(path, tmp_path / "best.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        load_model(best)


@pytest.mark.parametrize("header, match", [
    ({"version": "99"}, "version 99.*upgrade"),
    ({"version": "x"}, "invalid checkpoint version"),
    ({"state": "{not json"}, "'state' is not JSON"),
    ({"format": "other"}, "not a rectifiers checkpoint"),
])
def test_damaged_headers_give_one_clear_error(tmp_path, header, match):
    path = _hand_made(tmp_path / "h.safetensors", {"model": {}}, {"x": torch.ones(1)}, **header)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": _model().state_dict()}, _meta())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"c\.safetensors"):
        load_model(path)


def _rewrite_header(path, change):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(header)
    save_file(tensors, str(path), metadata=header)


def test_edited_metadata_fails_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": _model().state_dict()}, _meta())

    def edit(header):
        meta = json.loads(header["meta"])
        meta["normalization"] = {"mean": [0.0], "std": [100.0]}
        header["meta"] = json.dumps(meta, sort_keys=True)

    _rewrite_header(path, edit)
    for read in (read_meta, load_model, load_checkpoint):
        with pytest.raises(CheckpointError, match=r"c\.safetensors fails its checksum: its meta"):
            read(path)


def test_a_version_2_file_whose_checksums_were_removed_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": _model().state_dict()}, _meta())
    _rewrite_header(path, lambda h: h.pop("sha256"))
    with pytest.raises(CheckpointError, match=r"c\.safetensors is damaged: .* no 'sha256'"):
        load_model(path)
