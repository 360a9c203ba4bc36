"""CPU threads for torch: a default that does not collapse on a busy machine, and ``--threads N``.

Two things made torch's own default slow beside another job (issue 15;
``benchmarks/threads.py`` measures them):

* a parallel region waits for its slowest thread: with 2 threads on 2 cores and another
  process on one of them, every region waits for a scheduler time slice. So torch gets
  the physical cores that other processes leave free (:func:`default_threads`, from
  ``/proc/stat``'s run queue), at least one, and during training :class:`FollowLoad`
  keeps following that count: a job that starts beside a run takes a thread from it
  within seconds, and gives it back when it ends.
* libgomp's *active* waiting: a worker spins between parallel regions, so on a core that
  another process wants, every region costs a time slice. Passive waiting
  (``OMP_WAIT_POLICY=PASSIVE``) avoids that but made the idle 2-core step 1.3x slower
  (benchmarks/RESULTS.md), so :func:`prepare_openmp` asks for it only when other
  processes are busy at start; on an idle machine libgomp keeps its short default spin
  and :class:`FollowLoad` drops to one thread (no spinning workers) when load arrives.
  The policy must be chosen before torch loads libgomp, which reads it once.

A user's own ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` always win, and so does ``--threads``
(neither is then changed during the run). Nothing here imports torch until
:func:`use_threads` runs. The thread count can change floating-point sums, so a CPU run
is bit-identical to another (a resume included) when both ran with the same count
(``--threads N`` pins it).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import GanzooError
from .events import Observer

#: Samples of the run queue taken at start (about 0.1 s in all): their median rejects a
#: short-lived process (a shell, a compiler) that happens to run at the first look.
LOAD_SAMPLES, LOAD_SAMPLE_GAP_S = 5, 0.02
MAX_THREADS = 4096


#: Other runnable processes seen by :func:`prepare_openmp` (None: not looked), reused by
#: :func:`default_threads` so a command samples the run queue once at start.
_busy_at_start: int | None = None


def prepare_openmp(environ: dict[str, str] | None = None, busy: int | None = None) -> bool:
    """Ask for passive OpenMP waiting when other processes are busy now, unless the user chose
    a policy; True when it was set.

    busy: other runnable processes (default: :func:`other_busy_processes`, looked at once here).
    Call before ``import torch``: libgomp reads the variable when torch loads it,
    so once torch is imported this does nothing (and says so by returning False).
    """
    global _busy_at_start
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or environ.get("OMP_WAIT_POLICY"):
        return False
    _busy_at_start = other_busy_processes() if busy is None else busy
    if not _busy_at_start:
        return False  # idle: libgomp's short default spin is faster (module docstring)
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


def own_running_threads(task_dir: Path = Path("/proc/self/task")) -> int:
    """This process's threads that are runnable now (state R), at least 1 (the caller)."""
    running = 0
    try:
        for task in task_dir.iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended while we looked
                continue
            # "tid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
            if stat[stat.rindex(")") + 2:].startswith("R"):
                running += 1
    except (OSError, ValueError):
        return 1
    return max(1, running)


def others_running_now(stat: Path = Path("/proc/stat"), task_dir: Path = Path("/proc/self/task")) -> int | None:
    """Runnable tasks of other processes right now (one look), or None where unknown: the run
    queue less this process's own runnable threads (its torch workers count there while they run)."""
    total = other_busy_processes(stat, samples=1)
    if total is None:
        return None
    return max(0, total + 1 - own_running_threads(task_dir))


def free_cores(cores: int, busy: int | None) -> int:
    """The physical cores that ``busy`` other runnable processes leave, at least 1."""
    return max(1, cores - (busy or 0))


def default_threads() -> tuple[int, str]:
    """torch's CPU threads when the user chose none, and why (one phrase for the start line)."""
    cores = physical_cores()
    busy = (_busy_at_start if _busy_at_start is not None else other_busy_processes()) or 0
    free = free_cores(cores, busy)
    if free == cores:
        return cores, f"{cores} physical core{'s' * (cores != 1)}, following the load"
    return free, (f"{busy} other busy process{'es' * (busy != 1)} on {cores} physical cores, "
                  "following the load; --threads N to choose")


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
#: Whether the count inside :func:`use_threads` is ganzoo's default (which :class:`FollowLoad` may change).
_following = False


@contextlib.contextmanager
def use_threads(threads: int | None = None) -> Iterator[int]:
    """torch uses ``threads`` CPU threads inside (the default above when None and the user
    set no ``OMP_NUM_THREADS``); the previous count is restored on the way out, so an
    in-process caller (a test, a notebook) keeps its own.
    """
    global _reason, _following
    check_threads(threads)
    import torch

    previous, previous_reason, previous_following = torch.get_num_threads(), _reason, _following
    _following = False
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        chosen, _reason = previous, "OMP_NUM_THREADS"
    elif threads is None:
        (chosen, _reason), _following = default_threads(), True
    else:
        chosen, _reason = threads, "--threads"
    if chosen != previous:
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        _reason, _following = previous_reason, previous_following
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def describe() -> str:
    """torch's CPU threads now, with the reason when :func:`use_threads` chose them: for start lines."""
    import torch

    count = torch.get_num_threads()
    return f"{count} thread{'s' * (count != 1)}" + (f": {_reason}" if _reason else "")


def following_load() -> bool:
    """Whether torch's thread count is ganzoo's default, which a training run keeps following."""
    return _following


class LoadFollower:
    """Keeps torch's threads at the physical cores that other processes leave free.

    :meth:`poll` looks at the run queue at most every ``interval_s`` seconds and changes the
    count once ``patience`` looks in a row agree on a new one (a compiler or a shell that runs
    for a moment changes nothing). ``look``, ``get_threads`` and ``set_threads`` default to
    :func:`others_running_now` and torch's; tests pass their own.
    """

    def __init__(self, cores: int | None = None, interval_s: float = 2.0, patience: int = 2,
                 look=None, get_threads=None, set_threads=None, clock=time.monotonic):
        self.cores = physical_cores() if cores is None else cores
        self.interval_s, self.patience = interval_s, patience
        self.look = look or others_running_now
        if get_threads is None or set_threads is None:
            import torch

            get_threads, set_threads = torch.get_num_threads, torch.set_num_threads
        self.get_threads, self.set_threads, self.clock = get_threads, set_threads, clock
        self._last_look = -float("inf")
        self._candidate: int | None = None
        self._agreeing = 0

    def poll(self) -> tuple[int, int, int] | None:
        """``(old, new, others)`` when the count changed at this call, else None."""
        now = self.clock()
        if now - self._last_look < self.interval_s:
            return None
        self._last_look = now
        others = self.look()
        if others is None:
            return None
        target = free_cores(self.cores, others)
        if target != self._candidate:
            self._candidate, self._agreeing = target, 0
        self._agreeing += 1
        current = self.get_threads()
        if self._agreeing < self.patience or target == current:
            return None
        self.set_threads(target)
        return current, target, others


class FollowLoad(Observer):
    """The training-event observer (:mod:`ganzoo.events`) that runs a :class:`LoadFollower`
    after every step of a CPU run whose threads are ganzoo's default; each change is a
    metrics.jsonl record ``{"event": "threads", "step", "threads", "was", "others_running"}``.
    It changes how fast a step runs; like any thread count, it can change the order of
    floating-point sums (the last bits of a result), never the computation itself."""

    order = 5  # after metrics.jsonl (0), before the progress bar (10)

    def __init__(self, follower_factory=LoadFollower):
        self.follower_factory = follower_factory
        self.follower: LoadFollower | None = None

    def on_start(self, run, state):
        if run.device.type == "cpu" and following_load():
            self.follower = self.follower_factory()

    def on_step(self, run, state):
        if self.follower is None:
            return
        change = self.follower.poll()
        if change is not None:
            was, now, others = change
            run.emit("on_log", state=state, record={"event": "threads", "step": state.step, "threads": now,
                                                    "was": was, "others_running": others})

    def on_end(self, run, state, status):
        self.follower = None
