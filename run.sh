#!/usr/bin/env bash
# One entry point for a fresh machine: sets everything up (idempotently), then runs a target.
#   bash run.sh main        the main job: quick reproduction of the paper on Fashion-MNIST
#   bash run.sh test        the default test suite (< 15 min on 2 cores)
#   bash run.sh test-slow   the slow tests only
#   bash run.sh setup       set up and stop
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-main}"; shift || true

VENV="${RECTIFIERS_VENV:-.venv}"
DATA_DIR=/usr/share/datasets/fashion-mnist

setup_data() {
  if [ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian package dataset-fashion-mnist" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    cat >&2 <<MSG
[setup] Fashion-MNIST is not in $DATA_DIR and cannot be installed automatically here.
        On Debian/Ubuntu run:  sudo apt-get install dataset-fashion-mnist
        Elsewhere, put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
        t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in a directory and set
        RECTIFIERS_DATA=/that/directory (or pass --data-dir).
MSG
  fi
}

setup_python() {
  local stamp="$VENV/.rectifiers-installed"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing torch==2.13.0 and rectifiers[all] into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[all]"
    touch "$stamp"
  fi
}

setup_data
setup_python
export PATH="$PWD/$VENV/bin:$PATH"
# Page faults are expensive on these VMs (see docs/benchmarking): keep big buffers mapped.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-68719476736}"

case "$target" in
  setup) ;;
  main) exec rectifiers reproduce --quick "$@" ;;
  test) exec python -m pytest -q "$@" ;;
  test-slow) exec python -m pytest -q -m slow "$@" ;;
  lint) exec ruff check src tests benchmarks ;;
  *) echo "unknown target '$target' (choose: main, test, test-slow, setup, lint)" >&2; exit 2 ;;
esac
