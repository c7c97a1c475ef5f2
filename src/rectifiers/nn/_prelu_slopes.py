"""What an in-place PReLU keeps for backward, read from its slopes' values on the host.

:func:`_save_mode` applies the table of :mod:`rectifiers.nn.prelu` ("output", "mask" or
"input"); on a GPU the values come from :class:`_SlopePrefetch`, a host copy taken after each
optimizer step, so that the choice does not synchronise with the device.
"""

from __future__ import annotations

import numpy as np
import torch

__all__: list[str] = []


class _SlopePrefetch:
    """Host copies of in-place PReLU slopes that live on a GPU, taken without stalling it.

    The in-place layer picks what to save from its slopes' values (the table in the docstring of
    :mod:`rectifiers.nn.prelu`). On a GPU reading them is a device-to-host copy that waits for
    every kernel queued so far and then leaves the GPU idle while the host queues the next ones,
    once per layer and step (measured on an H200: a PReLU-net train step 1.5x the ReLU-net's,
    against 1.2x for the out-of-place layer). Slopes change in optimizer steps, so after every
    ``optimizer.step()`` (a global post-step hook, a no-op until an in-place layer has run on a
    GPU) the slopes of every in-place layer seen on a GPU are copied to pinned host memory
    without blocking, all in one copy behind one event. The next forward waits for that copy
    only, which was queued right after the step, not for the layers queued since. A copy is used
    only while the slopes' version counter and storage are those it was taken with; otherwise
    (the first step, slopes set by hand, an optimizer outside ``torch.optim``) the layer reads
    the slopes directly. Not seen by the version counter: writes through ``.data`` between
    ``optimizer.step()`` and the forward; write slopes under ``torch.no_grad()`` instead
    (``load_state_dict`` does).
    """

    def __init__(self) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self._copies = WeakIdKeyDictionary()  # slope -> (version, data_ptr, host, event)
        self._hooked = False
        self._cpp = False  # the C++ path keeps its own copies (csrc/slope_copies.h)

    def _hook(self) -> None:
        if not self._hooked:
            from torch.optim.optimizer import register_optimizer_step_post_hook

            register_optimizer_step_post_hook(self._after_step)
            self._hooked = True

    def use_cpp(self) -> None:
        """The C++ layer ran in place on a GPU: refresh its host copies after each step too."""
        if not self._cpp:
            self._cpp = True
            self._hook()

    def read(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight``'s values on the host (a prefetched copy where one is current)."""
        entry = self._copies.get(weight)
        if entry is not None:
            version, ptr, host, event = entry
            if version == weight._version and ptr == weight.data_ptr():
                if event is not None:
                    event.synchronize()
                return host
        host = weight.detach().cpu()  # a synchronising read
        if weight.is_leaf:  # a parameter: worth fetching after each optimizer step
            self._hook()
            self._copies[weight] = (-1, 0, host, None)  # tracked; no current copy yet
        return host

    def _after_step(self, optimizer, args, kwargs) -> None:
        # every tracked slope, stepped by this optimizer or not (fused optimizers update
        # parameters without bumping their version counters), in one copy per device and
        # dtype: one gather on the device, one pinned buffer, one copy, one event
        if self._cpp:
            torch.ops.rectifiers_prelu.prefetch_slopes()
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for weight in list(self._copies.keys()):
            groups.setdefault((weight.device, weight.dtype), []).append(weight)
        for (device, dtype), slopes in groups.items():
            flat = torch.cat([w.detach().reshape(-1) for w in slopes])
            cuda = device.type == "cuda"
            host = torch.empty(flat.shape, dtype=dtype, pin_memory=cuda)
            host.copy_(flat, non_blocking=cuda)
            event = None
            if cuda:
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(device))
            offset = 0
            for w in slopes:
                n = w.numel()
                view = host[offset:offset + n].view(w.shape)
                self._copies[w] = (w._version, w.data_ptr(), view, event)
                offset += n


_prefetch = _SlopePrefetch()


def _save_mode(weight: torch.Tensor, dtype: torch.dtype) -> str:
    """What in-place mode must keep for an exact backward (the table of rectifiers.nn.prelu)."""
    # one host read of the slopes, then numpy (a few microseconds, unlike ~8 tiny torch ops);
    # compared in the input's dtype (what the kernel multiplies by): a threshold in another
    # dtype could round to 0
    if weight.device.type == "meta":
        return "input"  # no values to inspect (shape-only tracing): the always-exact choice
    if weight.device.type == "cuda":
        w = _prefetch.read(weight)
    else:
        w = weight.detach().cpu()  # a view on the CPU; another device: one small copy
    w = w.reshape(-1).to(dtype)
    a = w.numpy() if w.dtype in (torch.float32, torch.float64) else w.float().numpy()
    tiny = a.dtype.type(torch.finfo(dtype).tiny ** 0.25)
    mag = np.abs(a)
    if not bool(np.all((mag >= tiny) & (mag <= 1.0))):  # nan fails both comparisons
        return "input"
    return "mask" if bool((a < 0).any()) else "output"
