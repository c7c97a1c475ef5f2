"""Checkpoints: one safetensors file per checkpoint, metadata as JSON in its header. No pickle.

Format (``FORMAT``, version 1). A checkpoint is a single ``.safetensors`` file:

* tensors: every tensor of the saved state under its key path, ``/``-joined, e.g.
  ``model/features.0.weight``, ``optimizer/state/3/momentum_buffer``, ``rng/torch``;
* header metadata (``dict[str, str]`` in safetensors): ``format``, ``version``, ``meta`` (JSON:
  model name/kwargs, num_classes, in_chans, normalisation, dataset, config, epoch, step) and
  ``state`` (JSON skeleton of the nested state in which each tensor is replaced by
  ``{"__tensor__": key}``).

Keeping everything in one file makes the write atomic with a single ``os.replace`` (temp file in
the same directory, ``fsync``, rename, ``fsync`` of the directory): a kill at any moment leaves
either the old or the new checkpoint, never a mixed pair. Loading never executes code: tensors
come from safetensors, everything else from ``json.loads``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rectifiers.errors import UserError
from rectifiers.files import atomic_path

FORMAT = "rectifiers.checkpoint"
VERSION = 1
LAST = "checkpoint-last.safetensors"
BEST = "checkpoint-best.safetensors"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


# --------------------------------------------------------------------------- encoding


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references; returns a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        # clone(): safetensors refuses shared storages (and views of one buffer);
        # contiguous(): channels_last weights are stored in the canonical layout.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
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


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Atomically save a nested ``state`` (tensors + plain values) and JSON ``meta`` to ``path``.

    ``state`` usually holds ``model`` (a state_dict), ``optimizer``, ``scaler``, ``rng`` and
    ``loader`` states; ``meta`` describes the model so :func:`load_model` can rebuild it.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, "", tensors)
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "meta": json.dumps(meta, sort_keys=True),
        "state": json.dumps(skeleton),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically copy a checkpoint file (used for ``checkpoint-best`` from ``-last``)."""
    src, dst = Path(src), Path(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


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


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON metadata (cheap: reads the header, not the tensors)."""
    from safetensors import safe_open

    p = resolve(path)
    return json.loads(_header(p, safe_open)["meta"])


def _header(p: Path, safe_open) -> dict[str, str]:
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
    if int(header.get("version", 0)) > VERSION:
        raise CheckpointError(f"{p} has checkpoint version {header['version']}; "
                              f"this rectifiers reads up to {VERSION}: upgrade rectifiers")
    return header


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint -> ``(state, meta)`` with tensors on ``map_location``."""
    from safetensors import safe_open

    p = resolve(path, prefer="last")
    header = _header(p, safe_open)
    device = str(torch.device(map_location))
    with safe_open(str(p), framework="pt", device=device) as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state = _decode(json.loads(header["state"]), tensors)
    return state, json.loads(header["meta"])


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


def build_model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """Instantiate (uninitialised weights) the model a checkpoint's metadata describes."""
    from rectifiers.models import create_model

    kwargs = dict(meta.get("model_kwargs") or {})
    return create_model(
        meta["model"], num_classes=int(meta["num_classes"]), in_chans=int(meta["in_chans"]),
        act=meta.get("act", "prelu"), init=meta.get("init", "he"), **kwargs,
    )


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (file or run directory; prefers best).

    Returns ``(model in eval mode, meta)``; ``meta`` holds ``model``, ``model_kwargs``,
    ``num_classes``, ``in_chans``, ``act``, ``init``, ``normalization``, ``dataset``,
    ``image_size``, ``epoch``, ``step`` and the training ``config``.
    """
    p = resolve(path, prefer="best")
    state, meta = load_checkpoint(p, map_location="cpu")
    model = build_model_from_meta(meta)
    check_model_state(model, state["model"], meta, str(p), model_name=meta.get("model"))
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), meta
