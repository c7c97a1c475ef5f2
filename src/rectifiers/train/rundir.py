"""Run directories: nothing a user saved is lost when a training run starts.

:func:`prepare_run_dir` is called once (on rank 0) before a run writes anything into its
``--out-dir``. It refuses to reuse a directory that already holds a run unless the run is resumed
(``--resume auto`` or a checkpoint in that directory) or ``--overwrite`` is given, which deletes
that run's files first; it names the directory when it is a file or cannot be written; it removes
the temporaries that writes killed mid-way left behind (``.checkpoint-last.*.tmp.safetensors``);
and it repairs ``log.jsonl`` to the checkpoint the run continues from (:func:`repair_steplog`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rectifiers.errors import UserError
from rectifiers.files import FileWriteError, atomic_write_text, temporaries_of
from rectifiers.train.checkpoint import (
    BEST,
    CONTENTS_TRAINING,
    LAST,
    CheckpointError,
    _contents,
    _header,
    _json,
    resolve,
)

__all__ = ["RUN_FILES", "STEPLOG", "RunDir", "prepare_run_dir", "repair_steplog"]

STEPLOG = "log.jsonl"
# Every file a training run writes into its directory (what --overwrite replaces).
RUN_FILES = (LAST, BEST, STEPLOG, "summary.csv", "final.json", "curves.png", "args.yaml",
             "args.json", "skipped_images.txt", "skipped_images_val.txt")


@dataclass
class RunDir:
    """What :func:`prepare_run_dir` found: where to write and what to continue from."""

    path: Path
    resume_path: Path | None  # the checkpoint to resume from; None: a fresh start
    step: int  # the step the run continues from (0 for a fresh start)
    removed: list[Path]  # temporaries of killed writes (and, with overwrite, the old run)


def _run_files(out: Path) -> list[Path]:
    names = set(RUN_FILES) | {p.name for p in out.glob("checkpoint-*.safetensors")}
    return sorted(out / n for n in names if (out / n).is_file() or (out / n).is_symlink())


def _refuse_reuse(out: Path, found: list[Path], why: str) -> UserError:
    return UserError(
        f"--out-dir {out} already holds a training run ({', '.join(p.name for p in found)}); "
        f"{why}. Nothing was changed. To continue that run use --resume auto; to keep it, "
        "train into a new --out-dir; to replace it, add --overwrite")


def prepare_run_dir(out: str | os.PathLike, resume: str | None = None,
                    overwrite: bool = False) -> RunDir:
    """Make ``out`` ready for a run without losing anything a user saved. Call once, on rank 0,
    before the run writes any file.

    * ``out`` must be a directory that can be created and written (else :class:`UserError`
      naming it);
    * a directory already holding a run (checkpoints, logs) is refused unless the run is
      resumed (``resume="auto"`` or a checkpoint in ``out``) or ``overwrite`` is set, which
      deletes that run's files first;
    * temporaries of writes killed mid-way (``.checkpoint-last.*.tmp.safetensors``, ...) are
      removed;
    * ``log.jsonl`` is repaired to the checkpoint the run continues from (:func:`repair_steplog`):
      lines of steps about to be redone, lines cut by a kill and the duplicates of an earlier
      restart are dropped.
    """
    out = Path(out)
    if resume and overwrite:
        raise UserError("--overwrite replaces the run in --out-dir and --resume continues it: "
                        "give only one of them")
    if out.exists() and not out.is_dir():
        raise FileWriteError(f"--out-dir {out} is an existing file, not a directory: choose a "
                             "directory path (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise FileWriteError(e.errno, f"--out-dir {out} cannot be written: {e.strerror or e}. "
                             "Choose a writable directory") from e

    removed = [t for name in (*RUN_FILES, "checkpoint-*.safetensors")
               for t in temporaries_of(out / name)]
    for t in removed:
        t.unlink(missing_ok=True)
    found = _run_files(out)

    resume_path: Path | None = None
    if not resume:
        if found and not overwrite:
            has_ckpt = any(f.name.startswith("checkpoint-") for f in found)
            raise _refuse_reuse(out, found, (
                "training again without --resume would replace its checkpoints and append to "
                "its log") if has_ckpt else (
                "it stopped before its first checkpoint; --resume auto starts it again"))
        for f in found:
            f.unlink()
        removed += found
    elif resume == "auto":
        if (out / LAST).is_file():
            resume_path = out / LAST
        elif (out / BEST).is_file():
            raise _refuse_reuse(out, found, f"--resume auto found no {LAST} to continue from, "
                                f"and a fresh start would replace {BEST}")
    else:
        resume_path = resolve(resume, prefer="last")
        if found and resume_path.parent.resolve() != out.resolve():
            raise _refuse_reuse(out, found, f"resuming {resume_path} into it would mix two runs")
    step: int | None = 0
    if resume_path is not None:
        header = _header(resume_path)
        if _contents(header, _json(header, "state", resume_path)) != CONTENTS_TRAINING:
            raise CheckpointError(
                f"{resume_path} holds the model weights only (a best checkpoint, for eval and "
                f"export), not the training state needed to resume; resume from "
                f"{resume_path.parent / LAST}")
        meta = _json(header, "meta", resume_path)
        step = meta.get("step") if isinstance(meta, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            step = None  # not written by a training run: leave the log alone
    if step is not None:
        repair_steplog(out / STEPLOG, step)
    return RunDir(out, resume_path, step or 0, removed)


def repair_steplog(path: str | os.PathLike, step: int) -> bool:
    """Keep the lines of ``log.jsonl`` that lead to the checkpoint at ``step``.

    Drops lines cut by a kill (not JSON), lines of steps after ``step`` (they are about to be
    redone) and, where the step count goes back (a run restarted without truncating its log,
    e.g. killed during its first checkpoint write), the lines of the abandoned attempt. Rewrites
    the file atomically, and only if something changes; returns whether it did.
    """
    path = Path(path)
    if not path.is_file():
        return False
    raw = path.read_bytes()
    kept: list[tuple[int, str]] = []  # (step, line)
    last = 0
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        s = rec.get("step")
        if not isinstance(s, int) or isinstance(s, bool):
            kept.append((last, line))
            continue
        while kept and kept[-1][0] >= s:  # the run went back: an earlier attempt ends here
            kept.pop()
        kept.append((s, line))
        last = s
    lines = [line for s, line in kept if s <= step]
    text = "".join(f"{line}\n" for line in lines)
    if text.encode("utf-8") == raw:
        return False
    atomic_write_text(path, text)
    return True

