"""The program the one-off AWS backup task runs
(`python -m pipelines.targets.aws.backup_task`), against real PostgreSQL: the dump with its
fingerprint, the drill's two verifications, and uploads to presigned URLs (here a local
server that records PUTs)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.backups.dump import sha256_file
from pipelines.host.ports import free_port
from pipelines.targets.aws import backup_task
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[Site]:
    state = Path(tempfile.mkdtemp(prefix="drydock-task-"))
    built = build_site(pg_server, state)
    try:
        yield built
    finally:
        teardown_site(built, state)


@pytest.fixture
def bucket() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A stand-in for presigned S3 URLs: PUT bodies by path; chunked uploads refused."""
    received: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None:
                self.send_response(411)
            else:
                received[self.path] = self.rfile.read(int(length))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def task_environment(site: Site, url: str) -> dict[str, str]:
    """What the task definition and the pipeline's overrides give the container."""
    admin = site.admin
    return {
        "DATABASE_URL": site.production.database.url("app") + "?sslmode=disable",
        "DB_ADMIN_USERNAME": admin.user,
        "DB_ADMIN_PASSWORD": admin.password,
        "COPY_ADMIN_PASSWORD": admin.password,
        "DUMP_PUT_URL": f"{url}/dump",
        "MANIFEST_PUT_URL": f"{url}/manifest",
        "REPORT_PUT_URL": f"{url}/report",
    }


def test_dump_uploads_the_dump_and_its_manifest(
    site: Site, bucket: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, received = bucket
    assert backup_task.main(["dump", "--id", "w1"], task_environment(site, url)) == 0
    manifest = json.loads(received["/manifest"])
    assert manifest["id"] == "w1" and manifest["database"] == "drydock"
    assert manifest["size_bytes"] == len(received["/dump"]) and received["/dump"][:5] == b"PGDMP"
    dump = Path(tempfile.mkdtemp()) / "d"
    dump.write_bytes(received["/dump"])
    assert manifest["sha256"] == sha256_file(dump)
    assert manifest["fingerprint"]["tables"]["public.items"]["rows"] == 300
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith(backup_task.REPORT_MARKER)


def test_drill_verifies_the_copy_and_the_logical_dump(
    site: Site, bucket: tuple[str, dict[str, bytes]]
) -> None:
    url, received = bucket
    env = task_environment(site, url)
    code = backup_task.main(
        ["drill", "--id", "d1", "--copy-host", "127.0.0.1", "--copy-port", str(site.admin.port)],
        env,
    )
    report = json.loads(received["/report"])
    assert code == 0, report
    assert (
        report["ok"] and report["rds_copy_mismatches"] == [] and report["logical_mismatches"] == []
    )
    assert report["rpo_s"] is not None and report["tables"] >= 8
    assert report["dump"]["id"] == "d1-dump"


def test_drill_fails_when_the_copy_lost_a_table(
    site: Site, bucket: tuple[str, dict[str, bytes]]
) -> None:
    from pipelines.postgres import tools as pgtools

    url, received = bucket
    copy = "drydock_rds_copy"
    pgtools.drop_database(site.admin, copy)
    asyncio.run(site.execute(f'CREATE DATABASE "{copy}" TEMPLATE "drydock"', "postgres"))
    asyncio.run(site.execute("DROP TABLE rate_limits", copy))
    # The "RDS copy" is a database of another name on the same server here.
    live = backup_task.source_conn(task_environment(site, url))
    try:
        report = backup_task.drill(
            "d2", live, live.on(copy), Path(tempfile.mkdtemp()), task_environment(site, url)
        )
    finally:
        pgtools.drop_database(site.admin, copy)
    assert report["ok"] is False
    assert (
        "table public.rate_limits: missing from the copy (0 rows in the source)"
        in (report["rds_copy_mismatches"])
    )
    assert "/report" not in received or json.loads(received["/report"])["id"] != "d2"
