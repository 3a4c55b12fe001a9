"""The point-in-time recovery drill (runbook sections 6 and 8), on a running environment.

1. write: a shopper places orders through the API, one after another, and the drill keeps
   the client's ledger: when each request started and was acknowledged, and what came back;
2. pick T: between two acknowledged orders, with no request in flight (the writer waits a
   moment around T), so every order is cleanly before or after it; writing goes on after;
3. restore to T into a cluster beside the live one (pitr.py), once the archive holds the WAL
   written so far;
4. verify to the row: every order acknowledged at or before T is in the copy with its lines
   and total, none acknowledged after T is, and the item's stock is what those orders left;
5. RPO: T minus the newest transaction the copy holds (PostgreSQL's own "last completed
   transaction" at the end of recovery); RTO: the restore's start to a replica of the
   release answering ready on the copy.

The copy and the replica are removed, and the shopper and item deleted, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from pipelines.backups.pitr_orders import INITIAL_STOCK, write_around_a_moment
from pipelines.backups.pitr_report import PitrDrillReport, iso_ms, record
from pipelines.backups.pitr_verify import copy_orders, verify
from pipelines.ledger import Ledger
from pipelines.postgres.tools import ConnInfo
from pipelines.targets.local.backups import pitr
from pipelines.targets.local.backups.manifest import BackupError, superuser
from pipelines.targets.local.backups.receiver import WalReceiver
from pipelines.targets.local.backups.replica import DrillReplica, release_artifact
from pipelines.targets.local.backups.snapshot import take_snapshot
from pipelines.targets.local.backups.window import recovery_window
from pipelines.targets.local.ledger import FileLedger
from pipelines.traffic import synthetic

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]
ARCHIVE_TIMEOUT_S = 30.0


def wait_archived(env: LocalEnv) -> float:
    """Until the archive has flushed all WAL written so far; returns how long it took."""
    receiver = WalReceiver(env)

    async def positions() -> tuple[bool, str]:
        conn = await asyncpg.connect(superuser(env).url(), timeout=5)
        try:
            row = await conn.fetchrow(
                "SELECT coalesce(r.flush_lsn >= pg_current_wal_lsn(), false) AS done, "
                "pg_current_wal_lsn()::text AS now FROM (SELECT 1) one LEFT JOIN "
                "pg_stat_replication r ON r.application_name = 'drydock-wal-archive'"
            )
            return bool(row["done"]), str(row["now"])
        finally:
            await conn.close()

    started = time.monotonic()
    while time.monotonic() - started < ARCHIVE_TIMEOUT_S:
        done, _ = asyncio.run(positions())
        if done:
            return time.monotonic() - started
        time.sleep(0.1)
    running = "running" if receiver.pid() else "NOT running (is the agent up?)"
    raise BackupError(
        f"the WAL archive of {env.name} did not catch up within {ARCHIVE_TIMEOUT_S:g} s; "
        f"pg_receivewal is {running}; see {receiver.log_path}"
    )


def run_pitr_drill(
    env: LocalEnv,
    *,
    reports_dir: Path,
    log: Log = print,
    write_before_s: float = 3.0,
    write_after_s: float = 2.0,
    ready_timeout_s: float = 60.0,
    ledger: Ledger | None = None,
) -> PitrDrillReport:
    started = time.time()
    report = PitrDrillReport(
        id=f"pitr-drill-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-"
        f"{secrets.token_hex(2)}",
        target="local",
        environment=env.name,
        started_at=iso_ms(started),
    )
    fixture = None
    restored: pitr.PointInTimeResult | None = None
    replica: DrillReplica | None = None
    try:
        if recovery_window(env).earliest is None:
            log("pitr drill: no base backup to start from; taking one")
            take_snapshot(env, "daily", reason=f"{report.id}: base backup", log=log)
        admin, password = env.ensure_smoke_admin(release_artifact(env))
        fixture = synthetic.prepare(env.url, admin, password)
        writer, moment = write_around_a_moment(
            env.url,
            fixture.user_token,
            fixture.sku,
            before_s=write_before_s,
            after_s=write_after_s,
            log=log,
        )
        report.point = iso_ms(moment)
        report.orders_written = len(writer.acked)
        report.write_failures = writer.failures[:10]
        report.archive_catch_up_s = round(wait_archived(env), 3)
        log(f"pitr drill [3/5] restoring {env.name} to T")
        mark = time.time()
        restored = pitr.restore_to_point(env, to_time=report.point, log=log)
        report.restore = restored.to_json()
        app = ConnInfo.from_url(env.database.url("app"))
        copy_app = ConnInfo(app.host, restored.port, app.user, app.password, restored.database)
        replica = DrillReplica(env, release_artifact(env), copy_app.url(), report.id)
        replica.start()
        ready_at = replica.wait_ready(ready_timeout_s)
        report.rto_s = round(ready_at - mark, 3)
        log(f"pitr drill [4/5] verifying the copy to the row (RTO {report.rto_s:.1f} s)")
        copy_url = restored.url(superuser(env).password)
        copy = asyncio.run(copy_orders(copy_url, fixture.user_id, fixture.item_id))
        report.orders_expected, report.mismatches = verify(
            writer.acked, moment, copy, INITIAL_STOCK
        )
        report.orders_in_copy = len(copy["orders"])
        if restored.recovered_to:
            newest = dt.datetime.fromisoformat(restored.recovered_to.replace(" UTC", "+00:00"))
            report.recovered_to = restored.recovered_to
            report.rpo_s = round(moment - newest.timestamp(), 3)
        report.replay_mb_s = (
            round(restored.replayed_bytes / 1e6 / restored.durations["replay_s"], 1)
            if restored.durations.get("replay_s")
            else None
        )
    except BackupError as exc:
        report.failure = str(exc)
    except Exception as exc:  # the report must say what stopped the drill
        report.failure = f"{type(exc).__name__}: {exc}"
    finally:
        if replica is not None:
            replica.stop()
        if restored is not None:
            with contextlib.suppress(BackupError, OSError):
                pitr.discard_restore(env, restored.id)
        if fixture is not None:
            report.cleanup = synthetic.cleanup(env.url, fixture)
    report.seconds = round(time.time() - started, 3)
    record(report, reports_dir, ledger or FileLedger(), env.name, log)
    return report
