"""What an activation costs: training step time and memory saved for backward, relative to ReLU.

Two levels, because they answer different questions:

* **activation level** (:func:`measure_activation_costs`): forward + backward of the activation
  alone on one feature map. Isolates the kernel cost.
* **model level** (:func:`measure_model_costs`): one full SGD step (forward, loss, backward,
  clipping, update) of the same network built with each activation, taken by the training
  engine's own :func:`rectifiers.train.train_step` with its optimiser settings (momentum 0.9,
  weight decay not on slopes, the default gradient clipping). This is what a user pays. It also
  gets memory right: in ``conv -> act -> conv`` the next conv saves the activation's *output*
  anyway, so an activation that saves its output (ReLU, ELU) adds nothing at model level,
  while one that saves its input (GELU, SiLU, PReLU) keeps a second feature-map-sized tensor
  alive. The activation-level number cannot see that difference; the model-level one does.

Memory is measured, not estimated: every tensor autograd packs for backward passes through
``torch.autograd.graph.saved_tensors_hooks``; tensors are deduplicated by their storage (a
view and its base, or an in-place ReLU's input and output, are one allocation) and the
storages' bytes are summed. Storages of parameters are left out by default: they live for the
whole run whatever the activation, so they are not part of the per-step activation memory.

Times are medians over ``repeats`` after ``warmup`` calls, with the variants interleaved
(A B C A B C ...) so that load from other processes on a shared machine hits all of them
alike; report the ratios, not the absolute times. On a VM where page faults are expensive set
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736`` (docs/benchmarking.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from rectifiers.nn import make_activation
from rectifiers.optim import param_groups
from rectifiers.train import TrainConfig, train_step

__all__ = [
    "ActivationCost",
    "activation_saved_bytes",
    "measure_activation_costs",
    "measure_model_costs",
    "model_saved_bytes",
    "saved_tensor_bytes",
]


@dataclass(frozen=True)
class ActivationCost:
    """Cost of one variant; ``*_rel`` are ratios to the reference variant (ReLU by default)."""

    name: str
    time_s: float  # median seconds per step (activation fwd+bwd, or a whole training step)
    saved_bytes: int  # bytes of unique non-parameter storages saved for backward
    time_rel: float
    bytes_rel: float
    level: str  # "activation" or "model"

    def as_dict(self) -> dict:
        return asdict(self)


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def saved_tensor_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Run ``fn()`` and return the bytes of the unique storages autograd saved for backward.

    ``exclude``: tensors whose storages are not counted (e.g. the parameters). The saved
    tensors are kept referenced only while ``fn`` runs, so the count is exact even for
    temporaries that would be freed and whose addresses could be reused.
    """
    excluded = {_storage_key(t) for t in exclude}
    seen: dict[tuple[str, int], int] = {}
    keep: list[torch.Tensor] = []  # hold references so no storage address is reused mid-count

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in excluded and key not in seen:
            seen[key] = t.untyped_storage().nbytes()
            keep.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    keep.clear()
    return int(sum(seen.values()))


def _input(shape: Sequence[int], device: str | torch.device, dtype: torch.dtype,
           channels_last: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    x = torch.randn(*shape, generator=generator, dtype=torch.float32)
    x = x.to(device=device, dtype=dtype)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def activation_saved_bytes(act: nn.Module, shape: Sequence[int] = (8, 16, 14, 14),
                           dtype: torch.dtype = torch.float32,
                           device: str | torch.device = "cpu",
                           channels_last: bool = False) -> int:
    """Bytes the activation alone saves for backward on one input of ``shape``.

    The input is a non-leaf that requires grad (as a conv output is), so in-place variants
    are allowed and a ReLU's saved output shares the input's storage. E.g. fp32 ReLU on
    (8, 16, 14, 14) saves one 8*16*14*14*4 = 100352-byte tensor; a 1-byte mask would be 25088.
    """
    base = _input(shape, device, dtype, channels_last).requires_grad_(True)
    x = base * 1.0  # a non-leaf: what a conv hands to the activation
    act = act.to(device)
    return saved_tensor_bytes(lambda: act(x), exclude=list(act.parameters()))


def model_saved_bytes(model: nn.Module, inputs: torch.Tensor,
                      targets: torch.Tensor | None = None) -> int:
    """Bytes of unique non-parameter storages saved for backward by one training forward
    (model and, when ``targets`` is given, the cross-entropy loss)."""
    model.train()

    def fwd() -> None:
        out = model(inputs)
        if targets is not None:
            nn.functional.cross_entropy(out, targets)

    return saved_tensor_bytes(fwd, exclude=list(model.parameters()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_medians(steps: Mapping[str, Callable[[], None]], repeats: int, warmup: int,
                         device: torch.device) -> dict[str, float]:
    """Median seconds per call of each step, timed round-robin so drift hits all alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _relative(name: str, t: float, b: int, ref_t: float, ref_b: int, level: str) -> ActivationCost:
    return ActivationCost(name=name, time_s=t, saved_bytes=b, time_rel=t / ref_t,
                          bytes_rel=(b / ref_b) if ref_b else float("nan"), level=level)


def measure_activation_costs(
    acts: Mapping[str, nn.Module] | Sequence[str],
    shape: Sequence[int] = (64, 32, 28, 28),
    *,
    reference: str = "relu",
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> list[ActivationCost]:
    """Forward + backward time and saved bytes of each activation alone, relative to ``reference``.

    ``acts``: registry names (built with ``make_activation(name, channels=shape[1])``) or
    ready modules by name. ``reference`` is added from the registry if missing.
    """
    modules = _build_acts(acts, channels=int(shape[1]), reference=reference)
    dev = torch.device(device)
    base = _input(shape, dev, dtype, channels_last).requires_grad_(True)
    grad = _input(shape, dev, dtype, channels_last)

    def make_step(m: nn.Module) -> Callable[[], None]:
        def step() -> None:
            base.grad = None
            for p in m.parameters():
                p.grad = None
            y = m(base * 1.0)  # fresh non-leaf each time: in-place variants must not hit `base`
            y.backward(grad)
        return step

    steps = {name: make_step(m.to(dev)) for name, m in modules.items()}
    medians = _interleaved_medians(steps, repeats, warmup, dev)
    saved = {name: activation_saved_bytes(m, shape, dtype, dev, channels_last)
             for name, m in modules.items()}
    ref_t, ref_b = medians[reference], saved[reference]
    return [_relative(n, medians[n], saved[n], ref_t, ref_b, "activation") for n in modules]


def measure_model_costs(
    builders: Mapping[str, Callable[[], nn.Module]],
    input_shape: Sequence[int],
    num_classes: int,
    *,
    reference: str = "relu",
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    lr: float = 0.01,
    seed: int = 0,
    recipe: TrainConfig | None = None,
) -> list[ActivationCost]:
    """Time of one SGD training step and bytes saved for backward, per model, relative to
    ``reference``.

    The step is :func:`rectifiers.train.train_step` with the optimiser of ``rectifiers train``
    built from ``recipe`` (momentum, weight decay, gradient clipping, amp; default
    ``TrainConfig(amp="none")``, i.e. ``rectifiers train``'s defaults in fp32; its lr is
    replaced by ``lr``). Saved bytes are counted without autocast.

    ``builders``: name -> zero-argument function returning the model built with that
    activation (same architecture otherwise). ``input_shape`` includes the batch dimension.
    All models see the same batch; they are stepped round-robin.
    """
    if reference not in builders:
        raise ValueError(f"reference {reference!r} must be one of the builders "
                         f"{sorted(builders)}; add it or pass reference=...")
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=g).to(dev)
    y = torch.randint(0, num_classes, (int(input_shape[0]),), generator=g).to(dev)
    models = {name: build().to(dev) for name, build in builders.items()}
    saved = {name: model_saved_bytes(m, x, y) for name, m in models.items()}

    cfg = recipe or TrainConfig(amp="none")

    def make_step(m: nn.Module) -> Callable[[], None]:
        opt = torch.optim.SGD(param_groups(m, cfg.weight_decay), lr=lr, momentum=cfg.momentum,
                              nesterov=cfg.nesterov)
        m.train()

        def step() -> None:
            train_step(m, x, y, opt, amp=cfg.amp, grad_clip=cfg.grad_clip,
                       label_smoothing=cfg.label_smoothing)
        return step

    steps = {name: make_step(m) for name, m in models.items()}
    medians = _interleaved_medians(steps, repeats, warmup, dev)
    ref_t, ref_b = medians[reference], saved[reference]
    return [_relative(n, medians[n], saved[n], ref_t, ref_b, "model") for n in models]


def _build_acts(acts: Mapping[str, nn.Module] | Sequence[str], channels: int,
                reference: str) -> dict[str, nn.Module]:
    if isinstance(acts, Mapping):
        modules = dict(acts)
    else:
        if isinstance(acts, str):
            raise TypeError("acts must be a sequence of names, e.g. ['relu', 'gelu'], not a str")
        modules = {name: make_activation(name, channels=channels) for name in acts}
    if reference not in modules:
        modules = {reference: make_activation(reference, channels=channels), **modules}
    return modules
