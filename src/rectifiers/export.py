"""Export a trained model: ONNX, TorchScript, or a ``torch.export`` ExportedProgram.

``rectifiers export CHECKPOINT --format onnx|torchscript|export --out PATH [--check]``

What is exported is the classifier ``logits = model(x)`` for inputs of the checkpoint's
training size ``(C, H, W)`` (from its own metadata, never a model-class default;
``--input-size`` to change it) with a dynamic batch dimension. Inputs are *normalised* images:
the preprocessing recorded in the checkpoint (``Normalizer.to_dict()``) is written into the
ONNX metadata (``rectifiers.normalization``) and summarised on screen (a per-pixel mean image
by its shape), so a deployment can reproduce it. User errors (bad flags, an unwritable or
directory ``--out``, a bad checkpoint) raise :class:`~rectifiers.errors.UserError`.

Two rewrites make the graph exportable, both exact:

* PReLU: :class:`rectifiers.nn.PReLU` (a custom autograd Function, possibly in-place) calls
  ``F.prelu`` while being traced or exported, which becomes the standard ONNX ``PRelu`` op.
* SPP: ``adaptive_max_pool2d`` with an output size that does not divide the input (the 3x3
  level on a 14x14 or 7x7 map) has no ONNX translation in either exporter. For the fixed map
  size of the exported input, each bin ``[floor(i*a/n), ceil((i+1)*a/n))`` is a constant
  slice, so SPP is replaced by slices + max reductions (:class:`StaticSPP`), which compute
  the same maxima bit for bit.

``--check`` runs the exported file in its own runtime (onnxruntime for ONNX, a reloaded
module for the others) on random input and compares with PyTorch within float tolerance.
Every file is written to a temporary name and renamed into place (atomic).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rectifiers.errors import ConfigError, UserError
from rectifiers.eval.common import adaptive_bins, probe_writable
from rectifiers.eval.views import check_view_fits
from rectifiers.files import FileWriteError, atomic_path, atomic_write_bytes
from rectifiers.nn import SPP
from rectifiers.train.checkpoint import load_model, resolve

FORMATS = ("onnx", "torchscript", "export")
DEFAULT_OPSET = 18
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}


# ----------------------------------------------------------------------------- SPP rewrite
class StaticSPP(nn.Module):
    """SPP for one fixed feature-map size, written with slices and ``amax`` (exportable).

    Equals ``torch.cat([adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1)`` (the
    ``rule="adaptive"``, ``pool="max"`` SPP) for inputs of spatial size ``(h, w)``; other
    sizes raise, since the bins are baked in.
    """

    def __init__(self, levels: Sequence[int], h: int, w: int, pool: str = "max") -> None:
        super().__init__()
        self.levels = tuple(int(n) for n in levels)
        self.h, self.w = int(h), int(w)
        self.pool = pool
        self.bins = [
            [(r, c) for r in adaptive_bins(self.h, n) for c in adaptive_bins(self.w, n)]
            for n in self.levels
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the check is Python control flow: skip it while tracing (the traced shape is fixed)
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != (self.h, self.w):
            raise ValueError(
                f"StaticSPP was built for a {self.h}x{self.w} map, got {tuple(x.shape[-2:])}; "
                "export again with the matching --input-size"
            )
        levels = []
        for bins in self.bins:
            cells = []
            for (r0, r1), (c0, c1) in bins:
                cell = x[:, :, r0:r1, c0:c1]
                cells.append(cell.amax(dim=(2, 3)) if self.pool == "max"
                             else cell.mean(dim=(2, 3)))
            # (N, C, n*n) then flatten: channel-major, the layout of adaptive pool + flatten(1)
            levels.append(torch.stack(cells, 2).flatten(1))
        return torch.cat(levels, 1)


def _spp_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SPP)]


def prepare_for_export(model: nn.Module, input_size: Sequence[int]) -> nn.Module:
    """An eval-mode copy of ``model`` whose adaptive SPP layers are :class:`StaticSPP`.

    ``input_size`` is ``(C, H, W)``; the SPP input size is found by one forward pass of a
    zero image. The original model is not modified.
    """
    model = copy.deepcopy(model).eval()
    spps = [(n, m) for n, m in _spp_modules(model) if getattr(m, "rule", "adaptive") == "adaptive"]
    if not spps:
        return model
    seen: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(inp[0].shape[-2:])))
        for name, m in spps]
    p = next(model.parameters(), None)
    with torch.no_grad():
        model(torch.zeros(1, *input_size, device=p.device if p is not None else "cpu",
                          dtype=p.dtype if p is not None else torch.float32))
    for h in hooks:
        h.remove()
    for name, m in spps:
        if name not in seen:  # an SPP the forward pass never used: leave it
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2],
                StaticSPP(m.levels, *seen[name], pool=getattr(m, "pool", "max")))
    return model


# ----------------------------------------------------------------------------- writers
def _example(input_size: Sequence[int], batch: int, model: nn.Module,
             seed: int = 0) -> torch.Tensor:
    p = next(model.parameters(), None)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_size, generator=g)
    return x.to(device=p.device if p is not None else "cpu",
                dtype=p.dtype if p is not None else torch.float32)


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    input_size: Sequence[int],
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` as ONNX (input ``input`` (N, C, H, W), output ``logits`` (N, K)).

    ``dynamo=False`` (default) uses the TorchScript-based exporter, which is faster and has no
    extra dependency; ``dynamo=True`` uses the ``torch.export``-based one (needs onnxscript).
    ``metadata`` is stored as ONNX ``metadata_props``.
    """
    import onnx

    out = Path(out)
    m = prepare_for_export(model, input_size)
    x = _example(input_size, 2, m)
    with _write_errors(out), atomic_path(out) as tmp:
        kwargs: dict[str, Any] = dict(input_names=["input"], output_names=["logits"],
                                      opset_version=opset, dynamo=dynamo)
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
        with torch.no_grad():
            torch.onnx.export(m, (x,), str(tmp), **kwargs)
        proto = onnx.load(str(tmp))
        if dynamo:  # make the batch axis name match the TorchScript exporter's
            for v in list(proto.graph.input) + list(proto.graph.output):
                d = v.type.tensor_type.shape.dim
                if d and not d[0].dim_value:
                    d[0].dim_param = "batch"
        for k, v in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return out


@contextmanager
def _write_errors(out: Path) -> Iterator[None]:
    """Any OSError while writing ``out`` (a full disk, a file-size limit, ...) becomes one
    :class:`FileWriteError` naming the file; the atomic write has left nothing behind."""
    try:
        yield
    except UserError:
        raise
    except OSError as e:
        raise FileWriteError(e.errno, f"cannot write {out} ({e.strerror or e}; the disk may be "
                             f"full or the file too large); nothing was written. Free some "
                             f"space or choose another --out") from e


def _save_via_memory(out: Path, save: Any) -> None:
    """``save(buffer)`` into memory, then one atomic write: torch's C++ writers abort the whole
    process when a write fails (a full disk), Python's file writes raise an OSError."""
    buf = io.BytesIO()
    save(buf)
    with _write_errors(out):
        atomic_write_bytes(out, buf.getvalue())


def export_torchscript(model: nn.Module, out: str | os.PathLike,
                       input_size: Sequence[int]) -> Path:
    """Trace ``model`` to TorchScript and save it (load with ``torch.jit.load``)."""
    out = Path(out)
    m = prepare_for_export(model, input_size)
    x = _example(input_size, 2, m)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x,), check_trace=False)
    _save_via_memory(out, lambda f: torch.jit.save(traced, f))
    return out


def export_program(model: nn.Module, out: str | os.PathLike,
                   input_size: Sequence[int]) -> Path:
    """``torch.export`` the model (dynamic batch) and save the ExportedProgram (``.pt2``).

    Load with ``torch.export.load(path).module()``.
    """
    out = Path(out)
    m = prepare_for_export(model, input_size)
    x = _example(input_size, 2, m)
    with torch.no_grad():
        ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    _save_via_memory(out, lambda f: torch.export.save(ep, f))
    return out


# ----------------------------------------------------------------------------- checks
def run_exported(path: str | os.PathLike, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run an exported file on ``x`` in its own runtime (onnxruntime for ONNX)."""
    path = str(path)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return torch.from_numpy(sess.run(None, {name: x.detach().cpu().float().numpy()})[0])
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(path, map_location="cpu")(x.cpu().float())
    if fmt == "export":
        with torch.no_grad():
            return torch.export.load(path).module()(x.cpu().float())
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def check_export(model: nn.Module, path: str | os.PathLike, fmt: str, input_size: Sequence[int],
                 batch: int = 3, rtol: float = 1e-4, atol: float = 1e-4,
                 seed: int = 0) -> float:
    """Compare the exported file with PyTorch on random input; returns the max abs difference.

    Uses a batch size different from the one traced with (2), so the dynamic batch axis is
    exercised. Raises ``AssertionError`` when outputs differ beyond ``atol + rtol * |ref|``.
    """
    ref_model = copy.deepcopy(model).float().cpu().eval()
    x = _example(input_size, batch, ref_model, seed=seed + 1)
    with torch.no_grad():
        ref = ref_model(x)
    got = run_exported(path, fmt, x)
    if got.shape != ref.shape:
        raise AssertionError(f"exported output shape {tuple(got.shape)} != {tuple(ref.shape)}")
    diff = (got - ref).abs()
    bound = atol + rtol * ref.abs()
    if not bool((diff <= bound).all()):
        raise AssertionError(
            f"exported {fmt} output differs from PyTorch: max abs diff {float(diff.max()):.3g} "
            f"(allowed {atol} + {rtol} * |ref|)"
        )
    return float(diff.max())


def onnx_op_types(path: str | os.PathLike) -> dict[str, int]:
    """Count of each ONNX op type in the graph (and its domain, if not the standard one)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return counts


# ----------------------------------------------------------------------------- CLI
def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="rectifiers export",
        description="Export a checkpoint to ONNX, TorchScript or a torch.export program.",
    )
    p.add_argument("checkpoint", help="checkpoint file or run directory (prefers the best)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", default=None,
                   help="output file (default: next to the checkpoint, .onnx/.pt/.pt2)")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                   help="input size (default: the checkpoint's training input)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--dynamo", action="store_true",
                   help="ONNX: use the torch.export-based exporter instead of TorchScript's")
    p.add_argument("--check", action="store_true",
                   help="run the exported file (onnxruntime for ONNX) and compare with PyTorch")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-4)
    return p.parse_args(list(argv))


def describe_normalization(norm: dict[str, Any] | None) -> str:
    """One short line for a normalisation dict: per-channel numbers in full, a per-pixel mean
    image only by its shape and range (never 150k numbers of a 3x224x224 image as text)."""
    if not norm:
        return "none recorded (feed the model what it was trained on)"
    kind = norm.get("kind", "?")
    parts = [f"kind={kind}", f"scale={float(norm.get('scale', 1 / 255)):.6g}"]
    mean = norm.get("mean")
    if mean is not None:
        t = torch.as_tensor(mean, dtype=torch.float64)
        if t.dim() > 1:
            parts.append(f"mean=image {'x'.join(map(str, t.shape))} (values "
                         f"{float(t.min()):.4f}..{float(t.max()):.4f}; full image in the ONNX "
                         f"metadata 'rectifiers.normalization')")
        else:
            parts.append("mean=[" + ", ".join(f"{v:.4f}" for v in t.tolist()) + "]")
    if norm.get("std") is not None:
        parts.append("std=[" + ", ".join(f"{float(v):.4f}" for v in norm["std"]) + "]")
    formula = ("x_uint8 * scale" if mean is None else "x_uint8 * scale - mean")
    if norm.get("std") is not None:
        formula = f"({formula}) / std"
    return ", ".join(parts) + f"; y = {formula}"


def input_size(model: nn.Module, meta: dict[str, Any],
               given: Sequence[int] | None = None) -> list[int]:
    """``(C, H, W)`` to export at: ``given``, else the checkpoint's own training input
    (``in_chans`` and ``image_size`` in its metadata), else the model's ``default_input_size``.

    The checkpoint comes first: a small model trained on a 224-px image folder exports at 224,
    not at its class default of 28.
    """
    if given:
        return [int(v) for v in given]
    side = meta.get("image_size")
    if side:
        hw = list(side) if isinstance(side, (list, tuple)) else [side, side]
        c = meta.get("in_chans") or getattr(model, "in_chans", None) or 3
        return [int(c), *(int(v) for v in hw[-2:])]
    default = getattr(model, "default_input_size", None)
    if default:
        return [int(v) for v in default]
    raise ConfigError("the checkpoint records no input size (image_size) and the model has no "
                      "default; pass --input-size C H W")


def _require(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(f"{why} needs the '{module}' package; install it with "
                        f"`pip install 'rectifiers[export]'`")


def _check_out(out: Path) -> None:
    """Refuse an output path that cannot be written before any export work is done (nothing is
    created here: the first existing ancestor directory is probed)."""
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name, e.g. "
                          f"{out / ('model' + (out.suffix or '.onnx'))}")
    probe_writable(out.parent, f"--out {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """``rectifiers export``; returns the exit status (user errors raise ``UserError``)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.input_size is not None and min(args.input_size) < 1:
        given = " ".join(map(str, args.input_size))
        raise ConfigError(f"--input-size needs C H W >= 1, got {given}")
    for flag, v in (("--rtol", args.rtol), ("--atol", args.atol)):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{flag} must be a finite number >= 0, got {v}")
    if args.format == "onnx":
        _require("onnx", "--format onnx")
        if args.check:
            _require("onnxruntime", "--check of an ONNX export")
    ckpt = resolve(args.checkpoint)
    model, meta = load_model(ckpt)
    model = model.float().eval()
    size = input_size(model, meta, args.input_size)
    in_chans = int(meta.get("in_chans") or getattr(model, "in_chans", size[0]))
    if size[0] != in_chans:
        raise ConfigError(f"--input-size has {size[0]} channel(s) but the model takes {in_chans}")
    check_view_fits(model, size[0], min(size[1:]), "--input-size",
                    trained_at=input_size(model, meta)[-1] if meta.get("image_size") else None)
    out = Path(args.out) if args.out else ckpt.with_suffix(_SUFFIX[args.format])
    _check_out(out)
    if args.format == "onnx":
        meta_props = {
            "rectifiers.model": str(meta.get("model")),
            "rectifiers.input_size": json.dumps(size),
            "rectifiers.normalization": json.dumps(meta.get("normalization")),
            "rectifiers.classes": json.dumps(meta.get("classes") or meta.get("class_names")),
            "rectifiers.checkpoint": str(ckpt),
        }
        export_onnx(model, out, size, opset=args.opset, dynamo=args.dynamo, metadata=meta_props)
        ops = onnx_op_types(out)
        print(f"wrote {out} (ONNX opset {args.opset}; ops: "
              + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) + ")")
    elif args.format == "torchscript":
        export_torchscript(model, out, size)
        print(f"wrote {out} (TorchScript; load with torch.jit.load)")
    else:
        export_program(model, out, size)
        print(f"wrote {out} (ExportedProgram; load with torch.export.load(path).module())")
    print(f"input: normalised float32 images (N, {size[0]}, {size[1]}, {size[2]}); "
          f"normalization: {describe_normalization(meta.get('normalization'))}")
    if args.check:
        try:
            diff = check_export(model, out, args.format, size, rtol=args.rtol, atol=args.atol)
        except AssertionError as e:
            print(f"check FAILED: {e}", file=sys.stderr)
            return 1
        runtime = "onnxruntime" if args.format == "onnx" else "reloaded module"
        print(f"check ok: {runtime} matches PyTorch, max abs diff {diff:.3g}"
              + (" (nan)" if math.isnan(diff) else ""))
    return 0


if __name__ == "__main__":
    from rectifiers.cli import main as cli_main  # one place prints user errors (exit 2)

    raise SystemExit(cli_main(["export", *sys.argv[1:]]))
