"""Checkpoints: one safetensors file per checkpoint, metadata as JSON in its header. No pickle.

Format (``FORMAT``, version 2). A checkpoint is a single ``.safetensors`` file:

* tensors: every tensor of the saved state under its key path, ``/``-joined, e.g.
  ``/model/features.0.weight``, ``/optimizer/state/3/momentum_buffer``, ``/ranks/0/rng/torch``;
* header metadata (``dict[str, str]`` in safetensors): ``format``, ``version``, ``meta`` (JSON:
  model name/kwargs, num_classes, in_chans, normalisation, dataset, config, epoch, step),
  ``state`` (JSON skeleton of the nested state in which each tensor is replaced by
  ``{"__tensor__": key}``), ``contents`` (``"training"``: everything needed to resume, or
  ``"weights"``: the model only) and ``sha256`` (JSON ``{key: hex digest}`` of every tensor's
  dtype, shape and bytes, plus ``"__header__"``: the digest of ``contents``, ``meta`` and
  ``state``).

Two kinds of checkpoint, as in timm: ``checkpoint-last`` holds the full training state (model,
optimiser momentum, grad scaler, schedule, every rank's RNG and data-loader position) and is
what ``--resume`` continues bit-exactly; ``checkpoint-best`` holds only what evaluation and
export need (the weights and the metadata), so a run costs one full state plus one model, not
two full states. :func:`load_model` (eval, export) reads either kind.

Integrity: every load recomputes the digests of the header and of the tensors it reads and
refuses a file whose metadata or tensors differ from the ones written (damaged or edited),
whose state names a tensor the file lacks, or whose model weights are not finite -- each with
one :class:`CheckpointError` naming the file. The digests detect accidents and naive edits,
not a forger who rewrites them too.
Version-1 files (no digests) still load, with a :class:`CheckpointWarning`.

Writing: the file is written by this module (header, then each tensor's bytes straight from
memory: no second copy of the state) into a temporary file in the same directory, fsync'ed and
renamed over the target (:func:`rectifiers.files.atomic_path`): a kill or a full disk at any
moment leaves the previous checkpoint intact. Loading never executes code: tensors come from
safetensors, everything else from ``json.loads``.

Run directories (refusing to reuse one, cleaning temporaries, repairing the step log) are
:mod:`rectifiers.train.rundir`'s job; its names are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rectifiers.errors import UserError
from rectifiers.files import atomic_path

__all__ = [
    "BEST", "LAST", "RUN_FILES", "CheckpointError", "CheckpointWarning", "NonFiniteWeightsError",
    "RunDir", "build_model_from_meta", "check_model_state", "copy_checkpoint", "load_checkpoint",
    "load_model", "prepare_run_dir", "read_meta", "repair_steplog", "resolve", "save_checkpoint",
    "weights_finite",
]

FORMAT = "rectifiers.checkpoint"
VERSION = 2  # 2: sha256 digests and "contents" in the header; 1: neither (read with a warning)
LAST = "checkpoint-last.safetensors"
BEST = "checkpoint-best.safetensors"
CONTENTS_TRAINING = "training"
CONTENTS_WEIGHTS = "weights"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class NonFiniteWeightsError(CheckpointError):
    """Model weights hold NaN or inf: such a state is never written and never loaded."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but cannot be fully verified (written before checksums)."""


# --------------------------------------------------------------------------- encoding


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references; returns a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        # contiguous(): channels_last weights are stored in the canonical layout. No clone: the
        # writer copies the bytes straight to the file.
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if "__tensor__" in obj or "__items__" in obj or "__tuple__" in obj:
                raise CheckpointError(f"reserved key in state at {key!r}")
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in obj.items()}
        # Non-string keys (optimizer state is keyed by int): keep them as typed pairs.
        return {"__items__": [[k, _encode(v, f"{key}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(
        f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint "
        "(only tensors, dicts, lists, tuples, numbers, strings and None)"
    )


def _refs(obj: Any) -> list[str]:
    """Tensor keys a skeleton refers to, in order."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return [obj["__tensor__"]]
        if "__items__" in obj:
            return [r for _, v in obj["__items__"] for r in _refs(v)]
        if "__tuple__" in obj:
            return [r for v in obj["__tuple__"] for r in _refs(v)]
        return [r for v in obj.values() for r in _refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _refs(v)]
    return []


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


# --------------------------------------------------------------------------- tensor bytes

# torch dtype -> safetensors dtype name
_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def _bytes(t: torch.Tensor) -> memoryview:
    """The tensor's bytes (little-endian, row-major) without a copy for contiguous CPU tensors."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def _digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (a reinterpreted header changes it too)."""
    h = hashlib.sha256(f"{_DTYPES.get(t.dtype, t.dtype)}{list(t.shape)}".encode())
    h.update(_bytes(t))
    return h.hexdigest()


_HEADER_KEY = "__header__"  # the digest of the header's own entries (tensor keys start with /)


def _header_digest(header: dict[str, str]) -> str:
    """sha256 of the header entries that describe the state: contents, meta, state."""
    h = hashlib.sha256()
    for k in ("contents", "meta", "state"):
        h.update(f"{k}\0{header.get(k, '')}\0".encode())
    return h.hexdigest()


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor],
                       metadata: dict[str, str]) -> None:
    """Write a safetensors file (8-byte header length, JSON header, tensor bytes)."""
    for k, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise CheckpointError(f"cannot store tensor {k!r} of dtype {t.dtype} in a checkpoint")
    # Largest elements first, as the reference writer does: every tensor stays aligned.
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for k in order:
        n = tensors[k].numel() * tensors[k].element_size()
        header[k] = {"dtype": _DTYPES[tensors[k].dtype], "shape": list(tensors[k].shape),
                     "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for k in order:
            f.write(_bytes(tensors[k]))


# --------------------------------------------------------------------------- files


def _model_refs(skeleton: Any) -> list[str]:
    return _refs(skeleton.get("model")) if isinstance(skeleton, dict) else []


def _nonfinite(tensors: dict[str, torch.Tensor], keys: Iterable[str]) -> list[str]:
    bad = []
    for k in keys:
        t = tensors[k]
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad.append(k)
    return bad


def _short(keys: list[str], n: int = 3) -> str:
    names = ", ".join(k.removeprefix("/model/") for k in keys[:n])
    return names + (f" and {len(keys) - n} more" if len(keys) > n else "")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], meta: dict[str, Any], *,
                    require_finite: bool = True) -> Path:
    """Atomically save a nested ``state`` (tensors + plain values) and JSON ``meta`` to ``path``.

    ``state`` usually holds ``model`` (a state_dict), ``optimizer``, ``scaler``, ``rng`` and
    ``loader`` states; ``meta`` describes the model so :func:`load_model` can rebuild it. A state
    with only ``model`` is a weights-only checkpoint (``contents == "weights"``).

    Raises:
        NonFiniteWeightsError: ``state["model"]`` holds NaN/inf (with ``require_finite``); the
            file at ``path`` is left as it was -- a diverged run never replaces a good
            checkpoint.
        rectifiers.files.DiskFullError: the disk filled up; the previous file is intact.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, "", tensors)
    if require_finite:
        bad = _nonfinite(tensors, _model_refs(skeleton))
        if bad:
            raise NonFiniteWeightsError(
                f"not writing {path}: the model weights are not finite (NaN/inf in "
                f"{_short(bad)}); the training diverged. {path.name} was left as it was")
    contents = CONTENTS_WEIGHTS if set(state) <= {"model"} else CONTENTS_TRAINING
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "contents": contents,
        "meta": json.dumps(meta, sort_keys=True),
        "state": json.dumps(skeleton),
    }
    digests = {k: _digest(t) for k, t in tensors.items()}
    digests[_HEADER_KEY] = _header_digest(header)
    header["sha256"] = json.dumps(digests, sort_keys=True)
    with atomic_path(path) as tmp:
        _write_safetensors(tmp, tensors, header)
    return path


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *,
                    weights_only: bool = True) -> Path:
    """Atomically copy a checkpoint (``checkpoint-best`` from ``-last``).

    By default only the model weights and the metadata are copied: what evaluation and export
    need, a fraction of a training state that carries momentum buffers. The source is verified.
    """
    src, dst = Path(src), Path(dst)
    parts = ("model",) if weights_only else None
    header, skeleton, tensors = _read(src, parts=parts)
    state = {k: _decode(skeleton[k], tensors) for k in (parts or skeleton)}
    return save_checkpoint(dst, state, json.loads(header["meta"]))


def resolve(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file, or a run directory -> its best (or last) checkpoint."""
    p = Path(path)
    if p.is_dir():
        order = (BEST, LAST) if prefer == "best" else (LAST, BEST)
        for name in order:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"no checkpoint in directory {p} (looked for {' and '.join(order)})")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    return p


def _header(p: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{p} is not a readable safetensors checkpoint: {e}") from e
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{p} is a safetensors file but not a rectifiers checkpoint "
            f"(header format={header.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        version = int(header.get("version", "0"))
    except ValueError:
        version = -1
    if version < 1:
        raise CheckpointError(f"{p} has an invalid checkpoint version {header.get('version')!r}")
    if version > VERSION:
        raise CheckpointError(f"{p} has checkpoint version {version}; "
                              f"this rectifiers reads up to {VERSION}: upgrade rectifiers")
    for field in ("meta", "state") + (("sha256", "contents") if version >= 2 else ()):
        if field not in header:
            raise CheckpointError(f"{p} is damaged: its header has no '{field}' entry")
    if version >= 2:
        digests = _json(header, "sha256", p)
        if not isinstance(digests, dict) or digests.get(_HEADER_KEY) != _header_digest(header):
            raise CheckpointError(
                f"{p} fails its checksum: its metadata is not what was written (the file was "
                "damaged or modified). Use another checkpoint")
    return header


def _json(header: dict[str, str], field: str, p: Path) -> Any:
    try:
        return json.loads(header[field])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p} is damaged: its header's '{field}' is not JSON ({e})") from e


def _read(p: Path, parts: tuple[str, ...] | None = None
          ) -> tuple[dict[str, str], Any, dict[str, torch.Tensor]]:
    """Header, state skeleton and the verified tensors of ``parts`` (None: all) of a file."""
    from safetensors import safe_open

    header = _header(p)
    skeleton = _json(header, "state", p)
    meta = _json(header, "meta", p)
    if not isinstance(skeleton, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"{p} is damaged: its header's 'state' and 'meta' must be objects")
    if parts is not None:
        missing = [k for k in parts if k not in skeleton]
        if missing:
            raise CheckpointError(f"{p} holds no {' or '.join(missing)} state (it holds: "
                                  f"{', '.join(sorted(skeleton)) or 'nothing'})")
        refs = [r for k in parts for r in _refs(skeleton[k])]
    else:
        refs = _refs(skeleton)
    digests = _json(header, "sha256", p) if "sha256" in header else None
    if digests is None:
        warnings.warn(f"{p} has no checksums (written by an older rectifiers, checkpoint version "
                      f"{header.get('version')}): its tensors cannot be verified. Save it again "
                      "to add them", CheckpointWarning, stacklevel=3)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            present = set(f.keys())
            absent = [r for r in refs if r not in present]
            if absent:
                raise CheckpointError(
                    f"{p} is damaged or was edited: its state names tensor(s) "
                    f"{', '.join(repr(r) for r in absent[:3])}{' ...' if len(absent) > 3 else ''}"
                    f" that the file does not hold. Use another checkpoint")
            tensors = {r: f.get_tensor(r) for r in refs}
    except CheckpointError:
        raise
    except Exception as e:  # truncated data, bad offsets: safetensors' own error types
        raise CheckpointError(f"{p} is damaged: its tensors cannot be read ({e})") from e
    if digests is not None:
        for r in refs:
            if digests.get(r) != _digest(tensors[r]):
                raise CheckpointError(
                    f"{p} fails its checksum: tensor {r!r} is not the one that was written (the "
                    "file was damaged or modified). Use another checkpoint")
    return header, skeleton, tensors


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON metadata (cheap: reads the header, not the tensors)."""
    p = resolve(path)
    meta = _json(_header(p), "meta", p)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p} is damaged: its header's 'meta' is not an object")
    return meta


def _contents(header: dict[str, str], skeleton: dict[str, Any]) -> str:
    if "contents" in header:
        return header["contents"]
    return CONTENTS_TRAINING if "optimizer" in skeleton else CONTENTS_WEIGHTS  # version 1


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
    for_resume: bool = False, parts: tuple[str, ...] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint -> ``(state, meta)`` with tensors on ``map_location``.

    Every tensor read is checked against its stored digest and the model weights must be
    finite. ``for_resume=True`` also requires a full training state (not a weights-only best
    checkpoint). ``parts`` (e.g. ``("model",)``) reads only those entries of the state.
    A run directory resolves to its last checkpoint.
    """
    p = resolve(path, prefer="last")
    header, skeleton, tensors = _read(p, parts=parts)
    if "model" not in skeleton:
        raise CheckpointError(f"{p} holds no model weights (its state has: "
                              f"{', '.join(sorted(skeleton)) or 'nothing'})")
    if for_resume and _contents(header, skeleton) != CONTENTS_TRAINING:
        raise CheckpointError(
            f"{p} holds the model weights only (a best checkpoint, for eval and export), not "
            f"the training state needed to resume; resume from {p.parent / LAST}")
    bad = _nonfinite(tensors, _model_refs(skeleton))
    if bad:
        raise NonFiniteWeightsError(
            f"{p} holds non-finite model weights (NaN/inf in {_short(bad)}): it was written "
            "after the training diverged and cannot be used. Use an earlier checkpoint")
    device = torch.device(map_location)
    if device.type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    keys = parts if parts is not None else tuple(skeleton)
    state = {k: _decode(skeleton[k], tensors) for k in keys}
    return state, json.loads(header["meta"])


def weights_finite(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable checkpoint whose model weights are all finite.

    For messages such as "last good checkpoint: X": never call a NaN checkpoint good.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)
            load_checkpoint(path, parts=("model",))
    except CheckpointError:
        return False
    return True


# --------------------------------------------------------------------------- models


def check_model_state(
    model: nn.Module, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], where: str,
    model_name: str | None = None,
) -> None:
    """Raise :class:`CheckpointError` naming both models if the checkpoint does not fit."""
    own = model.state_dict()
    saved_name = meta.get("model", "?")
    mine = model_name or type(model).__name__
    desc = (f"checkpoint {where} holds model '{saved_name}' "
            f"({_describe_kwargs(meta)}), but it is being loaded into '{mine}'")
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{desc}: parameter names differ (missing in checkpoint: {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}; not in model: {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}). Use the same --model/--act/model kwargs.")
    for k, v in own.items():
        if tuple(v.shape) != tuple(state_dict[k].shape):
            raise CheckpointError(
                f"{desc}: shape of '{k}' is {tuple(state_dict[k].shape)} in the checkpoint and "
                f"{tuple(v.shape)} in the model. Use the same --model/--act/num_classes/in_chans.")


def _describe_kwargs(meta: dict[str, Any]) -> str:
    parts = [f"act={meta.get('act')}", f"num_classes={meta.get('num_classes')}",
             f"in_chans={meta.get('in_chans')}"]
    parts += [f"{k}={v}" for k, v in (meta.get("model_kwargs") or {}).items()]
    return ", ".join(parts)


_MODEL_META = ("model", "num_classes", "in_chans")


def build_model_from_meta(meta: dict[str, Any], where: str = "the checkpoint") -> nn.Module:
    """Instantiate the model a checkpoint's metadata describes (weights not initialised:
    they are about to be loaded)."""
    from rectifiers.models import create_model

    missing = [k for k in _MODEL_META if k not in meta]
    if missing:
        raise CheckpointError(f"{where} cannot be loaded: its metadata lacks "
                              f"{', '.join(repr(k) for k in missing)} (it has: "
                              f"{', '.join(sorted(meta)) or 'nothing'})")
    kwargs = meta.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where} is damaged: its metadata's model_kwargs is not an object")
    try:
        return create_model(
            meta["model"], num_classes=int(meta["num_classes"]), in_chans=int(meta["in_chans"]),
            act=meta.get("act", "prelu"), init=None, **kwargs,
        )
    except (TypeError, ValueError, RuntimeError) as e:
        if isinstance(e, UserError):
            raise
        raise CheckpointError(f"{where} describes a model this rectifiers cannot build "
                              f"(model {meta.get('model')!r}): {e}") from e


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (file or run directory; prefers best).

    Works with both kinds of checkpoint (weights-only best, full last); reads only the weights.
    Returns ``(model in eval mode, meta)``; ``meta`` holds ``model``, ``model_kwargs``,
    ``num_classes``, ``in_chans``, ``act``, ``init``, ``normalization``, ``dataset``,
    ``image_size``, ``epoch``, ``step`` and the training ``config``.
    """
    p = resolve(path, prefer="best")
    state, meta = load_checkpoint(p, map_location="cpu", parts=("model",))
    model = build_model_from_meta(meta, where=str(p))
    check_model_state(model, state["model"], meta, str(p), model_name=meta.get("model"))
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), meta


# Re-exported for callers that know them as checkpoint functions (rundir imports this module,
# so the import comes last).
from rectifiers.train.rundir import (  # noqa: E402
    RUN_FILES,
    RunDir,
    prepare_run_dir,
    repair_steplog,
)
