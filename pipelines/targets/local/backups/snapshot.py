"""Snapshots of a local environment's database (runbook section 6): take, verify, list, prune.

Each snapshot is a directory under `<env state>/backups/`:

    <id>/dump.pgdump      pg_dump -Fc of the environment's database
    <id>/base/            pg_basebackup of the whole cluster (plain, WAL streamed), checked
                          with pg_verifybackup
    <id>/manifest.json    written last: id, kind, sizes, sha256, fingerprint, expiry...

Everything is written under `.partial-<id>/` and renamed into place only once the dump
was read back and the manifest is on disk, so a failed or out-of-disk snapshot is never
listed. The fingerprint is taken inside the very snapshot pg_dump reads
(`pg_export_snapshot()` + `pg_dump --snapshot`), so it describes the dump exactly.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from pipelines.backups.dump import dump_with_fingerprint, sha256_file
from pipelines.backups.retention import KINDS
from pipelines.ledger import Ledger
from pipelines.postgres import tools as pgtools
from pipelines.targets.local.backups.manifest import (
    BASE,
    DUMP,
    MANIFEST,
    PARTIAL,
    BackupError,
    SnapshotManifest,
    backups_dir,
    find_snapshot,
    iso,
    list_snapshots,
    newest_verified,
    retention_s,
    superuser,
    tree_size,
    verify_snapshot,
)
from pipelines.targets.local.backups.retention import PruneDecision, PrunePlan, prune
from pipelines.targets.local.layout import write_json
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import DATABASE

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]

__all__ = [
    "KINDS",
    "BackupError",
    "PruneDecision",
    "PrunePlan",
    "SnapshotManifest",
    "find_snapshot",
    "list_snapshots",
    "manifest_dict",
    "newest_verified",
    "prune",
    "take_snapshot",
    "verify_snapshot",
]


# -- taking --------------------------------------------------------------------


def _check_space(env: LocalEnv, directory: Path, physical: bool, source: pgtools.ConnInfo) -> None:
    async def sizes() -> tuple[int, int]:
        conn = await asyncpg.connect(source.url(), timeout=pgtools.CONNECT_TIMEOUT_S)
        try:
            db = await conn.fetchval("SELECT pg_database_size(current_database())")
            cluster = await conn.fetchval("SELECT sum(pg_database_size(oid)) FROM pg_database")
            return int(db), int(cluster)
        finally:
            await conn.close()

    database, cluster = asyncio.run(sizes())
    # A custom-format dump is compressed; half the database is a generous upper bound.
    needed = database // 2 + (cluster if physical else 0)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise BackupError(
            f"not enough disk space in {directory}: about {needed / 1e6:.0f} MB needed, "
            f"{free / 1e6:.0f} MB free. Nothing was written. Free space, or prune old "
            f"snapshots: invoke backup.prune --env {env.name} --apply"
        )


def _friendly(exc: BaseException, what: str, env: LocalEnv) -> BackupError:
    text = str(exc)
    full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if full or "No space left on device" in text:
        return BackupError(
            f"{what} ran out of disk space in {backups_dir(env)}; the partial snapshot was "
            f"removed and nothing was listed. Free space or prune old snapshots "
            f"(invoke backup.prune --env {env.name} --apply), then try again."
        )
    return BackupError(f"{what} failed; the partial snapshot was removed: {text}")


def take_snapshot(
    env: LocalEnv,
    kind: str,
    reason: str = "",
    deploy_id: str = "",
    *,
    physical: bool = True,
    log: Log | None = None,
    ledger: Ledger | None = None,
    source: pgtools.ConnInfo | None = None,
) -> SnapshotManifest:
    """A verified snapshot of `env`'s database: logical dump, plus a physical base backup
    unless `physical=False`. Returns its manifest; raises BackupError, leaving nothing.
    `source`: dump that database instead (a point-in-time copy), logical only."""
    if kind not in KINDS:
        raise BackupError(f"unknown snapshot kind {kind!r}; choose one of {', '.join(KINDS)}")
    say = log or (lambda _: None)
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    snapshot_id = f"{env.name}-{kind}-{stamp}-{secrets.token_hex(2)}"
    root = backups_dir(env)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = root / f"{PARTIAL}{snapshot_id}"
    partial.mkdir(mode=0o700)
    conn = source or superuser(env)
    physical = physical and source is None
    binaries = env.cluster().binaries
    durations: dict[str, float] = {}
    step = "checking disk space"
    try:
        _check_space(env, root, physical, conn)
        step = "pg_dump"
        say(f"snapshot {snapshot_id}: pg_dump -Fc of {DATABASE} with its fingerprint")
        mark = time.monotonic()
        taken = asyncio.run(dump_with_fingerprint(binaries, conn, partial / DUMP))
        durations["dump_s"] = round(time.monotonic() - mark, 3)
        step = "hashing the dump"
        mark = time.monotonic()
        digest, size = sha256_file(partial / DUMP), (partial / DUMP).stat().st_size
        durations["sha256_s"] = round(time.monotonic() - mark, 3)
        physical_doc = None
        if physical:
            step = "pg_basebackup"
            say(f"snapshot {snapshot_id}: pg_basebackup of the cluster, then pg_verifybackup")
            mark = time.monotonic()
            physical_doc = base_backup(binaries, conn, partial / BASE)
            durations["basebackup_s"] = round(time.monotonic() - mark, 3)
        retention = retention_s(env, kind)
        manifest = SnapshotManifest(
            id=snapshot_id,
            environment=env.name,
            kind=kind,
            created_at=iso(started),
            created_epoch=started,
            database=taken.database,
            server_version=taken.server_version,
            schema_head=taken.schema_head,
            size_bytes=size,
            sha256=digest,
            fingerprint=taken.to_json(),
            expires_at=iso(started + retention) if retention else None,
            deploy_id=deploy_id,
            reason=reason,
            physical=physical_doc,
            durations=durations,
            directory=str(partial),
        )
        step = "verifying the dump"
        verify_snapshot(manifest, physical=False)
        step = "writing the manifest"
        write_json(partial / MANIFEST, manifest.to_json())
        final = root / snapshot_id
        os.rename(partial, final)
        _fsync_dir(root)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, BackupError):
            raise
        if isinstance(exc, (OSError, pgtools.ToolError, asyncpg.PostgresError)):
            raise _friendly(exc, step, env) from None
        raise
    manifest = SnapshotManifest.load(final)
    (ledger or FileLedger()).append(
        "snapshot",
        env.name,
        id=snapshot_id,
        snapshot_kind=kind,
        size_bytes=size,
        sha256=digest,
        schema_head=manifest.schema_head,
        deploy_id=deploy_id,
        reason=reason,
        physical=physical,
        seconds=round(time.time() - started, 3),
    )
    say(f"snapshot {snapshot_id}: {size / 1e6:.1f} MB, {manifest.rows()} rows, verified")
    return manifest


def base_backup(binaries: Any, conn: pgtools.ConnInfo, target: Path) -> dict[str, Any]:
    """A plain-format base backup with its WAL, checked by pg_verifybackup."""
    pgtools.run(
        binaries,
        "pg_basebackup",
        [
            *conn.args(),
            f"--pgdata={target}",
            "--format=plain",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-password",
            "--label=drydock snapshot",
        ],
        conn,
    )
    # The copy is consistent from here on: a point-in-time restore from this backup can
    # reach no earlier moment (see window.py).
    consistent_epoch = time.time()
    pgtools.run(binaries, "pg_verifybackup", ["--quiet", str(target)])
    return {
        "consistent_epoch": consistent_epoch,
        "dir": BASE,
        "format": "plain",
        "size_bytes": tree_size(target),
        "backup_manifest_sha256": sha256_file(target / "backup_manifest"),
        "verified_with": "pg_verifybackup",
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_dict(manifest: SnapshotManifest) -> dict[str, Any]:
    """The manifest as evidence for a report or the ledger: everything but the per-table
    fingerprint, which is summed up as tables and rows."""
    data = manifest.to_json()
    tables = data.pop("fingerprint").get("tables", {})
    data.update(path=manifest.directory, tables=len(tables), rows=manifest.rows())
    return data
