"""A logical dump and the fingerprint of exactly what it holds, on any PostgreSQL the process
can reach: the local target's snapshots and the AWS one-off backup task both take theirs
here. The fingerprint is taken inside the very snapshot pg_dump reads (`pg_export_snapshot()`
+ `pg_dump --snapshot`), so it describes the dump exactly."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.backups import fingerprint
from pipelines.postgres import tools as pgtools


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def dump_with_fingerprint(
    binaries: Any, conn: pgtools.ConnInfo, target: Path, *, jobs: int = 2
) -> fingerprint.Fingerprint:
    """pg_dump -Fc of `conn.database` into `target`, and the fingerprint of what it holds."""
    session = await asyncpg.connect(conn.url(), timeout=pgtools.CONNECT_TIMEOUT_S)
    try:
        async with session.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await session.fetchval("SELECT pg_export_snapshot()")
            dump = asyncio.ensure_future(
                pgtools.run_async(
                    binaries,
                    "pg_dump",
                    [
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--file={target}",
                        *conn.args(),
                        f"--dbname={conn.database}",
                    ],
                    conn,
                )
            )
            hashing = asyncio.ensure_future(
                fingerprint.take_async(conn.url(), snapshot=snapshot, jobs=jobs, buckets=True)
            )
            both = (dump, hashing)
            try:
                # The first failure (a full disk, a lost connection) stops the other at once.
                await asyncio.wait(both, return_when=asyncio.FIRST_EXCEPTION)
                failed = [t.exception() for t in both if t.done() and t.exception()]
                if failed and failed[0] is not None:
                    raise failed[0]
                await dump  # the exporting transaction stays open until pg_dump is done
                return await hashing
            finally:
                for task in both:
                    task.cancel()
                await asyncio.gather(*both, return_exceptions=True)
    finally:
        await session.close()
