"""CPU threads for torch: a default that does not collapse on a busy machine, and ``--threads N``.

Two things made the default slow beside another job (issue 15; ``benchmarks/threads.py``
measures them):

* libgomp's default *active* waiting: a torch worker thread spins between parallel
  regions, so on a core that another process also wants, every region costs a scheduler
  time slice. :func:`prepare_openmp` asks for passive waiting (``OMP_WAIT_POLICY=PASSIVE``)
  before torch loads its OpenMP runtime, which reads the variable only once, at load.
* a parallel region waits for its slowest thread: with 2 threads on 2 cores and another
  process on one of them, every region waits for a time slice. :func:`default_threads`
  therefore gives torch the physical cores that other processes leave free when the
  command starts (read from ``/proc/stat``'s ``procs_running``), at least one.

A user's own ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` always win, and so does ``--threads``.
Nothing here imports torch until :func:`use_threads` runs.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import GanzooError

#: Samples of the run queue taken at start (about 0.1 s in all): their median rejects a
#: short-lived process (a shell, a compiler) that happens to run at the first look.
LOAD_SAMPLES, LOAD_SAMPLE_GAP_S = 5, 0.02
MAX_THREADS = 4096


def prepare_openmp(environ: dict[str, str] | None = None) -> bool:
    """Ask for passive OpenMP waiting unless the user chose a policy; True when it was set.

    Call before ``import torch``: libgomp reads the variable when torch loads it,
    so once torch is imported this does nothing (and says so by returning False).
    """
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or environ.get("OMP_WAIT_POLICY"):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among ``cpus`` (hyper-threads of one core count once); falls back to the CPU count."""
    cpus = usable_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def other_busy_processes(stat: Path = Path("/proc/stat"), samples: int = LOAD_SAMPLES,
                         gap_s: float = LOAD_SAMPLE_GAP_S) -> int | None:
    """Runnable processes other than this one, right now (median of a few looks); None where unknown."""
    seen = []
    for i in range(samples):
        try:
            for line in stat.read_text().splitlines():
                if line.startswith("procs_running "):
                    seen.append(int(line.split()[1]) - 1)  # this process is running while it reads
                    break
        except (OSError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(gap_s)
    if not seen:
        return None
    return max(0, sorted(seen)[len(seen) // 2])


def default_threads() -> tuple[int, str]:
    """torch's CPU threads when the user chose none, and why (one phrase for the start line)."""
    cores = physical_cores()
    busy = other_busy_processes() or 0
    free = max(1, cores - busy)
    if free == cores:
        return cores, f"{cores} physical core{'s' * (cores != 1)}"
    return free, (f"{busy} other busy process{'es' * (busy != 1)} on {cores} physical cores; "
                  "--threads N to choose")


def add_threads_option(parser) -> None:
    """``--threads N`` on a command whose handler :func:`ganzoo.cli.main` runs inside :func:`use_threads`."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: the physical cores that other processes "
                             "leave free at start, at least 1; OMP_NUM_THREADS when set)")
    parser.set_defaults(cpu_threads=True)


def check_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise GanzooError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")


#: Why the count inside :func:`use_threads` is what it is (for :func:`describe`).
_reason: str | None = None


@contextlib.contextmanager
def use_threads(threads: int | None = None) -> Iterator[int]:
    """torch uses ``threads`` CPU threads inside (the default above when None and the user
    set no ``OMP_NUM_THREADS``); the previous count is restored on the way out, so an
    in-process caller (a test, a notebook) keeps its own.
    """
    global _reason
    check_threads(threads)
    import torch

    previous, previous_reason = torch.get_num_threads(), _reason
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        chosen, _reason = previous, "OMP_NUM_THREADS"
    elif threads is None:
        chosen, _reason = default_threads()
    else:
        chosen, _reason = threads, "--threads"
    if chosen != previous:
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        _reason = previous_reason
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def describe() -> str:
    """torch's CPU threads now, with the reason when :func:`use_threads` chose them: for start lines."""
    import torch

    count = torch.get_num_threads()
    return f"{count} thread{'s' * (count != 1)}" + (f": {_reason}" if _reason else "")
