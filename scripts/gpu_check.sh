#!/usr/bin/env bash
# One command for a machine with a real NVIDIA GPU, at most 4 minutes after the machine starts
# (numba, numba-cuda, numpy, scipy and pytest installed; torch, CuPy, pytest-timeout,
# pytest-xdist and compute-sanitizer used where present; dlbasics need not be installed:
# scripts/checkout_env.sh puts this checkout's packages on PYTHONPATH as dlbasics.*):
#   1. env.txt, written before anything else can fail: versions, the device, and one trivial
#      kernel compiled and launched (a missing libNVVM or driver shows up here, in seconds);
#   2. at the same time (correctness only, nothing timed):
#      the GPU tests on the GPU (no simulator), -v --durations=20, a per-test timeout;
#      compute-sanitizer --tool racecheck and --tool memcheck on tiny dense, loss and one-epoch
#      cases (python -m tests.gpu.sanitize_cases), where the toolkit has compute-sanitizer;
#   3. then, alone on the GPU, the GPU benchmark (scripts/gpu_bench.py) beside PyTorch CUDA.
# Each step writes its own file under $OUT (or reports/benchmarks/gpu/ when $OUT is unset), also
# when an earlier step failed: env.txt, gpu_tests.log, racecheck.log, memcheck.log,
# gpu_bench.log, gpu_bench.json, gpu_bench.md, and summary.txt (each step's exit status and
# seconds). Time limits: env 40 s, tests 110 s, each sanitizer 110 s (beside the tests), benchmark
# 90 s (80 s case budget): 240 s at most. Exit status: 0 only if every step that ran succeeded.
cd "$(dirname "$0")/.." || exit 2
source scripts/checkout_env.sh
unset NUMBA_ENABLE_CUDASIM NUMBA_BOUNDSCHECK
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-reports/benchmarks/gpu}
mkdir -p "$OUT_DIR" || exit 2
SUMMARY="$OUT_DIR/summary.txt"
start=$(date +%s)
: > "$SUMMARY"
failed=0

record() {  # record NAME STATUS SECONDS
  local note=""
  [ "$2" = 124 ] || [ "$2" = 137 ] && note=" (time limit)"
  echo "$1: exit $2$note, $3 s" | tee -a "$SUMMARY"
  [ "$2" = 0 ] || failed=1
}

# -- 1. environment -------------------------------------------------------------------------
ENV_TXT="$OUT_DIR/env.txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total \
      --format=csv,noheader 2>&1 | head -1)"
  else
    echo "nvidia-smi: not found"
  fi
  if command -v compute-sanitizer >/dev/null 2>&1; then
    echo "compute-sanitizer: $(compute-sanitizer --version 2>&1 | tail -1)"
  else
    echo "compute-sanitizer: not found"
  fi
} > "$ENV_TXT" 2>&1
t=$(date +%s)
timeout --kill-after=5 40 "$PY" - >> "$ENV_TXT" 2>&1 <<'EOF'
import importlib
import platform
import time

print("python", platform.python_version())
for name in ("numpy", "numba", "numba_cuda", "cupy", "torch", "pytest", "pytest_timeout",
             "xdist"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', 'present')}")
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"{name} missing ({type(exc).__name__})")
import numpy as np

from dlbasics.kernels import gpu_config as g

cuda = g.require_cuda()  # a clear RuntimeError if numba-cuda or the GPU is missing
print("device:", g.device_name())
from dlbasics.kernels import gpu_blas

print("dense products:", gpu_blas.status())
try:
    from numba.cuda.cudadrv import nvvm

    print("libNVVM", nvvm.NVVM().get_version())
except Exception as exc:  # noqa: BLE001
    print("libNVVM: not found:", exc)


@cuda.jit
def add_one(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] += 1.0


t = time.perf_counter()
d = cuda.to_device(np.arange(1000, dtype=np.float32))
add_one[4, 256](d)
out = d.copy_to_host()
assert np.array_equal(out, np.arange(1000, dtype=np.float32) + 1), out[:5]
print(f"trivial kernel compiled and launched: ok ({time.perf_counter() - t:.2f} s)")
EOF
env_status=$?
record env "$env_status" $(( $(date +%s) - t ))
cat "$ENV_TXT"

# -- 2. tests and sanitizers, side by side --------------------------------------------------
t=$(date +%s)
PYTEST_ARGS=(-v --durations=20 -p no:cacheprovider)
"$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST_ARGS+=(--timeout=90)
"$PY" -c "import xdist" 2>/dev/null && PYTEST_ARGS+=(-n 6)  # compilation is the cost
( timeout --kill-after=10 110 "$PY" -m pytest tests/gpu "${PYTEST_ARGS[@]}" \
    > "$OUT_DIR/gpu_tests.log" 2>&1; echo $? > "$OUT_DIR/.tests_status" ) &
tests_pid=$!

sanitizer_pids=()
for tool in racecheck memcheck; do
  if command -v compute-sanitizer >/dev/null 2>&1; then
    ( timeout --kill-after=10 110 compute-sanitizer --tool "$tool" --error-exitcode 3 \
        --print-limit 50 "$PY" -m tests.gpu.sanitize_cases > "$OUT_DIR/$tool.log" 2>&1
      echo $? > "$OUT_DIR/.${tool}_status" ) &
    sanitizer_pids+=($!)
  else
    echo "compute-sanitizer not found: $tool not run" > "$OUT_DIR/$tool.log"
  fi
done
wait "$tests_pid"
record tests "$(cat "$OUT_DIR/.tests_status" 2>/dev/null || echo 1)" $(( $(date +%s) - t ))
for pid in "${sanitizer_pids[@]}"; do wait "$pid"; done
for tool in racecheck memcheck; do
  if [ -f "$OUT_DIR/.${tool}_status" ]; then
    record "$tool" "$(cat "$OUT_DIR/.${tool}_status")" $(( $(date +%s) - t ))
  else
    echo "$tool: not run (no compute-sanitizer)" | tee -a "$SUMMARY"
  fi
done
rm -f "$OUT_DIR"/.*_status
grep -E "passed|failed|error" "$OUT_DIR/gpu_tests.log" | tail -3
for tool in racecheck memcheck; do tail -2 "$OUT_DIR/$tool.log"; done

# -- 3. benchmark (alone on the GPU) --------------------------------------------------------
t=$(date +%s)
timeout --kill-after=10 90 "$PY" scripts/gpu_bench.py --out "$OUT_DIR" --budget 80 \
  > "$OUT_DIR/gpu_bench.log" 2>&1
record benchmark $? $(( $(date +%s) - t ))

echo "total: $(( $(date +%s) - start )) s" | tee -a "$SUMMARY"
[ -f "$OUT_DIR/gpu_bench.md" ] && cat "$OUT_DIR/gpu_bench.md"
exit "$failed"
