"""The weekly restore drill (runbook section 6): prove the data comes back, and how fast.

1. dump the source (the week's logical dump, kept as a `weekly` snapshot, fingerprinted in
   the very snapshot pg_dump reads), or take the source's newest verified snapshot;
2. restore it into a scratch database in the target environment's cluster (pg_restore -j 2);
3. RPO: now minus the newest heartbeat in the copy (the service beats every few seconds);
4. start one replica of the release on the copy and, while it boots, verify the copy against
   the fingerprint: schema head, per-table row counts and content hashes, sequences,
   extensions, privileges;
5. RTO: drill start to that replica's first ready answer; then the read-only smoke;
6. drop the scratch database, write the report (JSON, Markdown), the history and the ledger.

Any mismatch fails the drill, naming the table and what differs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from pipelines.backups.report import REPORTS, DrillReport, Phase, summary, write
from pipelines.ledger import Ledger
from pipelines.postgres import tools as pgtools
from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.backups.manifest import SnapshotManifest, iso, superuser
from pipelines.targets.local.backups.replica import (
    DrillReplica,
    copy_facts,
    release_artifact,
    smoke,
)
from pipelines.targets.local.backups.restore import check_copy, restore_dump
from pipelines.targets.local.ledger import FileLedger

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]
READY_TIMEOUT_S = 60.0
PHASES = ("dump", "restore", "verify", "replica", "smoke", "cleanup")


class DrillFailed(RuntimeError):
    """A phase could not go on; the drill report says which and why."""


def source_reachable(env: LocalEnv) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(superuser(env).url(), timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


async def newest_heartbeat(url: str) -> dt.datetime | None:
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('public.heartbeat')") is None:
            return None
        value = await conn.fetchval("SELECT max(beat_at) FROM heartbeat")
        return value if isinstance(value, dt.datetime) else None
    finally:
        await conn.close()


class Drill:
    def __init__(
        self,
        target: LocalEnv,
        source: LocalEnv,
        *,
        snapshot: str | None,
        log: Log,
        ledger: Ledger,
        jobs: int,
        ready_timeout_s: float,
    ) -> None:
        self.target, self.source = target, source
        self.snapshot_id = snapshot
        self.log, self.ledger, self.jobs = log, ledger, jobs
        self.ready_timeout_s = ready_timeout_s
        self.started = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        token = secrets.token_hex(2)
        self.report = DrillReport(
            id=f"drill-{stamp}-{token}",
            target=target.name,
            source=source.name,
            started_at=iso(self.started),
            scratch_database=f"drill_{stamp.lower()}_{token}",
        )

    @contextmanager
    def phase(self, name: str, doing: str) -> Iterator[Phase]:
        number = PHASES.index(name) + 1
        self.log(f"drill [{number}/{len(PHASES)}] {name}: {doing}")
        record = Phase(name, 0.0, False)
        mark = time.monotonic()
        try:
            yield record
            record.ok = True
        finally:
            record.seconds = round(time.monotonic() - mark, 3)
            self.report.phases.append(record)
            state = "done" if record.ok else "FAILED"
            detail = f": {record.detail}" if record.detail else ""
            self.log(
                f"drill [{number}/{len(PHASES)}] {name}: {state} in {record.seconds:.1f} s{detail}"
            )

    # -- phases ------------------------------------------------------------------

    def obtain(self) -> SnapshotManifest:
        source = self.source
        if self.snapshot_id in (None, "") and source_reachable(source):
            with self.phase("dump", f"pg_dump -Fc of {source.name}, fingerprinted") as phase:
                manifest = backups.take_snapshot(
                    source,
                    "weekly",
                    reason=f"restore drill {self.report.id}",
                    physical=False,
                    ledger=self.ledger,
                )
                self.report.snapshot_origin = "fresh dump"
                phase.detail = f"{manifest.id}, {manifest.size_bytes / 1e6:.1f} MB"
                return manifest
        with self.phase("dump", f"checking a snapshot of {source.name}") as phase:
            if self.snapshot_id not in (None, "", "newest"):
                manifest = backups.find_snapshot(source, str(self.snapshot_id))
                backups.verify_snapshot(manifest, physical=False)
                self.report.snapshot_origin = "given snapshot"
            else:
                newest, failures = backups.newest_verified(source)
                if newest is None:
                    why = (
                        ""
                        if self.snapshot_id
                        else f"{source.name}'s database is not reachable and "
                    )
                    raise DrillFailed(
                        f"{why}{source.name} has no verified snapshot "
                        f"({'; '.join(failures) or 'none taken'}): start it with "
                        f"invoke env.up --env {source.name}, or take one with "
                        f"invoke backup.snapshot --env {source.name} --kind manual"
                    )
                manifest = newest
                self.report.snapshot_origin = "newest verified snapshot"
            phase.detail = f"{manifest.id} verified (size, sha256, pg_restore --list)"
            return manifest

    def run(self) -> DrillReport:
        report = self.report
        replica: DrillReplica | None = None
        conn = superuser(self.target)
        created = False
        try:
            manifest = self.obtain()
            report.snapshot = backups.manifest_dict(manifest)
            copy_url = conn.on(report.scratch_database).url()
            with self.phase(
                "restore", f"pg_restore -j {self.jobs} into {report.scratch_database}"
            ) as phase:
                created = True
                report.restore_errors = restore_dump(
                    self.target, manifest, report.scratch_database, jobs=self.jobs
                )
                self._measure_rpo(copy_url, manifest)
                phase.detail = f"RPO {report.rpo_s:.1f} s" if report.rpo_s is not None else ""
                if report.restore_errors:
                    phase.detail += f"; pg_restore reported {len(report.restore_errors)} problem(s)"
            app = pgtools.ConnInfo.from_url(self.target.database.url("app"))
            replica = DrillReplica(
                self.target,
                release_artifact(self.source, self.target),
                app.on(report.scratch_database).url(),
                report.id,
            )
            replica.start()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                ready = pool.submit(replica.wait_ready, self.ready_timeout_s)
                try:
                    self._verify_and_wait(manifest, replica, ready)
                except BaseException:
                    replica.stop()  # ends the readiness wait at once
                    raise
            with self.phase("smoke", "read-only requests against the copy") as phase:
                facts = asyncio.run(copy_facts(copy_url))
                report.smoke = smoke(replica, facts)
                phase.detail = f"{sum(c.ok for c in report.smoke)}/{len(report.smoke)} passed"
        except (DrillFailed, backups.BackupError) as exc:
            report.failure = str(exc)
        except Exception as exc:  # the report must say what stopped the drill
            report.failure = f"{type(exc).__name__}: {exc}"
        finally:
            if replica is not None:
                replica.stop()
            if created:
                self._cleanup(conn)
        return report

    def _verify_and_wait(
        self,
        manifest: SnapshotManifest,
        replica: DrillReplica,
        ready: concurrent.futures.Future[float],
    ) -> None:
        report = self.report
        with self.phase("verify", "fingerprint of the copy against the source") as phase:
            copy, mismatches = check_copy(
                self.target, manifest, report.scratch_database, jobs=self.jobs
            )
            report.tables, report.rows = len(copy.tables), copy.rows
            report.mismatches = [str(m) for m in mismatches]
            phase.detail = (
                f"{len(copy.tables)} tables, {copy.rows:,} rows, {len(mismatches)} mismatch(es)"
            )
        with self.phase("replica", f"waiting for the replica on port {replica.port}") as phase:
            report.rto_s = round(ready.result() - self.started, 3)
            phase.detail = f"RTO {report.rto_s:.1f} s"

    def _cleanup(self, conn: pgtools.ConnInfo) -> None:
        scratch = self.report.scratch_database
        try:
            with self.phase("cleanup", f"dropping {scratch}"):
                pgtools.drop_database(conn, scratch)
        except Exception as exc:  # reported, so that the drill still writes its report
            note = f"the scratch database {scratch} could not be dropped ({exc}); drop it by hand"
            self.report.failure = "; ".join(filter(None, [self.report.failure, note]))

    def _measure_rpo(self, copy_url: str, manifest: SnapshotManifest) -> None:
        beat = asyncio.run(newest_heartbeat(copy_url))
        now = time.time()
        if beat is not None:
            self.report.rpo_s = round(now - beat.timestamp(), 3)
            self.report.rpo_basis = f"newest heartbeat in the copy, {beat.isoformat()}"
        else:
            self.report.rpo_s = round(now - manifest.created_epoch, 3)
            self.report.rpo_basis = "no heartbeat row in the copy; age of the snapshot instead"


def run_drill(
    target: LocalEnv,
    source: LocalEnv | None = None,
    *,
    snapshot: str | None = None,
    reports_dir: Path = REPORTS,
    log: Log = print,
    ledger: Ledger | None = None,
    jobs: int = 2,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> DrillReport:
    """Run the drill of `source` (default: `target` itself) into a scratch database of
    `target`. `snapshot`: None dumps the source if it is reachable (else its newest verified
    snapshot); "newest" or an id uses that snapshot. Returns the report; `report.ok` says
    whether the drill passed."""
    ledger = ledger or FileLedger()
    drill = Drill(
        target,
        source or target,
        snapshot=snapshot,
        log=log,
        ledger=ledger,
        jobs=jobs,
        ready_timeout_s=ready_timeout_s,
    )
    report = drill.run()
    report.seconds = round(time.time() - drill.started, 3)
    write(report, reports_dir)
    ledger.append(
        "drill",
        target.name,
        id=report.id,
        ok=report.ok,
        source=report.source,
        snapshot=report.snapshot.get("id"),
        rto_s=report.rto_s,
        rpo_s=report.rpo_s,
        tables=report.tables,
        rows=report.rows,
        problems=report.problems()[:10],
        report=report.paths.get("json"),
    )
    log(summary(report))
    return report
