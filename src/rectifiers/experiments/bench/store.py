"""The bench directory on disk: ``runs.csv`` (one crash-safe row per finished run), the
per-run test predictions ``preds/<run>.npy`` and the recipe ``bench.json``.

A row is appended (write, flush, fsync) only after its predictions were written atomically, so
a row implies its predictions; a row cut short by a crash is ignored and cut off before the next
append. Resuming with another recipe is an error rather than a silent mix of two recipes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rectifiers.errors import ConfigError
from rectifiers.experiments.bench.grid import KEY_FIELDS, BenchSettings
from rectifiers.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "COST_NAME",
    "CSV_FIELDS",
    "CSV_NAME",
    "PREDS_DIR",
    "RESULT_FIELDS",
    "SETTINGS_NAME",
    "append_row",
    "check_settings",
    "prepare_dir",
    "read_settings",
    "load_preds",
    "read_rows",
    "row_key",
    "save_preds",
]

CSV_NAME = "runs.csv"
SETTINGS_NAME = "bench.json"
COST_NAME = "cost.json"
PREDS_DIR = "preds"

RESULT_FIELDS: tuple[str, ...] = (
    "test_acc", "test_err", "test_acc_final", "val_err", "best_epoch", "train_loss",
    "epochs_done", "wall_s", "diverged", "dead_rate", "never_active", "preds", "device",
    "finished",
)
CSV_FIELDS: tuple[str, ...] = KEY_FIELDS + RESULT_FIELDS

_INT_FIELDS = {"depth", "width", "seed", "epochs", "subset", "epochs_done", "best_epoch"}
_FLOAT_FIELDS = {"test_acc", "test_err", "test_acc_final", "val_err", "train_loss", "wall_s",
                 "dead_rate", "never_active"}


def _parse_row(values: list[str], line_no: int, path: Path) -> dict[str, Any]:
    if len(values) != len(CSV_FIELDS):
        raise ValueError(f"{path}:{line_no}: {len(values)} fields, expected {len(CSV_FIELDS)}")
    row: dict[str, Any] = {}
    for name, value in zip(CSV_FIELDS, values, strict=True):
        if name in _INT_FIELDS:
            row[name] = int(value)
        elif name in _FLOAT_FIELDS:
            row[name] = float(value)  # accepts "nan" and "inf"
        elif name == "diverged":
            if value not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: diverged={value!r}, expected 0 or 1")
            row[name] = value == "1"
        else:
            row[name] = value
    if not row["act"] or not row["init"]:
        raise ValueError(f"{path}:{line_no}: empty act/init")
    return row


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The finished runs in ``path`` (empty if it does not exist).

    A last line without its newline is a row cut short by a crash and is ignored (with a
    warning); so is any line that does not parse. A header that differs from
    :data:`CSV_FIELDS` is an error: the file was written by another version or another tool.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text:
        return []
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # `tail` is "" when the file ends with a newline
    if tail:
        warnings.warn(f"{path}: ignoring a half-written last line (a run interrupted while "
                      f"writing): {tail[:80]!r}", stacklevel=2)
    if not complete:
        return []
    header = next(csv.reader([complete[0]]))
    if tuple(header) != CSV_FIELDS:
        raise ConfigError(f"{path}: header {header} is not the bench header {list(CSV_FIELDS)}; "
                         f"use a new --out-dir for this version of the bench")
    rows = []
    for i, line in enumerate(complete[1:], start=2):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(next(csv.reader([line])), i, path))
        except (ValueError, StopIteration) as exc:
            warnings.warn(f"{path}:{i}: ignoring a malformed row ({exc})", stacklevel=2)
    return rows


def _drop_partial_tail(path: Path) -> None:
    """Cut a half-written last line off, so the next append starts on a line of its own."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _format(name: str, value: Any) -> str:
    if name == "diverged":
        return "1" if value else "0"
    if name in _FLOAT_FIELDS:
        return repr(float(value))  # round-trips exactly, including nan/inf
    return str(value)


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one finished run (header first if the file is new), flushed and fsynced, so a
    crash loses at most the run in progress, never a finished one."""
    path = Path(path)
    missing = sorted(set(CSV_FIELDS) - set(row))
    if missing:
        raise ValueError(f"row lacks fields {missing}")
    for name in ("act", "init", "preds", "device"):
        if any(c in str(row[name]) for c in ",\n\r\""):
            raise ValueError(f"{name}={row[name]!r} contains a comma, quote or newline")
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        _drop_partial_tail(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if new:
        writer.writerow(CSV_FIELDS)
    writer.writerow([_format(n, row[n]) for n in CSV_FIELDS])
    with open(path, "a", encoding="utf-8") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row[f] for f in KEY_FIELDS)


def save_preds(path: Path, preds: np.ndarray) -> None:
    buf = io.BytesIO()
    # int16 holds any class index of a small-classifier bench and keeps a 10k-run file at 20 kB
    np.save(buf, np.asarray(preds).astype(np.int16), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def load_preds(out_dir: Path, rel: str) -> np.ndarray | None:
    p = out_dir / rel
    if not rel or not p.is_file():
        return None
    return np.load(p, allow_pickle=False)


def prepare_dir(out_dir: Path) -> None:
    """Create the bench directory (and ``preds/``); a path that is a file or cannot be
    written is a user error with one message."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is an existing file, not a directory; "
                          "choose a directory")
    try:
        (out_dir / PREDS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out-dir {out_dir}: cannot create it ({exc.strerror or exc}); "
                          "choose a writable directory") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--out-dir {out_dir} is not writable; choose a writable directory")


def read_settings(out_dir: Path) -> dict[str, Any] | None:
    """The recipe stored in ``bench.json`` (None if there is none yet)."""
    path = out_dir / SETTINGS_NAME
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable bench recipe ({exc}); restore it or use "
                          "a new --out-dir") from exc
    if not isinstance(stored, dict):
        raise ConfigError(f"{path} is not a bench recipe (a JSON object); use a new --out-dir")
    return stored


def check_settings(out_dir: Path, settings: BenchSettings) -> None:
    """Store the recipe on the first run; on a resume refuse a different one."""
    path = out_dir / SETTINGS_NAME
    recipe = settings.recipe()
    stored = read_settings(out_dir)
    if stored is not None:
        diff = {k: (stored.get(k), v) for k, v in recipe.items() if stored.get(k) != v}
        if diff:
            desc = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{out_dir} holds runs of another recipe ({desc}). Pass the same "
                             f"settings to resume, or use a new --out-dir.")
    else:
        atomic_write_text(path, json.dumps(recipe, indent=2, sort_keys=True) + "\n")
