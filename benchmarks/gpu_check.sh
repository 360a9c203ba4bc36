#!/usr/bin/env bash
# The GPU checks of ganzoo in one command, for a machine with a CUDA GPU and a
# CUDA build of torch (run from the repository root):
#   OUT=/tmp/gpu-check benchmarks/gpu_check.sh
# 1. installs ganzoo and the example plugins into the current python (no deps),
# 2. builds the C++/CUDA extension for this GPU (`ganzoo ops` says which backend runs),
# 3. runs the tests that need CUDA (skipped elsewhere),
# 4. times the fused ops against eager PyTorch (`ganzoo bench --device cuda`, Markdown), and the
#    critic step's faster paths (channels_last, a CUDA graph of the whole step, both, bf16),
# 5. trains dcgan for 50 steps under torchrun with the NCCL backend (1 process per GPU),
# 6. trains wgan-gp for 2000 steps in fp32, bf16 and fp16: finite?, speed, peak memory,
# 7. times `ganzoo train wgan-gp` against the stock-PyTorch loop (benchmarks/peer.py) and the
#    step's cost as batch and image size grow (benchmarks/scaling.py), on the GPU.
# The bench tables go to $OUT, one log per stage to $LOGS (default $OUT); the exit status is the number of failed stages.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-check}
LOGS=${LOGS:-$OUT}  # one log per stage
mkdir -p "$OUT" "$LOGS"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}
failed=0
stage() {  # stage NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$LOGS/$name.log"
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  nvcc --version | tail -n 2; date -u; } 2>&1 | tee "$OUT/env.txt"
stage install 180 $PY -m pip install -q --no-deps --no-build-isolation -e . -e plugins/ganzoo-wgan -e plugins/ganzoo-hinge
stage build 300 env GANZOO_OPS=native $PY -m ganzoo ops
stage cuda-tests 300 $PY -m pytest -q -p no:cacheprovider tests/test_fused_ops.py tests/test_ops_build.py
stage bench 300 sh -c "GANZOO_OPS=native $PY -m ganzoo bench --device cuda > '$OUT/bench-cuda.md'"
cat "$OUT/bench-cuda.md"
stage torchrun-nccl 180 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m ganzoo train dcgan \
  --device cuda --steps 50 --out /tmp/gpu-check-ddp --sample-every 0 --quiet
grep -h "ranks_consistent\|backend" /tmp/gpu-check-ddp/metrics.jsonl /tmp/gpu-check-ddp/config.json 2>/dev/null | head -3
stage precision 540 sh -c "$PY benchmarks/precision_runs.py --device cuda --steps 2000 > '$OUT/precision-cuda.md'"
cat "$OUT/precision-cuda.md"
stage peer 420 sh -c "$PY benchmarks/peer.py --device cuda --data-dir \"\${MNIST_DIR:-../shared/data/mnist}\" --rounds 3 --steps 100 --warmup 20 --compile > '$OUT/peer-cuda.md'"
cat "$OUT/peer-cuda.md"
stage scaling 300 sh -c "$PY benchmarks/scaling.py --device cuda --data-dir \"\${MNIST_DIR:-../shared/data/mnist}\" --steps 30 --warmup 10 --procs 1 > '$OUT/scaling-cuda.md'"
cat "$OUT/scaling-cuda.md"
echo "failed stages: $failed"
exit $failed
