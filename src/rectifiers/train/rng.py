"""Every RNG state a run depends on, as checkpoint-storable values (tensors and JSON)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (user code may draw from the legacy global RNG)
    torch.manual_seed(seed)


def get_state() -> dict[str, Any]:
    """torch (CPU and, if in use, CUDA), Python and numpy global RNG states."""
    s = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's legacy state (str, uint32 array, int, int, float) as storable pieces
        "numpy": {"kind": s[0], "keys": torch.from_numpy(np.asarray(s[1], dtype=np.int64)),
                  "pos": int(s[2]), "has_gauss": int(s[3]), "gauss": float(s[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    d = state["numpy"]
    np.random.set_state((d["kind"], d["keys"].numpy().astype(np.uint32), d["pos"],  # noqa: NPY002
                         d["has_gauss"], d["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
