"""One deploy at a time per environment.

A lock file holds who took it (pid, host, user, command, when). A second deploy is refused
with that information; a lock whose process is gone (kill -9, a crash, a reboot) is
detected as stale and broken, and the break is reported.

Whoever holds a lock gets a `Holding`: `check()` raises `LeaseLost` once the lock is no
longer its own, so a run stops before its next change instead of racing the new holder.
The AWS lock is a lease that can be lost that way (targets/aws/lease.py); a local lock
file is lost only if someone removed or broke it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

from pipelines.host.procs import pid_alive, process_start
from pipelines.ledger import actor


class LockHeld(RuntimeError):
    """Another live process holds the environment's lock."""


class LeaseLost(RuntimeError):
    """A lock this process held was taken over or could not be kept: stop changing things."""


class Holding(Protocol):
    def check(self) -> None:
        """Raise LeaseLost when the lock is no longer this process's."""
        ...


class LockFileHolding:
    """A held lock file: still ours while it names this process."""

    def __init__(self, path: Path, record: Mapping[str, object]) -> None:
        self.path, self.record = path, record

    def check(self) -> None:
        try:
            current = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            current = {}
        if current.get("pid") != self.record["pid"] or current.get("at") != self.record["at"]:
            now = describe(current) if current else "nobody (the file is gone)"
            raise LeaseLost(f"{self.path} is no longer ours: it names {now}")


def describe(holder: dict[str, object]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(holder.get("at", 0)))))
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} as {holder.get('who')} since "
        f"{since}: {holder.get('command')}"
    )


def holder_is_alive(holder: dict[str, object]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot check another machine's processes: assume it is alive
    pid = int(str(holder.get("pid", 0)))
    return pid_alive(pid) and process_start(pid) == holder.get("start")


@contextlib.contextmanager
def environment_lock(
    path: Path, purpose: str, on_break: object = print
) -> Iterator[LockFileHolding]:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
        "host": socket.gethostname(),
        "who": actor(),
        "at": time.time(),
        "command": purpose or " ".join(sys.argv),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder and holder_is_alive(holder):
                raise LockHeld(f"{path.name} is held by {describe(holder)}") from None
            if callable(on_break):
                on_break(
                    f"breaking a stale lock {path}: {describe(holder) if holder else 'empty'}"
                    " (its process is gone)"
                )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        break
    else:
        raise LockHeld(f"could not take {path}")
    try:
        yield LockFileHolding(path, record)
    finally:
        with contextlib.suppress(OSError):
            current = json.loads(path.read_text())
            if current.get("pid") == os.getpid():
                path.unlink()
