"""Is a process alive, and is it the one we started? Shared by every pid file and lock.

A pid alone can be recycled after a crash or a reboot; the kernel's start time of the process
(field 22 of /proc/<pid>/stat) pins the identity. A zombie counts as dead.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_start(pid: int) -> str | None:
    """The kernel's start time of pid, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after it start past the ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def pid_alive(pid: int, others_count: bool = True) -> bool:
    """Whether pid runs. A process of another user answers EPERM: `others_count` says
    whether that counts as alive (a lock held by another user) or not (our own pid file,
    whose pid was recycled by someone else's process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return others_count
    return process_start(pid) is not None
