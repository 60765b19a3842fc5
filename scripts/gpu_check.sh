#!/usr/bin/env bash
# One command for a machine with a real NVIDIA GPU (numba, numba-cuda, numpy, scipy, pytest and
# torch installed; dlbasics need not be installed: scripts/checkout_env.sh puts this checkout's
# packages on PYTHONPATH as dlbasics.kernels, dlbasics.models and dlbasics.studies):
#   1. the GPU tests, compiled and run on the GPU (no simulator),
#   2. the GPU benchmark (scripts/gpu_bench.py) beside PyTorch CUDA.
# Everything is written under $OUT (or reports/benchmarks/gpu/ when $OUT is unset):
#   gpu_tests.log, gpu_tests.xml (JUnit), gpu_bench.log, gpu_bench.json, gpu_bench.md
# Each step has a time limit (tests 180 s, benchmark 170 s with a 120 s case budget), so the
# whole script ends within 6 minutes. Exit status: 0 only if both steps succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/checkout_env.sh
unset NUMBA_ENABLE_CUDASIM
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-reports/benchmarks/gpu}
mkdir -p "$OUT_DIR"
start=$(date +%s)

echo "== environment"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
"$PY" - <<'EOF'
import numba, numpy
from kernels import gpu_config as g
try:
    import numba_cuda
    nc = numba_cuda.__version__
except ImportError:
    nc = "missing"
print(f"python numba {numba.__version__}, numba-cuda {nc}, numpy {numpy.__version__}")
g.require_cuda()  # a clear RuntimeError if numba-cuda or the GPU is missing
print("device:", g.device_name())
EOF

echo "== GPU tests (real GPU, no simulator)"
set +e
timeout --kill-after=10 180 "$PY" -m pytest tests/gpu -q -p no:cacheprovider \
  --junitxml="$OUT_DIR/gpu_tests.xml" 2>&1 | tee "$OUT_DIR/gpu_tests.log"
tests_status=${PIPESTATUS[0]}
set -e
[ "$tests_status" = 124 ] && echo "GPU tests stopped by the 180 s time limit"

echo "== GPU benchmark"
set +e
timeout --kill-after=10 170 "$PY" scripts/gpu_bench.py --out "$OUT_DIR" --budget 120 2>&1 \
  | tee "$OUT_DIR/gpu_bench.log"
bench_status=${PIPESTATUS[0]}
set -e
[ "$bench_status" = 124 ] && echo "GPU benchmark stopped by the 170 s time limit"

echo "== summary ($(( $(date +%s) - start )) s)"
echo "tests:     exit $tests_status  ($OUT_DIR/gpu_tests.log, gpu_tests.xml)"
echo "benchmark: exit $bench_status  ($OUT_DIR/gpu_bench.md, gpu_bench.json, gpu_bench.log)"
[ -f "$OUT_DIR/gpu_bench.md" ] && cat "$OUT_DIR/gpu_bench.md"
if [ "$tests_status" != 0 ] || [ "$bench_status" != 0 ]; then
  exit 1
fi
