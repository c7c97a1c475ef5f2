import os

import pytest

from rectifiers.files import atomic_path, atomic_write_text


def test_atomic_write_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"


def test_a_failed_write_keeps_the_old_file_intact(tmp_path):
    target = tmp_path / "ckpt.safetensors"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("boom")
    assert target.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


def test_a_full_disk_is_one_clear_error_and_the_old_file_stays(tmp_path):
    import errno

    from rectifiers.errors import UserError
    from rectifiers.files import DiskFullError

    target = tmp_path / "summary.csv"
    atomic_write_text(target, "old")
    with pytest.raises(DiskFullError) as info, atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise OSError(errno.ENOSPC, "No space left on device")
    e = info.value
    assert isinstance(e, UserError) and isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert str(target) in str(e) and "previous file is intact" in str(e)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_writing_over_a_directory_or_into_an_unwritable_place_names_the_path(tmp_path,
                                                                               monkeypatch):
    import tempfile

    from rectifiers.files import FileWriteError

    (tmp_path / "d").mkdir()
    with pytest.raises(FileWriteError, match=r"d is a directory; give a file name"):
        atomic_write_text(tmp_path / "d", "x")
    (tmp_path / "f").write_text("file")
    with pytest.raises(FileWriteError, match=r"cannot create the directory .*f"):
        atomic_write_text(tmp_path / "f" / "x.txt", "x")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(FileWriteError, match=r"cannot write .*y\.txt: Permission denied"):
        atomic_write_text(tmp_path / "y.txt", "x")


def test_temporaries_of_finds_only_atomic_path_leftovers(tmp_path):
    from rectifiers.files import temporaries_of

    names = [".checkpoint-last.abcd_123.tmp.safetensors",
             ".checkpoint-best.zzzzzzzz.tmp.safetensors",
             ".checkpoint-last.short.tmp.safetensors", "checkpoint-last.safetensors",
             ".log.abcdefgh.tmp.jsonl"]
    for n in names:
        (tmp_path / n).write_text("x")
    found = [p.name for p in temporaries_of(tmp_path / "checkpoint-*.safetensors")]
    assert found == [names[1], names[0]]
    assert [p.name for p in temporaries_of(tmp_path / "log.jsonl")] == [names[4]]
    assert temporaries_of(tmp_path / "missing" / "x.csv") == []


def test_a_file_size_limit_is_reported_like_a_full_disk(tmp_path):
    import errno

    from rectifiers.files import DiskFullError

    with pytest.raises(DiskFullError, match=r"size limit .* while writing .*big\.bin.*nothing "
                       r"was written\. Raise the limit"), atomic_path(tmp_path / "big.bin"):
        raise OSError(errno.EFBIG, "File too large")
    assert list(tmp_path.iterdir()) == []
