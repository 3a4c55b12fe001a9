"""The restore drill on real PostgreSQL 18 with a real replica of the service: a passing
drill, and every fault the issue lists failing it with a message that names the problem."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.backups import report as drill_report
from pipelines.backups.dump import sha256_file
from pipelines.host.ports import free_port
from pipelines.postgres import tools as pgtools
from pipelines.postgres.cluster import locate_binaries
from pipelines.targets.local.backups import drill as drills
from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.backups.manifest import SnapshotManifest
from service.migrate import known_revisions
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[Site]:
    state = Path(tempfile.mkdtemp(prefix="drydock-drills-"))
    built = build_site(pg_server, state)
    try:
        yield built
    finally:
        teardown_site(built, state)


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    return tmp_path / "reports"


def drill(site: Site, reports: Path, snapshot: str | None = None) -> drill_report.DrillReport:
    lines: list[str] = []
    report = drills.run_drill(
        site.staging,
        site.production,
        snapshot=snapshot,
        reports_dir=reports,
        log=lines.append,
        ledger=site.ledger,
        ready_timeout_s=30,
    )
    assert lines[-1].startswith("DRILL PASSED" if report.ok else "DRILL FAILED"), lines[-1]
    return report


def scratch_databases(site: Site) -> list[str]:
    import asyncio

    import asyncpg

    async def go() -> list[str]:
        conn = await asyncpg.connect(site.url("postgres"))
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'drill%'")
        finally:
            await conn.close()
        return [r["datname"] for r in rows]

    return asyncio.run(go())


def replace_dump(manifest: SnapshotManifest, dump: Path) -> None:
    """Put `dump` in the snapshot and record its size and sha256, as if it had been written
    that way: only the contents can give it away."""
    shutil.copyfile(dump, manifest.dump)
    document = json.loads((manifest.path / "manifest.json").read_text())
    document.update(size_bytes=dump.stat().st_size, sha256=sha256_file(dump))
    (manifest.path / "manifest.json").write_text(json.dumps(document))


def pg_dump(site: Site, target: Path, *extra: str, database: str = "drydock") -> Path:
    conn = site.admin.on(database)
    pgtools.run(
        locate_binaries(),
        "pg_dump",
        ["-Fc", f"--file={target}", *extra, *conn.args(), f"--dbname={database}"],
        conn,
    )
    return target


def test_drill_restores_verifies_serves_and_measures(site: Site, reports: Path) -> None:
    report = drill(site, reports)
    assert report.ok, drill_report.summary(report)
    assert report.snapshot_origin == "fresh dump"
    assert report.snapshot["kind"] == "weekly" and "restore drill" in report.snapshot["reason"]
    # the generated rows, the heartbeat, alembic_version, and the schema's phase record
    phases = len(known_revisions())
    assert report.tables >= 8 and report.rows == 40 + 300 + 120 + 360 + 1 + 1 + phases
    assert [p.name for p in report.phases] == list(drills.PHASES)
    assert {c.name for c in report.smoke} >= {
        "authenticated inventory list matches the copy",
        "authenticated order list matches the copy",
        "inventory refuses a request without a token",
    }
    assert report.rto_s is not None and 0 < report.rto_s < 60
    assert report.rpo_s is not None and report.rpo_basis.startswith("newest heartbeat")
    assert scratch_databases(site) == []  # dropped
    saved = json.loads(Path(report.paths["json"]).read_text())
    assert saved["ok"] is True and saved["rto_s"] == report.rto_s
    assert "passed" in Path(report.paths["markdown"]).read_text().splitlines()[0]
    assert drill_report.history(reports)[-1]["id"] == report.id
    page = Path(report.paths["html"]).read_text()  # the phases against the RTO, and the trend
    assert "Plotly.newPlot" in page and f"RTO {report.rto_s:.1f} s" in page
    entry = site.ledger.entries(env="staging", kind="drill")[-1]
    assert entry["id"] == report.id and entry["ok"] is True


def test_drill_from_the_newest_snapshot(site: Site, reports: Path) -> None:
    # A drill of a fresh dump verifies its snapshot: this test must not rely on another
    # test of the module having run first, in this process.
    assert drill(site, reports).ok
    newest = backups.list_snapshots(site.production)[-1]
    report = drill(site, reports, snapshot="newest")
    assert report.ok, drill_report.summary(report)
    assert report.snapshot["id"] == newest.id
    assert report.snapshot_origin == "newest verified snapshot"


@pytest.fixture
def snapshot(site: Site) -> Iterator[SnapshotManifest]:
    manifest = backups.take_snapshot(site.production, "manual", physical=False, ledger=site.ledger)
    yield manifest
    shutil.rmtree(manifest.path, ignore_errors=True)


def assert_fails(report: drill_report.DrillReport, *needles: str) -> None:
    text = drill_report.summary(report)
    assert not report.ok, text
    for needle in needles:
        assert needle in text, text
    assert needles[0] in Path(report.paths["markdown"]).read_text()


def test_flipped_byte_fails_the_drill(
    site: Site, reports: Path, snapshot: SnapshotManifest
) -> None:
    data = bytearray(snapshot.dump.read_bytes())
    data[len(data) // 2] ^= 0x04
    snapshot.dump.write_bytes(bytes(data))
    assert_fails(drill(site, reports, snapshot.id), "its bytes changed after it was written")


def test_truncated_dump_fails_the_drill(
    site: Site, reports: Path, snapshot: SnapshotManifest
) -> None:
    snapshot.dump.write_bytes(snapshot.dump.read_bytes()[:1000])
    assert_fails(drill(site, reports, snapshot.id), "(truncated)", snapshot.id)


def test_dump_of_another_database_fails_the_drill(
    site: Site, reports: Path, snapshot: SnapshotManifest, tmp_path: Path
) -> None:
    pgtools.create_database(site.admin, "drydock_elsewhere")
    try:
        dump = pg_dump(site, tmp_path / "other.pgdump", database="drydock_elsewhere")
    finally:
        pgtools.drop_database(site.admin, "drydock_elsewhere")
    replace_dump(snapshot, dump)
    assert_fails(drill(site, reports, snapshot.id), "is of database 'drydock_elsewhere'")


def test_table_missing_from_the_copy_fails_the_drill(
    site: Site, reports: Path, snapshot: SnapshotManifest, tmp_path: Path
) -> None:
    replace_dump(snapshot, pg_dump(site, tmp_path / "d.pgdump", "--exclude-table=rate_limits"))
    report = drill(site, reports, snapshot.id)
    assert_fails(report, "table public.rate_limits: missing from the copy")
    assert scratch_databases(site) == []


def test_row_changed_in_the_copy_fails_the_drill(
    site: Site, reports: Path, snapshot: SnapshotManifest, tmp_path: Path
) -> None:
    import asyncio

    asyncio.run(site.execute("UPDATE items SET name = 'changed' WHERE id = 7"))
    try:
        replace_dump(snapshot, pg_dump(site, tmp_path / "d.pgdump"))
    finally:
        asyncio.run(site.execute("UPDATE items SET name = 'item 7' WHERE id = 7"))
    report = drill(site, reports, snapshot.id)
    assert_fails(report, "table public.items: content differs: rows with id from 6 to 10")
    assert len(report.mismatches) == 1, report.mismatches


def test_unreachable_source_without_snapshots_is_explained(
    site: Site, reports: Path, tmp_path: Path
) -> None:
    from tests.pipelines.targets.local.backups.fixtures import environment

    lonely = environment("production", site.pg, tmp_path / "state", {})
    lonely.spec = dataclasses.replace(lonely.spec, local_postgres_port=free_port())
    report = drills.run_drill(
        site.staging, lonely, reports_dir=reports, log=lambda _: None, ledger=site.ledger
    )
    assert not report.ok
    assert "production's database is not reachable and production has no verified snapshot" in (
        report.failure
    )
    assert "invoke env.up --env production" in report.failure
