#!/usr/bin/env bash
# benchmarks/threads.py on two CPUs of distinct physical cores of a larger, otherwise idle
# machine (e.g. the GPU machine's CPUs): a quiet stand-in for a 2-core box when the
# development machine is busy. Run from the repository root:
#   OUT=/tmp/threads benchmarks/threads_pinned.sh [threads.py options]
# The training, the busy process and everything they start inherit the pinning; the run queue
# that ganzoo's default reads (/proc/stat) is the whole machine's, so the rest must be idle.
set -eu -o pipefail
OUT=${OUT:-/tmp/threads}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CPUS=$($PY - <<'PY'
import os
seen, chosen = set(), []
for cpu in sorted(os.sched_getaffinity(0)):
    try:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        core = (open(base + "physical_package_id").read().strip(), open(base + "core_id").read().strip())
    except OSError:
        core = ("?", cpu)
    if core not in seen:
        seen.add(core)
        chosen.append(cpu)
    if len(chosen) == 2:
        break
print(",".join(map(str, chosen)))
PY
)
{ echo "pinned to CPUs $CPUS of $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  grep procs_running /proc/stat || echo "no procs_running in /proc/stat: the default cannot see the load here"
  uptime; date -u; } | tee "$OUT/machine.txt"
taskset -c "$CPUS" $PY benchmarks/threads.py --json "$OUT/threads.json" "$@" | tee "$OUT/threads.md"
