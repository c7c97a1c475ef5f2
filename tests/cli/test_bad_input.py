"""Bad inputs to every command end in one clear message, exit code 2, and no lost files.

Each case runs ``python -m rectifiers <command> ...`` as a subprocess (as a user would) on tiny
generated data and asserts: the exit code (2 for a user error), no ``Traceback`` anywhere in the
output, and a message that names the offending file or flag. Cases that must not lose anything
compare the files that existed before byte for byte afterwards.

Mechanisms that also work as root (CI runs as root, where ``chmod`` does not stop writes):

* read-only directories: as root the child drops to uid/gid 65534 ("nobody") in ``preexec_fn``
  and the inputs live in a world-readable temporary directory; a probe first checks that the
  directory really is unwritable for the child, and the case is skipped with the reason if not;
* a full disk: the child runs with ``RLIMIT_FSIZE`` set below the size of the file it must write
  and ``SIGXFSZ`` ignored, so the write fails with ``EFBIG`` ("File too large") exactly where a
  full disk would fail with ``ENOSPC``.

Cases whose fix is pending in another engineer's file are ``xfail(strict=False)`` naming the
owner (see /work/coord/requests-to-<owner>.md while the work is in progress).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from badinput_helpers import (
    FM_FILES,
    TINY_TRAIN,
    Result,
    cli_env,
    copy_run,
    idx_bytes,
    rectifiers,
    snapshot,
    tiny_fashion_arrays,
    valid_jpeg_bytes,
    write_fashion_mnist,
    write_image_folder,
)

BEST = "checkpoint-best.safetensors"
LAST = "checkpoint-last.safetensors"


slow = pytest.mark.slow  # redundant variants: the default run keeps one case of each kind


def pending(owner: str, why: str = "") -> pytest.MarkDecorator:
    """A case whose fix is pending in a file ``owner`` writes."""
    return pytest.mark.xfail(strict=False, reason=f"owner: {owner}" + (f" ({why})" if why else ""))


def flag(name: str) -> str:
    """Regex naming a flag as ``--grad-clip`` or as its config field ``grad_clip``."""
    bare = name.lstrip("-")
    return f"--{re.escape(bare)}|{re.escape(bare.replace('-', '_'))}"


def assert_user_error(r: Result, *needles: str, rc: int | tuple[int, ...] = 2) -> None:
    """No traceback, the expected exit code, and every regex in ``needles`` in the output."""
    assert "Traceback" not in r.out, f"a traceback for a user error:\n{r}"
    codes = (rc,) if isinstance(rc, int) else rc
    assert r.rc in codes, f"exit code {r.rc}, expected {codes}:\n{r}"
    for n in needles:
        assert re.search(n, r.out), f"the message should name /{n}/:\n{r}"


def no_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


# ============================================================================ Fashion-MNIST files
def _damage(root: Path, kind: str, split: str) -> str:
    """Damage one split of the Fashion-MNIST copy in ``root``; returns the regex of the file."""
    img_name, lab_name = FM_FILES[split]
    img, lab = root / img_name, root / lab_name
    n = 96 if split == "train" else 48
    images, labels = tiny_fashion_arrays(n, 0 if split == "train" else 1)
    if kind == "truncated_gzip":
        data = img.read_bytes()
        img.write_bytes(data[: len(data) // 2])
        return re.escape(img_name)
    if kind == "wrong_magic":
        raw = bytearray(idx_bytes(images))
        raw[0:2] = b"\x08\x03"
        img.write_bytes(gzip.compress(bytes(raw)))
        return re.escape(img_name)
    if kind == "truncated_payload":
        img.write_bytes(gzip.compress(idx_bytes(images)[:-300]))
        return re.escape(img_name)
    if kind == "swapped":
        a, b = img.read_bytes(), lab.read_bytes()
        img.write_bytes(b)
        lab.write_bytes(a)
        return f"{re.escape(img_name)}|{re.escape(lab_name)}"
    if kind == "label_out_of_range":
        labels = labels.copy()
        labels[5] = 12
        lab.write_bytes(gzip.compress(idx_bytes(labels)))
        return re.escape(lab_name)
    if kind == "count_mismatch":
        lab.write_bytes(gzip.compress(idx_bytes(labels[:-1])))
        return f"{re.escape(img_name)}|{re.escape(lab_name)}"
    if kind == "not_gzip":
        img.write_bytes(b"<html>404 Not Found</html>\n" * 20)
        return re.escape(img_name)
    raise AssertionError(kind)


DAMAGES = ["truncated_gzip", "wrong_magic", "truncated_payload", "swapped", "label_out_of_range",
           "count_mismatch", "not_gzip"]


@pytest.fixture
def damaged_fm(tmp_path, fm_dir):
    def make(kind: str, split: str) -> tuple[Path, str]:
        root = tmp_path / f"fm-{kind}"
        shutil.copytree(fm_dir, root)
        return root, _damage(root, kind, split)
    return make


@pytest.mark.parametrize("kind", DAMAGES)
def test_train_on_damaged_fashion_mnist(kind, damaged_fm, tmp_path):
    root, needle = damaged_fm(kind, "train")
    r = rectifiers("train", "--data-dir", root, *TINY_TRAIN, "--out-dir", tmp_path / "run")
    assert_user_error(r, needle)


@pytest.mark.parametrize("kind", ["truncated_gzip", pytest.param("label_out_of_range", marks=slow),
                                  pytest.param("swapped", marks=slow)])
def test_eval_on_damaged_fashion_mnist(kind, damaged_fm, trained_run):
    root, needle = damaged_fm(kind, "test")
    r = rectifiers("eval", trained_run / BEST, "--data-dir", root, "--no-progress")
    assert_user_error(r, needle)


def test_train_data_dir_from_environment(damaged_fm, tmp_path):
    root, needle = damaged_fm("wrong_magic", "train")
    r = rectifiers("train", *TINY_TRAIN, "--out-dir", tmp_path / "run",
                   env=cli_env(RECTIFIERS_DATA=str(root)))
    assert_user_error(r, needle)


@pytest.mark.parametrize("command", ["train", "eval", pytest.param("export", marks=slow),
                                     pytest.param("reproduce", marks=slow), "bench"])
def test_debug_shows_the_traceback_of_a_user_error(command, damaged_fm, tmp_path):
    root, needle = damaged_fm("truncated_gzip", "train")
    missing = str(tmp_path / "missing.safetensors")
    argv = {
        "train": ["train", "--data-dir", root, *TINY_TRAIN, "--no-save"],
        "eval": ["eval", missing],
        "export": ["export", missing],
        "reproduce": ["reproduce", "xor", "--smoke", "--out", root / FM_FILES["train"][0]],
        "bench": ["bench", "--acts", "rectified_magic", "--dry-run", "--out", tmp_path / "b"],
    }[command]
    r = rectifiers(*argv, "--debug")
    assert r.rc != 0 and "Traceback" in r.out, str(r)
    if command == "train":
        assert re.search(needle, r.out), str(r)
        r = rectifiers(*argv, env=cli_env(RECTIFIERS_DEBUG="1"))
        assert r.rc != 0 and "Traceback" in r.out, str(r)


def test_reproduce_on_damaged_fashion_mnist(damaged_fm, tmp_path):
    root, needle = damaged_fm("truncated_payload", "train")
    r = rectifiers("reproduce", "relu-vs-prelu", "--quick", "--data-dir", root,
                   "--out", tmp_path / "rep", "--threads", "1", timeout=180)
    assert_user_error(r, needle)


def test_bench_on_damaged_fashion_mnist(damaged_fm, tmp_path):
    root, needle = damaged_fm("count_mismatch", "train")
    r = rectifiers("bench", "--acts", "relu", "--inits", "he", "--depths", "5", "--widths", "4",
                   "--seeds", "1", "--epochs", "1", "--subset", "64", "--test-subset", "32",
                   "--data-dir", root, "--out", tmp_path / "bench", "--no-cost", "--no-plots",
                   timeout=180)
    assert_user_error(r, needle)


# ============================================================================ image folders
FOLDER_TRAIN = ["--dataset", "folder", *TINY_TRAIN, "--batch-size", "2", "--workers", "0"]


def _bad_folder(root: Path, kind: str) -> str:
    """A tiny image folder with one defect; returns the regex of what the message must name."""
    write_image_folder(root)
    cat = root / "train" / "cat"
    if kind == "truncated_jpeg":
        data = valid_jpeg_bytes(64)
        (cat / "cut.jpg").write_bytes(data[: len(data) // 2])
        return "cut\\.jpg"
    if kind == "zero_byte":
        (cat / "empty.jpg").write_bytes(b"")
        return "empty\\.jpg"
    if kind == "text_as_jpg":
        (cat / "notes.jpg").write_text("these are my notes, not a picture\n")
        return "notes\\.jpg"
    if kind == "empty_class":
        (root / "train" / "cow").mkdir()
        (root / "val" / "cow").mkdir()
        return "cow"
    if kind == "val_classes_differ":
        shutil.rmtree(root / "val" / "dog")
        write_image_folder(root, train={"cat": 3, "dog": 3}, val={"cat": 2, "emu": 2})
        return "dog|emu"
    if kind == "symlink_loop":
        os.symlink("loop.jpg", cat / "loop.jpg")
        return "loop\\.jpg"
    raise AssertionError(kind)


FOLDER_CASES = {
    "truncated_jpeg": None,
    "zero_byte": None,
    "text_as_jpg": None,
    "empty_class": None,
    "val_classes_differ": None,
    "symlink_loop": None,
}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=m) if m else k
                                  for k, m in FOLDER_CASES.items()])
def test_train_on_bad_image_folder(kind, tmp_path):
    root = tmp_path / "images"
    needle = _bad_folder(root, kind)
    r = rectifiers("train", "--data-dir", root, *FOLDER_TRAIN, "--out-dir", tmp_path / "run")
    extra = ["--skip-bad-images"] if kind in ("truncated_jpeg", "zero_byte", "text_as_jpg") else []
    assert_user_error(r, needle, *extra)


def test_skip_bad_images_skips_counts_and_lists_them(tmp_path):
    root = tmp_path / "images"
    _bad_folder(root, "truncated_jpeg")
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    r = rectifiers("train", "--data-dir", root, *FOLDER_TRAIN, "--out-dir", out,
                   "--skip-bad-images")
    assert r.rc == 0 and "Traceback" not in r.out, str(r)
    assert re.search(r"\b2\b.*skip|skip.*\b2\b", r.out, re.I), f"no count of skipped images\n{r}"
    listed = "\n".join(p.read_text(errors="replace") for p in out.rglob("*")
                       if p.is_file() and "skip" in p.name.lower())
    assert "cut.jpg" in listed and "empty.jpg" in listed, f"skipped paths not in {out}\n{r}"


@slow
def test_eval_skip_bad_images(tmp_path):
    root = tmp_path / "images"
    write_image_folder(root)
    out = tmp_path / "run"
    r = rectifiers("train", "--data-dir", root, *FOLDER_TRAIN, "--out-dir", out)
    assert r.rc == 0, str(r)
    (root / "val" / "dog" / "notes.jpg").write_text("not a picture\n")
    r = rectifiers("eval", out, "--data-dir", root, "--no-progress", "--workers", "1")
    assert_user_error(r, "notes\\.jpg", "--skip-bad-images")
    r = rectifiers("eval", out, "--data-dir", root, "--no-progress", "--workers", "1",
                   "--skip-bad-images", "--out-dir", tmp_path / "ev")
    assert r.rc == 0 and "Traceback" not in r.out, str(r)
    assert re.search(r"skip\w* 1\b", r.out, re.I), f"no count of skipped images\n{r}"
    listed = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "ev").rglob("*")
                       if p.is_file() and "skip" in p.name.lower())
    assert "notes.jpg" in listed, str(r)


# ============================================================================ train flags
@pytest.mark.parametrize("argv, needle", [
    pytest.param(["--model-kw", "nonsense=1"], "nonsense", id="model-kw-nonsense"),
    pytest.param(["--model-kw", "fc_dim=-5"], "fc_dim", id="model-kw-negative"),
    pytest.param(["--grad-clip", "-1"], flag("grad-clip"), id="grad-clip-negative"),
    pytest.param(["--sched", "step", "--decay-epochs", "-5", "0"], flag("decay-epochs"),
                 id="decay-epochs-negative"),
    pytest.param(["--act", "rectified_magic"], "rectified_magic.*prelu|prelu.*rectified_magic",
                 id="unknown-act"),
    pytest.param(["--init", "magic_init"], "magic_init.*\\bhe\\b|\\bhe\\b.*magic_init",
                 id="unknown-init"),
    pytest.param(["--model", "resnet9000"], "resnet9000.*prelunet_small", id="unknown-model"),
    pytest.param(["--max-train-samples", "0"], flag("max-train-samples"), id="max-train-zero",
                 marks=slow),
])
def test_train_rejects_bad_flag_before_writing(argv, needle, fm_dir, tmp_path):
    out = tmp_path / "run"
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, *argv, "--out-dir", out)
    assert_user_error(r, needle)
    assert not out.exists() or not any(out.iterdir()), f"files written for a bad flag: {out}"


def test_train_divergence_ends_non_zero_and_says_so(fm_dir, tmp_path):
    out = tmp_path / "run"
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--lr", "100", "--epochs", "3",
                   "--out-dir", out)
    assert_user_error(r, "(?i)diverg", flag("lr"), "(?i)checkpoint", rc=(2, 3))
    if (out / LAST).exists():  # what was kept is a good checkpoint: finite, checksums valid
        from rectifiers.train.checkpoint import load_model

        model, _ = load_model(out / LAST)
        assert all(bool(p.isfinite().all()) for p in model.parameters())


def test_train_refuses_an_existing_run_without_resume(trained_run, fm_dir, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    before = snapshot(run)
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", run)
    assert_user_error(r, flag("resume"), re.escape(str(run)) + "|" + flag("out-dir"))
    assert snapshot(run) == before, "an existing run was modified"


def test_train_out_dir_is_an_existing_file(fm_dir, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", target)
    assert_user_error(r, "notes\\.txt")
    assert target.read_text() == "my notes\n"


@slow
def test_train_out_dir_below_a_file(fm_dir, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", target / "run")
    assert_user_error(r, "notes\\.txt")
    assert target.read_text() == "my notes\n"


def test_resume_from_a_tampered_checkpoint(trained_run, fm_dir, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    _tamper(run / LAST)
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", run, "--resume", "auto")
    assert_user_error(r, re.escape(LAST), "(?i)checksum|tamper|corrupt|modified")


def test_resume_from_a_missing_checkpoint(fm_dir, tmp_path):
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", tmp_path / "run",
                   "--resume", tmp_path / "gone" / "checkpoint-last.safetensors")
    assert_user_error(r, "gone")


# ============================================================================ checkpoints
def _read_st(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _write_st(path: Path, tensors, header) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=header)
    return path


def _tamper(path: Path) -> None:
    """Scale one float of the first model weight by 1.5 in place (stays finite)."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    key = next(k for k in sorted(header) if "model/" in k and k.endswith("weight"))
    start = 8 + n + header[key]["data_offsets"][0]
    (value,) = struct.unpack("<f", raw[start:start + 4])
    raw[start:start + 4] = struct.pack("<f", value * 1.5 + 0.25)
    path.write_bytes(bytes(raw))


@pytest.fixture
def bad_checkpoint(trained_run, tmp_path):
    def make(kind: str) -> Path:
        src = trained_run / BEST
        dst = tmp_path / f"{kind}.safetensors"
        if kind == "tampered":
            shutil.copyfile(src, dst)
            _tamper(dst)
            return dst
        if kind in ("nan_weights", "no_model"):
            # written by the library itself, so every checksum in the file is valid
            from rectifiers.train.checkpoint import load_checkpoint, save_checkpoint

            state, meta = load_checkpoint(src)
            if kind == "no_model":
                del meta["model"]
                return save_checkpoint(dst, state, meta)
            key = next(k for k in state["model"] if k.endswith("weight"))
            state["model"][key].view(-1)[0] = float("nan")
            return save_checkpoint(dst, state, meta, require_finite=False)
        tensors, header = _read_st(src)
        if kind == "edited_meta":  # metadata changed after writing: 'model' deleted
            meta = json.loads(header["meta"])
            del meta["model"]
            header["meta"] = json.dumps(meta)
        elif kind == "missing_tensor":
            key = next(k for k in sorted(tensors) if "model/" in k)
            del tensors[key]
        elif kind == "not_a_checkpoint":
            dst.write_bytes(b"\x00" * 64)
            return dst
        else:
            raise AssertionError(kind)
        return _write_st(dst, tensors, header)
    return make


CKPT_CASES = {
    "no_model": (None, "'model'"),
    "edited_meta": (None, "(?i)checksum|'model'"),
    "missing_tensor": (None, "(?i)tensor"),
    "tampered": (None, "(?i)checksum|tamper|corrupt|modified"),
    "nan_weights": (None, "(?i)nan|non-finite|not finite"),
    "not_a_checkpoint": (None, ""),
}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=m) if m else k
                                  for k, (m, _) in CKPT_CASES.items()])
def test_eval_bad_checkpoint(kind, bad_checkpoint, fm_dir):
    path = bad_checkpoint(kind)
    r = rectifiers("eval", path, "--data-dir", fm_dir, "--no-progress")
    assert_user_error(r, re.escape(path.name), CKPT_CASES[kind][1])


@pytest.mark.parametrize("kind", ["no_model", "missing_tensor", "tampered", "nan_weights"])
def test_export_bad_checkpoint(kind, bad_checkpoint, tmp_path):
    path = bad_checkpoint(kind)
    out = tmp_path / "model.onnx"
    r = rectifiers("export", path, "--format", "torchscript", "--out", out)
    assert_user_error(r, re.escape(path.name), CKPT_CASES[kind][1])
    assert not out.exists()


@slow
def test_eval_run_dir_without_checkpoint(tmp_path, fm_dir):
    (tmp_path / "emptyrun").mkdir()
    r = rectifiers("eval", tmp_path / "emptyrun", "--data-dir", fm_dir)
    assert_user_error(r, "emptyrun")


def test_eval_missing_checkpoint(tmp_path, fm_dir):
    r = rectifiers("eval", tmp_path / "nowhere.safetensors", "--data-dir", fm_dir)
    assert_user_error(r, "nowhere\\.safetensors")


# ============================================================================ eval flags
@pytest.mark.parametrize("argv, needle", [
    pytest.param(["--crop", "1"], flag("crop"), id="crop-1"),
    pytest.param(["--crop", "2"], flag("crop"), id="crop-2", marks=slow),
    pytest.param(["--crop", "3"], flag("crop"), id="crop-3"),
    pytest.param(["--max-samples", "0"], flag("max-samples"), id="max-samples-0"),
    pytest.param(["--max-samples", "-1"], flag("max-samples"), id="max-samples-neg"),
    pytest.param(["--batch-size", "0"], flag("batch-size"), id="batch-size-0", marks=slow),
])
def test_eval_rejects_bad_flag(argv, needle, trained_run, fm_dir, tmp_path):
    r = rectifiers("eval", trained_run / BEST, "--data-dir", fm_dir, "--no-progress", *argv,
                   "--out-dir", tmp_path / "ev")
    assert_user_error(r, needle)
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").iterdir())


@pytest.mark.parametrize("weight", ["nan", "inf", pytest.param("-1", marks=slow)])
def test_eval_rejects_bad_ensemble_weights(weight, trained_run, fm_dir):
    ck = trained_run / BEST
    r = rectifiers("eval", ck, ck, "--weights", "1", weight, "--data-dir", fm_dir,
                   "--no-progress")
    assert_user_error(r, flag("weights"))


# ============================================================================ export
def test_export_input_size_zero(trained_run, tmp_path):
    out = tmp_path / "m.pt"
    r = rectifiers("export", trained_run / BEST, "--format", "torchscript", "--out", out,
                   "--input-size", "1", "0", "0")
    assert_user_error(r, flag("input-size"))
    assert not out.exists()


def test_export_to_a_directory(trained_run, tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    (target / "keep.txt").write_text("keep\n")
    before = snapshot(target)
    r = rectifiers("export", trained_run / BEST, "--format", "torchscript", "--out", target)
    assert_user_error(r, "models")
    assert snapshot(target) == before


# ============================================================================ unwritable places
def _obey_permissions() -> None:
    """``preexec_fn`` for root: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set.

    The child stays uid 0 (so it reads root's files, the venv included) but, after ``exec``,
    no longer has the capabilities that let root ignore permission bits: a directory of mode
    0555 is then unwritable to it, as it is to any user.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture
def locked_dir(tmp_path):
    """An empty directory the command cannot write to, and the ``preexec_fn`` that makes it so.

    Not root: ``chmod 0555`` suffices. Root (CI) ignores permission bits, so its child drops the
    capabilities that allow that (:func:`_obey_permissions`). A probe checks that a write really
    fails; where it does not (no CAP_SETPCAP, a file system without permissions) the test is
    skipped, saying why.
    """
    path = tmp_path / "locked"
    path.mkdir()
    os.chmod(path, 0o555)
    preexec = _obey_permissions if os.geteuid() == 0 else None
    probe = ("import sys, pathlib; p = pathlib.Path(sys.argv[1]) / '.probe'\n"
             "try:\n    p.write_text('x')\nexcept OSError:\n    sys.exit(0)\n"
             "p.unlink(); sys.exit(1)\n")
    try:
        rc = subprocess.run([sys.executable, "-c", probe, str(path)], preexec_fn=preexec,
                            timeout=60).returncode
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot start a child that obeys permission bits here: {e}")
    if rc != 0:
        pytest.skip(f"cannot make {path} unwritable here (root that cannot drop "
                    "CAP_DAC_OVERRIDE, or a file system that ignores permissions)")
    yield path, preexec
    os.chmod(path, 0o755)


def test_train_into_a_read_only_run_dir(locked_dir, fm_dir):
    ro, preexec = locked_dir
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", ro,
                   preexec_fn=preexec)
    assert_user_error(r, "locked")
    assert list(ro.iterdir()) == []


@slow
def test_train_below_a_read_only_dir(locked_dir, fm_dir):
    ro, preexec = locked_dir
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", ro / "run",
                   preexec_fn=preexec)
    assert_user_error(r, "locked")
    assert list(ro.iterdir()) == []


def test_eval_into_a_read_only_output_dir(locked_dir, trained_run, fm_dir):
    ro, preexec = locked_dir
    r = rectifiers("eval", trained_run / BEST, "--data-dir", fm_dir, "--no-progress",
                   "--out-dir", ro, preexec_fn=preexec)
    assert_user_error(r, "locked")
    assert list(ro.iterdir()) == []


def test_export_to_an_unwritable_path(locked_dir, trained_run):
    ro, preexec = locked_dir
    r = rectifiers("export", trained_run / BEST, "--format", "torchscript",
                   "--out", ro / "model.pt", preexec_fn=preexec)
    assert_user_error(r, "locked")
    assert list(ro.iterdir()) == []


# ============================================================================ full disk
def file_size_limit(nbytes: int):
    """``preexec_fn``: files the child writes cannot grow past ``nbytes`` (EFBIG, like ENOSPC)."""
    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def test_train_on_a_full_disk_keeps_the_last_checkpoint(fm_dir, tmp_path):
    run = tmp_path / "run"
    # a run stopped after 3 of its 6 steps, resumed on a "full disk"
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--max-steps", "3", "--out-dir", run)
    assert r.rc == 0, str(r)
    before = {p.name: p.read_bytes() for p in run.glob("checkpoint-*")}
    assert LAST in before, str(r)
    # checkpoints are > 20 kB, the text files < 1 kB: the checkpoint writes are what fails
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", run, "--resume", "auto",
                   preexec_fn=file_size_limit(10_000))
    assert_user_error(r, "(?i)space|disk|too large|full|size limit", re.escape(str(run)))
    assert {p.name: p.read_bytes() for p in run.glob("checkpoint-*")} == before
    assert no_temp_files(run) == []


def test_export_on_a_full_disk(trained_run, tmp_path):
    out = tmp_path / "m.pt"
    r = rectifiers("export", trained_run / BEST, "--format", "torchscript", "--out", out,
                   preexec_fn=file_size_limit(4_000))
    assert_user_error(r, "m\\.pt", "(?i)space|disk|too large|full")
    assert not out.exists() and no_temp_files(tmp_path) == []


# ============================================================================ reproduce / bench
def test_reproduce_unknown_experiment(tmp_path):
    r = rectifiers("reproduce", "nonsense", "--smoke", "--out", tmp_path / "rep")
    assert_user_error(r, "nonsense")


@slow
def test_reproduce_too_few_seeds(tmp_path):
    r = rectifiers("reproduce", "signal", "--smoke", "--seeds", "1", "--out", tmp_path / "rep")
    assert_user_error(r, flag("seeds"))


def test_reproduce_out_is_an_existing_file(tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("mine\n")
    r = rectifiers("reproduce", "xor", "--smoke", "--out", target)
    assert_user_error(r, "report\\.txt")
    assert target.read_text() == "mine\n"


@pytest.mark.parametrize("argv, needle", [
    pytest.param(["--acts", "relu,rectified_magic"], "rectified_magic", id="unknown-act"),
    pytest.param(["--inits", "magic_init"], "magic_init", id="unknown-init", marks=slow),
    pytest.param(["--seeds", "0"], flag("seeds"), id="seeds-0"),
    pytest.param(["--depths", "-3"], flag("depths"), id="depth-negative", marks=slow),
])
def test_bench_rejects_bad_flag(argv, needle, tmp_path):
    r = rectifiers("bench", *argv, "--dry-run", "--out", tmp_path / "bench")
    assert_user_error(r, needle)


def test_bench_out_is_an_existing_file(fm_dir, tmp_path):
    target = tmp_path / "bench.txt"
    target.write_text("mine\n")
    r = rectifiers("bench", "--acts", "relu", "--inits", "he", "--depths", "5", "--widths", "4",
                   "--seeds", "1", "--epochs", "1", "--subset", "64", "--test-subset", "32",
                   "--data-dir", fm_dir, "--out", target, "--no-cost", "--no-plots", timeout=180)
    assert_user_error(r, "bench\\.txt")
    assert target.read_text() == "mine\n"


def test_write_fashion_mnist_fixture_is_valid(tmp_path):
    """The generated data really are valid: the damage, not the fixture, causes the errors."""
    from rectifiers.data import FashionMNIST

    root = write_fashion_mnist(tmp_path / "fm")
    ds = FashionMNIST(root, "train")
    assert len(ds) == 96 and int(ds.labels.max()) == 9
