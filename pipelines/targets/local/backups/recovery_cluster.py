"""A cluster in archive recovery: the base backup copy PostgreSQL replays WAL into, up to a
target, then promotes. Its settings, its ownership (the server account's when root), the
wait for promotion, and what its log says (why it stopped, the newest transaction it holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.postgres.cluster import Cluster, PostgresError
from pipelines.postgres.tools import ConnInfo
from pipelines.targets.local.backups.wal import format_lsn, parse_lsn
from pipelines.targets.local.runtime import SUPERUSER

_LAST_COMMIT = re.compile(r"last completed transaction was at log time (.+)$")


def configure_recovery(cluster: Cluster, epoch: float | None, lsn: int | None) -> None:
    data, home = cluster.data_dir, cluster.home
    (data / "postmaster.pid").unlink(missing_ok=True)
    (data / "standby.signal").unlink(missing_ok=True)
    if epoch is not None:
        moment = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(sep=" ")
        target = f"recovery_target_time = '{moment}'\n"
    else:
        target = f"recovery_target_lsn = '{format_lsn(lsn or 0)}'\n"
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# point-in-time recovery (drydock backup.restore)\n"
            f"port = {cluster.port}\n"
            f"log_directory = '{home / 'log'}'\n"
            f'restore_command = \'cp "{home / "wal"}/%f" "%p"\'\n'
            "recovery_target_timeline = 'current'\n"
            "recovery_target_inclusive = on\n"
            "recovery_target_action = 'promote'\n" + target
        )
    (data / "recovery.signal").touch()


def hand_over(home: Path, cluster: Cluster) -> None:
    """The copy belongs to the account the server runs as (an unprivileged one as root)."""
    (cluster.data_dir).chmod(0o700)
    if cluster.account.is_current:
        return
    for path in (home, *home.rglob("*")):
        os.lchown(path, cluster.account.uid, cluster.account.gid)


def replay(cluster: Cluster, password: str, timeout_s: float) -> int:
    """Start the copy and wait until it has left recovery; returns the last replayed LSN."""
    try:
        cluster.start(timeout=timeout_s)
    except PostgresError as exc:
        raise PostgresError(_server_errors(cluster.home / "log") or str(exc)) from None
    url = ConnInfo("127.0.0.1", cluster.port, SUPERUSER, password, "postgres").url()
    deadline = time.monotonic() + timeout_s

    async def poll() -> int:
        while time.monotonic() < deadline:
            if not cluster.is_running():
                raise PostgresError(
                    _server_errors(cluster.home / "log") or "the server stopped during replay"
                )
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(url, timeout=5)
                try:
                    if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                        replayed = await conn.fetchval("SELECT pg_last_wal_replay_lsn()::text")
                        return parse_lsn(replayed) if replayed else 0
                finally:
                    await conn.close()
            await asyncio.sleep(0.1)
        raise PostgresError(f"the copy was still replaying WAL after {timeout_s:g} s")

    return asyncio.run(poll())


def _log_lines(directory: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(directory.glob("*.json")):
        for raw in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
    return lines


def _server_errors(directory: Path) -> str:
    errors = [
        str(line.get("message"))
        for line in _log_lines(directory)
        if line.get("error_severity") in ("FATAL", "PANIC")
    ]
    return "; ".join(errors[-3:])


def last_commit(directory: Path) -> str | None:
    found = None
    for line in _log_lines(directory):
        match = _LAST_COMMIT.search(str(line.get("message", "")))
        if match:
            found = match.group(1)
    return found


def remove_cluster(cluster: Cluster) -> None:
    with contextlib.suppress(PostgresError, OSError):
        if cluster.is_running():
            cluster.stop("immediate")
    shutil.rmtree(cluster.home, ignore_errors=True)
