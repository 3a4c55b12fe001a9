"""Restoring a snapshot (runbook section 8, "rollback via snapshot restore").

`scratch` restores into a new database beside the live one and leaves the service alone.
`replace` swaps the environment's database for the restored copy:

1. the snapshot is verified (size, sha256, readable by pg_restore, of this database);
2. a safety snapshot of the current database is taken (`kind=safety`);
3. the dump is restored into a new database and checked against the snapshot's fingerprint,
   while the service still serves; a copy that differs is dropped and nothing is swapped;
4. maintenance: the replicas are scaled to 0 through the agent, so nothing writes;
5. the live database is renamed aside (kept: it holds any write made after step 2) and the
   copy takes its name; roles and grants are re-applied;
6. the replicas come back and the agent waits for them to be ready.

Production needs explicit confirmation. Every step is logged and the outcome goes to the
ledger.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.backups import fingerprint
from pipelines.ledger import Ledger
from pipelines.postgres import tools as pgtools
from pipelines.targets.local.backups.manifest import (
    BackupError,
    SnapshotManifest,
    find_snapshot,
    superuser,
    verify_snapshot,
)
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import DATABASE, OWNER_ROLE

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]
MAINTENANCE_TIMEOUT_S = 120.0
INTO = ("scratch", "replace")


class ConfirmationRequired(BackupError):
    """Replacing production's database was asked for without confirmation."""


@dataclass
class RestoreResult:
    snapshot_id: str
    environment: str
    into: str
    database: str
    safety_snapshot: str | None = None
    previous_database: str | None = None
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def restore_dump(
    env: LocalEnv, manifest: SnapshotManifest, database: str, *, jobs: int = 2
) -> list[str]:
    """pg_restore -j `jobs` of the snapshot into a new `database` of `env`'s cluster.
    Returns pg_restore's complaints (empty when it was clean)."""
    conn = superuser(env)
    pgtools.create_database(conn, database, owner=OWNER_ROLE)
    try:
        pgtools.run(
            env.cluster().binaries,
            "pg_restore",
            [*conn.args(), f"--dbname={database}", f"--jobs={jobs}", str(manifest.dump)],
            conn,
        )
    except pgtools.ToolError as exc:
        return [line for line in exc.stderr.splitlines() if line.strip()] or [str(exc)]
    return []


def check_copy(
    env: LocalEnv, manifest: SnapshotManifest, database: str, *, jobs: int = 2
) -> tuple[fingerprint.Fingerprint, list[fingerprint.Mismatch]]:
    expected = fingerprint.Fingerprint.from_json(manifest.fingerprint)
    return fingerprint.verify(expected, superuser(env).on(database).url(), jobs=jobs)


def _locate(env: LocalEnv, snapshot_id: str, source: LocalEnv | None) -> SnapshotManifest:
    try:
        return find_snapshot(env, snapshot_id)
    except BackupError:
        if source is None:
            raise
        return find_snapshot(source, snapshot_id)


def restore(
    env: LocalEnv,
    snapshot_id: str,
    into: str,
    confirm: bool,
    *,
    source: LocalEnv | None = None,
    database: str | None = None,
    log: Log | None = None,
    ledger: Ledger | None = None,
    jobs: int = 2,
    timeout_s: float = MAINTENANCE_TIMEOUT_S,
) -> RestoreResult:
    """Restore `snapshot_id` (of `env`, or of `source`) into a scratch database of `env`,
    or in place of `env`'s database. Raises BackupError, saying what was left where."""
    if into not in INTO:
        raise BackupError(f"--into must be scratch or replace, not {into!r}")
    if into == "replace" and env.name == "production" and not confirm:
        raise ConfirmationRequired(
            f"refusing to replace production's database with snapshot {snapshot_id} without "
            "explicit confirmation; nothing was changed. Re-run with --yes once the incident "
            "lead agrees, or restore --into scratch to inspect the snapshot first."
        )
    started = time.time()
    result = RestoreResult(snapshot_id, env.name, into, database or "")

    def step(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} restore {env.name}: {message}"
        result.steps.append(line)
        (log or print)(line)

    manifest = _locate(env, snapshot_id, source)
    step(f"verifying snapshot {manifest.id} ({manifest.kind}, {manifest.created_at})")
    verify_snapshot(manifest, physical=False)
    if into == "replace":
        from pipelines.targets.local.backups.snapshot import take_snapshot

        step("taking a safety snapshot of the current database first")
        safety = take_snapshot(
            env, "safety", reason=f"before restoring {manifest.id}", physical=False, ledger=ledger
        )
        result.safety_snapshot = safety.id
        step(f"safety snapshot {safety.id} taken and verified")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(started))
    target = database or (
        f"restore_{stamp}_{secrets.token_hex(2)}"
        if into == "scratch"
        else f"{DATABASE}_restoring_{stamp}"
    )
    result.database = target
    conn = superuser(env)
    step(f"restoring into new database {target} (pg_restore -j {jobs})")
    problems = restore_dump(env, manifest, target, jobs=jobs)
    _, mismatches = check_copy(env, manifest, target, jobs=jobs)
    if problems or mismatches:
        detail = "; ".join([*problems[:5], *(str(m) for m in mismatches[:10])])
        if into == "replace":
            pgtools.drop_database(conn, target)
            raise BackupError(
                f"the restored copy of {manifest.id} does not match its snapshot ({detail}); "
                f"it was dropped and {DATABASE} was not touched. Safety snapshot: "
                f"{result.safety_snapshot}"
            )
        raise BackupError(
            f"the restored copy of {manifest.id} in {target} does not match its snapshot: "
            f"{detail}. It was kept for inspection; drop it with DROP DATABASE {target}"
        )
    step(f"copy verified: {manifest.rows()} rows, schema head {manifest.schema_head}")
    if into == "replace":
        previous = f"{DATABASE}_before_{stamp}"
        with maintenance(env, step, timeout_s=timeout_s):
            step(f"renaming {DATABASE} to {previous} and {target} to {DATABASE}")
            pgtools.rename_database(conn, DATABASE, previous)
            try:
                pgtools.rename_database(conn, target, DATABASE)
            except BaseException:
                pgtools.rename_database(conn, previous, DATABASE)
                raise
            env.database.ensure_roles()
            step("roles and database grants re-applied")
        result.database, result.previous_database = DATABASE, previous
        step(
            f"done; the replaced database is kept as {previous} "
            f"(drop it once satisfied: DROP DATABASE {previous})"
        )
    result.seconds = round(time.time() - started, 3)
    (ledger or FileLedger()).append(
        "restore",
        env.name,
        snapshot=manifest.id,
        snapshot_env=manifest.environment,
        into=into,
        database=result.database,
        safety_snapshot=result.safety_snapshot,
        previous_database=result.previous_database,
        seconds=result.seconds,
    )
    return result


def _replicas(env: LocalEnv) -> list[dict[str, Any]]:
    return [r for r in env.observed().get("replicas", []) if r.get("health") != "dead"]


def _wait(env: LocalEnv, generation: int, count: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rollout = env.observed().get("rollout") or {}
        settled = rollout.get("generation") == generation and rollout.get("state") != "in_progress"
        replicas = _replicas(env)
        ready = [r for r in replicas if r.get("health") == "ready"]
        if settled and len(replicas) == count and len(ready) == count:
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def maintenance(env: LocalEnv, log: Log, *, timeout_s: float) -> Iterator[None]:
    """Scale the replicas to 0 through the agent for the duration, then back."""
    desired = env.desired()
    wanted = int(desired.get("replicas", 0)) if desired else 0
    if not desired or wanted == 0:
        log("maintenance: no replicas are deployed, nothing to pause")
        yield
        return
    release = desired["release"]
    env.ensure_agent()
    log(f"maintenance: scaling {wanted} replica(s) to 0 so that nothing writes")
    generation = env.set_desired(release, replicas=0)
    if not _wait(env, generation, 0, timeout_s):
        env.set_desired(release, replicas=wanted)
        raise BackupError(
            f"maintenance: the replicas of {env.name} did not stop within {timeout_s:g} s; "
            "the database was not touched and the replicas were asked back"
        )
    log("maintenance: no replica is running")
    try:
        yield
    finally:
        log(f"maintenance: bringing {wanted} replica(s) back")
        generation = env.set_desired(release, replicas=wanted)
        if not _wait(env, generation, wanted, timeout_s):
            raise BackupError(
                f"maintenance: {wanted} replica(s) of {env.name} were not ready within "
                f"{timeout_s:g} s after the restore; see invoke env.status --env {env.name}"
            )
        log(f"maintenance: {wanted} replica(s) ready again")
