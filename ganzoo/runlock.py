"""One owner per run directory: an exclusive lock file, ``RUN_DIR/.lock``.

A fresh run and a resume both take the lock before they write anything into
the run directory (``config.json``, logs, checkpoints) and release it when
they end, however they end short of SIGKILL. The lock file holds the owner's
PID, host and start time, which the refusal names. It is written whole to a
private temporary name first and then hard-linked to ``.lock``: the link is
atomic and fails when ``.lock`` exists (local filesystems, NFS v3 and later),
so two processes never both own a directory, and a process that loses the race
never reads a lock that is still empty. Where hard links are not supported the
lock falls back to ``O_CREAT | O_EXCL`` and writes the holder afterwards.

A lock left by a process that died (SIGKILL, a crash of the machine) is
recognised as stale when it names this host and a PID that no longer runs,
and is taken over. A lock from another host cannot be checked from here: the
message says which host and PID hold it, and to remove the file if that
process is gone.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from .errors import GanzooError

LOCK_NAME = ".lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _holder(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunLock:
    """The lock of ``run_dir``; :meth:`acquire` raises GanzooError when another process holds it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.owned = False

    def holder(self) -> dict | None:
        """Who holds the lock, when that is another process that may still run (one on
        another host always may); None when the lock is free, stale or this process's."""
        holder = _holder(self.path)
        if not holder or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            return None
        if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1))):
            return None
        return holder

    def acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                self._create(json.dumps(me))
            except FileExistsError:
                holder = _holder(self.path)
                if holder and holder.get("host") == me["host"] and not pid_alive(int(holder.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # its owner died without releasing it
                    continue
                raise GanzooError(self._busy_message(holder)) from None
            except OSError as exc:
                raise GanzooError(f"cannot lock {self.path.parent}: {exc.strerror or exc}") from None
            self.owned = True
            return self
        raise GanzooError(self._busy_message(_holder(self.path)))

    def _create(self, content: str) -> None:
        """Create the lock file holding ``content``, atomically; FileExistsError when it exists."""
        staged = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        try:
            staged.write_text(content)
            try:
                os.link(staged, self.path)
                return
            except FileExistsError:
                raise
            except OSError:  # no hard links here (some FUSE or SMB mounts): the exclusive create
                pass
        finally:
            staged.unlink(missing_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)

    def _busy_message(self, holder: dict | None) -> str:
        if not holder:
            who = "another process (its lock file is empty or unreadable: it may be starting)"
        else:
            who = f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})"
        return (f"{self.path.parent} is in use by {who}; wait for it to finish, or if that process is gone, "
                f"remove {self.path}")

    def release(self) -> None:
        if self.owned:
            holder = _holder(self.path)
            if holder is None or holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.owned = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
