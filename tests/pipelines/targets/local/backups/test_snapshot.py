"""Local snapshots against real PostgreSQL 18: take, list, verify, and the faults that must
fail loudly (flipped byte, truncation, another database's dump, a full disk)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.backups.dump import sha256_file
from pipelines.postgres.cluster import BIN_OVERRIDE_ENV, locate_binaries
from pipelines.postgres.tools import create_database, drop_database
from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.backups.manifest import backups_dir
from pipelines.targets.local.backups.snapshot import BackupError
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[Site]:
    state = Path(tempfile.mkdtemp(prefix="drydock-backups-"))
    built = build_site(pg_server, state)
    try:
        yield built
    finally:
        teardown_site(built, state)


@pytest.fixture(scope="module")
def snapshot(site: Site) -> backups.SnapshotManifest:
    return backups.take_snapshot(
        site.production, "manual", reason="tests", physical=False, ledger=site.ledger
    )


def tampered_copy(site: Site, manifest: backups.SnapshotManifest, name: str) -> Path:
    """A copy of a snapshot's dump, to damage without spoiling the module's snapshot."""
    target = Path(site.production.layout.root) / f"tamper-{name}.pgdump"
    shutil.copyfile(manifest.dump, target)
    return target


def with_dump(manifest: backups.SnapshotManifest, dump: Path) -> backups.SnapshotManifest:
    """The manifest as it would read if `dump` sat in its directory."""
    directory = dump.parent / f"as-{dump.stem}"
    directory.mkdir(exist_ok=True)
    shutil.copyfile(dump, directory / "dump.pgdump")
    return backups.SnapshotManifest(**{**manifest.to_json(), "directory": str(directory)})


def test_snapshot_manifest_describes_the_dump(
    site: Site, snapshot: backups.SnapshotManifest
) -> None:
    assert snapshot.environment == "production" and snapshot.kind == "manual"
    assert snapshot.database == "drydock" and snapshot.schema_head
    assert snapshot.server_version.startswith("18")
    assert snapshot.size_bytes == snapshot.dump.stat().st_size > 0
    assert snapshot.sha256 == sha256_file(snapshot.dump)
    tables = snapshot.fingerprint["tables"]
    assert tables["public.items"]["rows"] == 300
    assert tables["public.order_lines"]["rows"] == 360
    assert snapshot.expires_at is None  # manual: never pruned by age
    assert snapshot.reason == "tests" and snapshot.physical is None
    on_disk = json.loads((snapshot.path / "manifest.json").read_text())
    assert on_disk["id"] == snapshot.id and "directory" not in on_disk
    assert stat.S_IMODE(snapshot.path.parent.stat().st_mode) == 0o700
    backups.verify_snapshot(snapshot, deep=True)
    listed = backups.list_snapshots(site.production)
    assert snapshot.id in [m.id for m in listed]
    assert backups.list_snapshots(site.production, kind="daily") == [] or all(
        m.kind == "daily" for m in backups.list_snapshots(site.production, kind="daily")
    )
    entries = site.ledger.entries(env="production", kind="snapshot")
    assert any(e["id"] == snapshot.id and e["sha256"] == snapshot.sha256 for e in entries)


def test_physical_snapshot_is_checked_by_pg_verifybackup(site: Site) -> None:
    manifest = backups.take_snapshot(site.production, "daily", ledger=site.ledger)
    try:
        assert manifest.physical and manifest.physical["verified_with"] == "pg_verifybackup"
        assert (manifest.base / "backup_manifest").is_file()
        assert manifest.expires_at is not None
        backups.verify_snapshot(manifest)
        victim = manifest.base / "global" / "pg_control"
        data = bytearray(victim.read_bytes())
        data[10] ^= 0xFF
        victim.write_bytes(bytes(data))
        with pytest.raises(BackupError, match="pg_verifybackup rejects"):
            backups.verify_snapshot(manifest)
    finally:
        shutil.rmtree(manifest.path)


def test_flipped_byte_fails_verification(site: Site, snapshot: backups.SnapshotManifest) -> None:
    dump = tampered_copy(site, snapshot, "flip")
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"sha256 .* was recorded: its bytes changed"):
        backups.verify_snapshot(with_dump(snapshot, dump))


def test_truncated_dump_fails_verification(site: Site, snapshot: backups.SnapshotManifest) -> None:
    dump = tampered_copy(site, snapshot, "truncate")
    dump.write_bytes(dump.read_bytes()[: snapshot.size_bytes // 2])
    with pytest.raises(BackupError, match=r"bytes but \d+ were written \(truncated\)"):
        backups.verify_snapshot(with_dump(snapshot, dump))
    dump.write_bytes(b"")
    with pytest.raises(BackupError, match="is empty"):
        backups.verify_snapshot(with_dump(snapshot, dump))


def test_dump_of_another_database_is_refused(
    site: Site, snapshot: backups.SnapshotManifest
) -> None:
    other = "drydock_other"
    create_database(site.admin, other)
    try:
        target = Path(site.production.layout.root) / "other.pgdump"
        from pipelines.postgres.tools import run

        conn = site.admin.on(other)
        run(
            locate_binaries(),
            "pg_dump",
            ["-Fc", f"--file={target}", *conn.args(), f"--dbname={other}"],
            conn,
        )
    finally:
        drop_database(site.admin, other)
    # Even with size and sha256 recorded for the impostor, the dump names its database.
    impostor = with_dump(snapshot, target)
    impostor = backups.SnapshotManifest(
        **{
            **impostor.to_json(),
            "directory": impostor.directory,
            "size_bytes": target.stat().st_size,
            "sha256": sha256_file(target),
        }
    )
    with pytest.raises(
        BackupError, match="is of database 'drydock_other', but the snapshot is of 'drydock'"
    ):
        backups.verify_snapshot(impostor)


def test_missing_dump_is_named(site: Site, snapshot: backups.SnapshotManifest) -> None:
    ghost = backups.SnapshotManifest(**{**snapshot.to_json(), "directory": "/nonexistent/x"})
    with pytest.raises(BackupError, match=r"the dump /nonexistent/x/dump.pgdump is missing"):
        backups.verify_snapshot(ghost)


def fake_pg_dump(tmp: Path, body: str) -> Path:
    """A bin directory of the real tools, except a pg_dump that runs `body`."""
    real = locate_binaries().bin_dir
    fake = tmp / "bin"
    fake.mkdir()
    for tool in real.iterdir():
        (fake / tool.name).symlink_to(tool)
    (fake / "pg_dump").unlink()
    (fake / "pg_dump").write_text("#!/bin/sh\n" + body)
    (fake / "pg_dump").chmod(0o755)
    return fake


def partials(site: Site) -> list[str]:
    return [p.name for p in backups_dir(site.production).iterdir() if p.name.startswith(".")]


def test_dump_running_out_of_disk_leaves_nothing_listed(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [m.id for m in backups.list_snapshots(site.production)]
    fake = fake_pg_dump(
        tmp_path,
        'for a in "$@"; do case "$a" in --file=*) f="${a#--file=}";; esac; done\n'
        'head -c 65536 /dev/zero > "$f"\n'
        'echo "pg_dump: error: could not write to output file: No space left on device" >&2\n'
        "exit 1\n",
    )
    monkeypatch.setenv(BIN_OVERRIDE_ENV, str(fake))
    with pytest.raises(BackupError, match=r"ran out of disk space .* nothing was listed"):
        backups.take_snapshot(site.production, "daily", physical=False, ledger=site.ledger)
    assert [m.id for m in backups.list_snapshots(site.production)] == before
    assert partials(site) == []


def test_failing_pg_dump_is_reported_and_cleaned_up(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_pg_dump(tmp_path, 'echo "pg_dump: error: connection lost" >&2\nexit 1\n')
    monkeypatch.setenv(BIN_OVERRIDE_ENV, str(fake))
    with pytest.raises(
        BackupError, match=r"pg_dump failed; the partial snapshot was removed.*connection lost"
    ):
        backups.take_snapshot(site.production, "daily", physical=False, ledger=site.ledger)
    assert partials(site) == []


def test_full_disk_while_writing_the_manifest_lists_nothing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [m.id for m in backups.list_snapshots(site.production)]

    def full(path: Path, data: object) -> None:
        path.write_text("{")  # a torn write, as a full disk leaves it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(backups, "write_json", full)
    with pytest.raises(BackupError, match="writing the manifest ran out of disk space"):
        backups.take_snapshot(site.production, "weekly", physical=False, ledger=site.ledger)
    assert [m.id for m in backups.list_snapshots(site.production)] == before
    assert partials(site) == []


def test_too_little_free_space_refuses_before_writing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: type(usage)(usage.total, usage.total, 1024))
    with pytest.raises(
        BackupError, match=r"not enough disk space in .*backups: about \d+ MB needed"
    ):
        backups.take_snapshot(site.production, "daily", physical=False, ledger=site.ledger)
    assert partials(site) == []


def test_unknown_kind_and_snapshot_are_named(site: Site) -> None:
    with pytest.raises(BackupError, match="unknown snapshot kind 'hourly'"):
        backups.take_snapshot(site.production, "hourly")
    with pytest.raises(BackupError, match=r"no snapshot 'nope' in .*backup.list --env production"):
        backups.find_snapshot(site.production, "nope")
