"""Snapshot manifests on disk: what a snapshot is, where it lives, and whether its files are
still whole. Shared by taking, pruning, restoring and the drill.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.backups.dump import sha256_file
from pipelines.backups.retention import retention_for
from pipelines.postgres import tools as pgtools
from pipelines.targets.local.layout import read_json
from pipelines.targets.local.runtime import DATABASE

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

MANIFEST = "manifest.json"
DUMP = "dump.pgdump"
BASE = "base"
PARTIAL = ".partial-"


class BackupError(RuntimeError):
    """A snapshot could not be taken, verified or restored; the message says why and what
    to do."""


@dataclass(frozen=True)
class SnapshotManifest:
    id: str
    environment: str
    kind: str
    created_at: str
    created_epoch: float
    database: str
    server_version: str
    schema_head: str | None
    size_bytes: int
    sha256: str
    fingerprint: dict[str, Any]
    expires_at: str | None
    deploy_id: str = ""
    reason: str = ""
    physical: dict[str, Any] | None = None
    durations: dict[str, float] = field(default_factory=dict)
    directory: str = ""

    @property
    def path(self) -> Path:
        return Path(self.directory)

    @property
    def dump(self) -> Path:
        return self.path / DUMP

    @property
    def base(self) -> Path:
        return self.path / BASE

    def rows(self) -> int:
        return sum(t["rows"] for t in self.fingerprint.get("tables", {}).values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("directory")
        return data

    @classmethod
    def load(cls, directory: Path) -> SnapshotManifest:
        data = read_json(directory / MANIFEST)
        if not isinstance(data, dict):
            raise BackupError(f"{directory / MANIFEST} is missing")
        known = {f for f in cls.__dataclass_fields__ if f != "directory"}
        return cls(**{k: v for k, v in data.items() if k in known}, directory=str(directory))


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def backups_dir(env: LocalEnv) -> Path:
    return env.layout.root / "backups"


def superuser(env: LocalEnv) -> pgtools.ConnInfo:
    return pgtools.ConnInfo.from_url(env.database.url("superuser")).on(DATABASE)


def retention_s(env: LocalEnv, kind: str) -> float | None:
    """How long a snapshot of `kind` is kept at least; None: not by age."""
    return retention_for(env.spec, kind)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- verifying -----------------------------------------------------------------


def _toc_database(listing: str) -> str | None:
    for line in listing.splitlines():
        if line.startswith(";") and "dbname:" in line:
            return line.split("dbname:", 1)[1].strip()
    return None


def verify_snapshot(
    manifest: SnapshotManifest, *, physical: bool = True, deep: bool = False
) -> None:
    """Raise BackupError unless the snapshot's files are whole and are what the manifest
    says. `deep` also reads every byte of the dump through pg_restore."""
    from pipelines.postgres.cluster import locate_binaries

    where = f"snapshot {manifest.id}"
    dump = manifest.dump
    if not dump.is_file():
        raise BackupError(f"{where}: the dump {dump} is missing; use another snapshot")
    size = dump.stat().st_size
    if size == 0:
        raise BackupError(f"{where}: the dump {dump} is empty; use another snapshot")
    if size != manifest.size_bytes:
        raise BackupError(
            f"{where}: the dump {dump} is {size} bytes but {manifest.size_bytes} were written "
            f"({'truncated' if size < manifest.size_bytes else 'grown'}); use another snapshot"
        )
    actual = sha256_file(dump)
    if actual != manifest.sha256:
        raise BackupError(
            f"{where}: the dump {dump} has sha256 {actual[:16]}... but {manifest.sha256[:16]}... "
            "was recorded: its bytes changed after it was written (disk fault or tampering); "
            "use another snapshot"
        )
    binaries = locate_binaries()
    try:
        listing = pgtools.run(binaries, "pg_restore", ["--list", str(dump)])
    except pgtools.ToolError as exc:
        raise BackupError(f"{where}: pg_restore cannot read the dump {dump}: {exc}") from None
    found = _toc_database(listing)
    if found != manifest.database:
        raise BackupError(
            f"{where}: the dump {dump} is of database {found!r}, but the snapshot is of "
            f"{manifest.database!r}: it is not this snapshot's dump; use another snapshot"
        )
    for table, data in manifest.fingerprint.get("tables", {}).items():
        schema, name = table.split(".", 1)
        if data["rows"] and f"TABLE DATA {schema} {name} " not in listing:
            raise BackupError(f"{where}: the dump {dump} holds no data for table {table}")
    if deep:
        try:
            pgtools.run(binaries, "pg_restore", ["--file=/dev/null", str(dump)])
        except pgtools.ToolError as exc:
            raise BackupError(f"{where}: the dump {dump} is damaged: {exc}") from None
    if physical and manifest.physical:
        base = manifest.base
        recorded = manifest.physical["backup_manifest_sha256"]
        if not (base / "backup_manifest").is_file():
            raise BackupError(f"{where}: the base backup {base} has no backup_manifest")
        if sha256_file(base / "backup_manifest") != recorded:
            raise BackupError(f"{where}: {base / 'backup_manifest'} changed after it was written")
        try:
            pgtools.run(binaries, "pg_verifybackup", ["--quiet", str(base)])
        except pgtools.ToolError as exc:
            raise BackupError(f"{where}: pg_verifybackup rejects {base}: {exc}") from None


# -- listing and finding -------------------------------------------------------


def list_snapshots(env: LocalEnv, kind: str | None = None) -> list[SnapshotManifest]:
    """Complete snapshots of `env`, oldest first. Partial ones are never listed."""
    found = []
    root = backups_dir(env)
    if not root.is_dir():
        return []
    for directory in root.iterdir():
        if directory.name.startswith(".") or not (directory / MANIFEST).is_file():
            continue
        try:
            manifest = SnapshotManifest.load(directory)
        except (BackupError, ValueError, TypeError):
            continue  # a damaged manifest is not a snapshot anyone can restore
        if kind is None or manifest.kind == kind:
            found.append(manifest)
    return sorted(found, key=lambda m: m.created_epoch)


def find_snapshot(env: LocalEnv, snapshot_id: str) -> SnapshotManifest:
    snapshots = list_snapshots(env)
    if snapshot_id == "newest" and snapshots:
        return snapshots[-1]
    for manifest in snapshots:
        if manifest.id == snapshot_id:
            return manifest
    known = ", ".join(m.id for m in snapshots[-5:]) or "none"
    raise BackupError(
        f"no snapshot {snapshot_id!r} in {backups_dir(env)} (newest: {known}); "
        f"see invoke backup.list --env {env.name}"
    )


def newest_verified(
    env: LocalEnv, kind: str | None = None
) -> tuple[SnapshotManifest | None, list[str]]:
    """The newest snapshot (of `kind`) that passes verification, and why newer ones failed."""
    failures = []
    for manifest in reversed(list_snapshots(env, kind)):
        try:
            verify_snapshot(manifest, physical=False)
        except BackupError as exc:
            failures.append(str(exc))
            continue
        return manifest, failures
    return None, failures
