#!/usr/bin/env bash
# Compile every CUDA kernel file in csrc/ with `nvcc -c` for sm_80 and sm_90,
# with the flags PyTorch's extension builds use, and fail on any error or
# warning. Needs no GPU and no torch: the .cu files include CUDA headers only.
# Without nvcc (neither on PATH nor under $CUDA_HOME) it says so and passes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${NVCC:-}"
if [ -z "$nvcc" ]; then
  nvcc="$(command -v nvcc || true)"
fi
if [ -z "$nvcc" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
fi
if [ -z "$nvcc" ]; then
  echo "check_nvcc: nvcc not found (PATH, \$CUDA_HOME); CUDA kernels not checked"
  exit 0
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(-c -std=c++20 -O3 --resource-usage -Werror all-warnings --expt-relaxed-constexpr
       -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
       -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__)
status=0
shopt -s nullglob
files=("$here"/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "check_nvcc: no .cu files in $here" >&2
  exit 1
fi
echo "check_nvcc: $("$nvcc" --version | tail -n 2 | head -n 1)"
for cu in "${files[@]}"; do
  for arch in 80 90; do
    log="$out/$(basename "$cu").sm_$arch.log"
    if "$nvcc" "${flags[@]}" -gencode "arch=compute_$arch,code=sm_$arch" \
        -o "$out/$(basename "$cu").sm_$arch.o" "$cu" >"$log" 2>&1; then
      kernels="$(grep -c 'Function properties for' "$log" || true)"
      regs="$(grep -o 'Used [0-9]* registers' "$log" | awk '{print $2}' | sort -n | tail -n 1)"
      spills="$(grep -o '[0-9]* bytes spill stores' "$log" | awk '{s += $1} END {print s + 0}')"
      echo "check_nvcc: ok   $(basename "$cu") sm_$arch: $kernels kernels, at most ${regs:-0} registers, $spills bytes spilled"
    else
      echo "check_nvcc: FAIL $(basename "$cu") sm_$arch" >&2
      cat "$log" >&2
      status=1
    fi
  done
done
exit $status
