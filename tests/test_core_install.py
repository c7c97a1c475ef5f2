"""The core install (no extras) is enough for `rectifiers train` to train and save its checkpoint.

A fresh virtual environment that inherits nothing (no ``--system-site-packages``) gets
``pip install torch==2.13.0`` (the one torch pin of the project; pip's configuration may serve it
from a local wheel) and then ``pip install <this repository>`` without extras. In it, a short
``rectifiers train`` on tiny Fashion-MNIST files must finish with exit code 0 and leave a
checkpoint that loads. Slow (installing torch copies a large wheel): ``bash run.sh test-slow``.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXTRAS_MODULES = ("PIL", "matplotlib", "scipy", "onnx", "onnxruntime", "onnxscript", "pytest")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "RECTIFIERS_DATA",
                        "RECTIFIERS_DEBUG", "PIP_REQUIRE_VIRTUALENV")}
    env.update(OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    return env


def _run(argv: list, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert p.returncode == 0, f"$ {' '.join(map(str, argv))}\n{p.stdout[-4000:]}"
    return p


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.tobytes()


def _tiny_fashion_mnist(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 32)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return root


@pytest.mark.slow
def test_core_install_trains_and_saves_a_checkpoint(tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, 300)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], tmp_path, 1800)
    _run([py, "-m", "pip", "install", "-q", REPO], tmp_path, 900)

    # only the core: none of the extras' packages, and rectifiers from the venv, not the source
    probe = _run([py, "-c", "import importlib.util as u, rectifiers; "
                  f"print([m for m in {EXTRAS_MODULES!r} if u.find_spec(m)]); "
                  "print(rectifiers.__file__)"], tmp_path, 120).stdout.splitlines()
    assert probe[0] == "[]", f"extras installed in the core venv: {probe[0]}"
    assert Path(probe[1]).resolve().is_relative_to(venv.resolve()), probe[1]

    data = _tiny_fashion_mnist(tmp_path / "fm")
    run = tmp_path / "run"
    p = _run([venv / "bin" / "rectifiers", "train", "--data-dir", data, "--out-dir", run,
              "--model-kw", "widths=[4,4,8]", "--model-kw", "fc_dim=16", "--batch-size", "16",
              "--epochs", "1", "--max-steps", "3", "--amp", "none", "--threads", "1",
              "--no-progress"], tmp_path, 600)
    assert "Traceback" not in p.stdout, p.stdout
    assert (run / "checkpoint-last.safetensors").is_file(), p.stdout
    _run([py, "-c", "import sys; from rectifiers.train.checkpoint import load_model; "
          "model, meta = load_model(sys.argv[1]); assert meta['model'] == 'prelunet_small'",
          run], tmp_path, 300)
