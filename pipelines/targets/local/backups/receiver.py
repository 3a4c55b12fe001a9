"""Continuous WAL archiving: `pg_receivewal`, kept running by the agent.

Why pg_receivewal and not `archive_command`: the archive command only sees a segment once
it is complete, so the RPO is `archive_timeout`, and every forced switch writes a whole
16 MB segment (a 1 s timeout would archive 16 MB a second under any trickle of writes).
pg_receivewal streams the WAL as it is written and, with `--synchronous`, flushes it on
arrival, so the archive trails the server by well under a second and keeps everything that
reached it when PostgreSQL is killed. It also runs as this process's user (a client tool,
over TCP), so the archive lives in the backups directory even when PostgreSQL runs as an
unprivileged account. A physical replication slot makes the server keep WAL the receiver
has not yet flushed, so a receiver restart leaves no gap.

The agent calls `tick()` every quarter second: it (re)starts the receiver while the cluster
runs, and writes the checksum of each segment as soon as it is complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.host.procs import pid_alive
from pipelines.postgres import tools as pgtools
from pipelines.targets.local.backups.manifest import superuser
from pipelines.targets.local.backups.wal import archive_dir, seal

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

log = logging.getLogger("drydock.agent")

SLOT = "drydock_archive"
PIDFILE = "receiver.pid"
RESTART_BACKOFF_S = 2.0
STOP_GRACE_S = 5.0


class WalReceiver:
    def __init__(self, env: LocalEnv) -> None:
        self.env = env
        self.directory = archive_dir(env)
        self.log_path = env.layout.logs / "wal-receiver.log"
        self._next_start = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        return self.directory / PIDFILE

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        ours = b"pg_receivewal" in cmdline and str(self.directory).encode() in cmdline
        return pid if ours and pid_alive(pid) else None

    def tick(self) -> None:
        """Keep the receiver running while the cluster runs; seal completed segments."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._proc is not None and self._proc.poll() is not None:
            log.warning("WAL receiver exited", extra={"code": self._proc.returncode})
            self._proc = None  # reaped; started again below once the cluster runs
        for name in seal(self.directory):
            log.info("WAL segment archived", extra={"segment": name})
        if self.pid() is not None or time.monotonic() < self._next_start:
            return
        if not self.env.cluster().is_running():
            return
        self._next_start = time.monotonic() + RESTART_BACKOFF_S
        self.start()

    def start(self) -> int:
        cluster = self.env.cluster()
        conn = superuser(self.env)
        base = [*conn.args(), "--no-password", f"--slot={SLOT}"]
        pgtools.run(
            cluster.binaries,
            "pg_receivewal",
            [*base, "--create-slot", "--if-not-exists"],
            conn,
            timeout_s=30,
        )
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [
                    cluster.binaries.tool("pg_receivewal"),
                    *base,
                    f"--directory={self.directory}",
                    "--synchronous",  # flush on arrival: the archive is the RPO
                    "--no-loop",  # the agent restarts it, so a stopped cluster is noticed
                    "--status-interval=1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env={**conn.env(), "PGAPPNAME": "drydock-wal-archive"},
                start_new_session=True,  # like the replicas: outlives an agent restart
            )
        finally:
            os.close(fd)
        self._proc = proc
        self.pidfile.write_text(str(proc.pid))
        log.info("WAL receiver started", extra={"pid": proc.pid, "slot": SLOT})
        return proc.pid

    def stop(self) -> None:
        """SIGTERM: pg_receivewal flushes what it has and exits."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and pid_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def flushed_through(self) -> str | None:
        """How far the receiver has flushed, as the server sees it (None: not streaming)."""
        import asyncio

        import asyncpg

        async def ask() -> str | None:
            conn = await asyncpg.connect(superuser(self.env).url(), timeout=5)
            try:
                value = await conn.fetchval(
                    "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = $1",
                    "drydock-wal-archive",
                )
                return str(value) if value else None
            finally:
                await conn.close()

        return asyncio.run(ask())
