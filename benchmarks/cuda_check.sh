#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with a CUDA device and a CUDA build of torch: the
# CUDA tests (tests/test_cuda.py and the CUDA cases of the OpInfo/ModuleInfo sweep and of the
# compile test, slow ones included), then PReLU's cost and memory ratios on the GPU
# (benchmarks/prelu_cost.py, prelu_memory.py).
#
#   bash benchmarks/cuda_check.sh [OUT_DIR] [PYTHON]     (defaults: cuda-check, python3)
#
# Runs from a source checkout (PYTHONPATH=src). The C++ extensions are built first (the layer's
# C++ path also runs on CUDA; the machine needs g++); the train-step ratios are measured for
# both PReLU backends ("cpp": the C++ node, "eager": the Python autograd path). Tests run on 8
# pytest-xdist workers where that plugin is installed.
# Each step writes its output to OUT_DIR and the script goes on after a failing step;
# STEPS="tests.log prelu_cost.md ..." runs only the steps named.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-cuda-check}"
py="${2:-python3}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
step() {  # step NAME LIMIT_S CMD...: run CMD with a time limit, tee its output to OUT_DIR/NAME
  local name=$1 limit=$2
  shift 2
  if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return; fi
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}
{ nvidia-smi -L; "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  lscpu | grep "Model name"; } 2>&1 | tee "$out/machine.txt"
step build.log 180 "$py" -c 'from rectifiers.nn import _activations_cpu, _prelu_cpu
for m in (_prelu_cpu, _activations_cpu):
    print(m.__name__, m.available(), m.load_error())'
xdist=$("$py" -c 'import xdist' 2>/dev/null && echo "-n 8")
# the OpInfo/ModuleInfo sweep needs expecttest (a dev dependency; pure Python: where the machine
# lacks it, put a copy on PYTHONPATH), else pytest skips that whole module
"$py" -c 'import expecttest' 2>/dev/null || echo "== WARNING: no expecttest: the OpInfo sweep is skipped"
step tests.log 300 "$py" -m pytest -q -p no:cacheprovider $xdist -k cuda -m "slow or not slow" \
  tests/test_cuda.py tests/nn/test_prelu_opinfo.py tests/nn/test_prelu.py
step prelu_cost.md 60 "$py" benchmarks/prelu_cost.py --device cuda --rounds 11
step train_small.md 80 "$py" benchmarks/prelu_cost.py --device cuda --train prelunet_small \
  --batch 256 --rounds 11 --steps 5
step train_small_eager.md 80 "$py" benchmarks/prelu_cost.py --device cuda --backend eager \
  --train prelunet_small --batch 256 --rounds 11 --steps 5
step train_a.md 90 "$py" benchmarks/prelu_cost.py --device cuda --train prelunet_a --batch 32 \
  --rounds 5 --steps 3 --only bf16
step memory.md 60 "$py" benchmarks/prelu_memory.py --device cuda --batch-a 16
step train_small_compiled.md 90 "$py" benchmarks/prelu_cost.py --device cuda \
  --train prelunet_small --batch 256 --rounds 11 --compiled --only "bf16 channels_last"
exit $status
