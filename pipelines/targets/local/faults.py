"""Failures made on purpose in a local environment, for game days: the same signals and
outages a real host sees (kill -9, SIGSTOP, PostgreSQL stopped, a lock held past the
statement timeout, Caddy killed, the backups filesystem full). Nothing here repairs
anything: that is the agent's job, and the game day scores how well it does it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from pipelines.targets.base import FaultUnavailable, TargetError
from pipelines.targets.local.backups.manifest import backups_dir
from pipelines.targets.local.contract import LocalEnv

# The inventory table: every order and every inventory read touches it: a lock on it stalls both.
LOCKED_TABLE = "items"


class LocalFaults:
    kinds = (
        "kill-replica",
        "hang-replica",
        "db-outage",
        "db-slow",
        "lb-crash",
        "backups-disk-full",
    )

    def __init__(self, env: LocalEnv) -> None:
        self.env = env
        self._stopped: list[int] = []
        self._release_lock = threading.Event()
        self._locker: threading.Thread | None = None

    def inject(self, kind: str) -> str:
        if kind not in self.kinds:
            raise TargetError(
                f"{self.env.name}: no fault named {kind!r}; the local target has "
                f"{', '.join(self.kinds)}"
            )
        if kind == "kill-replica":
            replica = self._ready_replica()
            os.kill(int(replica["pid"]), signal.SIGKILL)
            return f"kill -9 replica slot {replica['slot']} (pid {replica['pid']})"
        if kind == "hang-replica":
            replica = self._ready_replica()
            os.kill(int(replica["pid"]), signal.SIGSTOP)
            self._stopped.append(int(replica["pid"]))
            return f"SIGSTOP replica slot {replica['slot']} (pid {replica['pid']})"
        if kind == "db-outage":
            self.env.cluster().stop()
            return f"PostgreSQL stopped (port {self.env.cluster().port})"
        if kind == "db-slow":
            return self._hold_lock()
        if kind == "backups-disk-full":
            return self._fill_backups()
        pid = self.env.load_balancer().pid()
        if pid is None:
            raise TargetError(f"{self.env.name}: Caddy is not running; nothing to crash")
        os.kill(pid, signal.SIGKILL)
        return f"kill -9 Caddy (pid {pid})"

    def heal(self, kind: str) -> str:
        if kind == "hang-replica":
            resumed = []
            while self._stopped:
                pid = self._stopped.pop()
                with contextlib.suppress(ProcessLookupError):  # replaced and killed already
                    os.kill(pid, signal.SIGCONT)
                    resumed.append(str(pid))
            return f"SIGCONT {', '.join(resumed)}" if resumed else "the stopped replica is gone"
        if kind == "db-outage":
            self.env.cluster().start()
            return "PostgreSQL started"
        if kind == "backups-disk-full":
            directory = backups_dir(self.env)
            done = subprocess.run(["umount", str(directory)], capture_output=True, text=True)
            if done.returncode != 0:
                raise TargetError(
                    f"{self.env.name}: could not unmount the full tmpfs on {directory}: "
                    f"{done.stderr.strip()}; run `umount {directory}` by hand (the snapshots "
                    "under it are hidden, not gone)"
                )
            return f"tmpfs unmounted from {directory}; the snapshots under it are back"
        if kind == "db-slow" and self._locker is not None:
            self._release_lock.set()
            self._locker.join(timeout=30)
            self._locker = None
            return f"lock on {LOCKED_TABLE} released"
        return ""

    def _fill_backups(self) -> str:
        """A 1 MB tmpfs over the backups directory: the filesystem a snapshot writes to is
        full. The snapshots already there are hidden under it until heal() unmounts it."""
        directory = backups_dir(self.env)
        if os.geteuid() != 0 or not Path("/proc/filesystems").read_text().count("tmpfs"):
            raise FaultUnavailable(
                f"{self.env.name}: backups-disk-full needs root on Linux to mount a tmpfs "
                f"over {directory}; skipped"
            )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise FaultUnavailable(
                f"{self.env.name}: cannot mount a tmpfs over {directory} here "
                f"({done.stderr.strip()}); backups-disk-full skipped"
            )
        return f"1 MB tmpfs mounted over {directory}"

    def _ready_replica(self) -> dict[str, Any]:
        ready = [r for r in self.env.observed().get("replicas", []) if r["health"] == "ready"]
        if not ready:
            raise TargetError(f"{self.env.name}: no ready replica to break")
        replica: dict[str, Any] = min(ready, key=lambda r: r["slot"])
        return replica

    def _hold_lock(self) -> str:
        """ACCESS EXCLUSIVE on the inventory table from a connection of the schema owner, held
        until heal(): every query that needs the table waits into statement_timeout."""
        url = self.env.database.url("owner")
        held, failed = threading.Event(), []
        self._release_lock.clear()

        async def hold() -> None:
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    await conn.execute(f"LOCK TABLE {LOCKED_TABLE} IN ACCESS EXCLUSIVE MODE")
                    held.set()
                    # The release comes from another thread: a threading.Event, polled.
                    while not self._release_lock.is_set():  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                await conn.close()

        def run() -> None:
            try:
                asyncio.run(hold())
            except Exception as exc:
                failed.append(exc)
                held.set()

        self._locker = threading.Thread(target=run, name="db-slow-lock", daemon=True)
        self._locker.start()
        held.wait(timeout=15)
        if failed or not held.is_set():
            raise TargetError(
                f"{self.env.name}: could not lock {LOCKED_TABLE}: {failed or 'timeout'}"
            )
        return f"ACCESS EXCLUSIVE lock held on {LOCKED_TABLE}"
