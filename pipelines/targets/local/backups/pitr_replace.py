"""`backup.restore --to-time T --into replace`: the environment's database as it was at T.

The point-in-time copy is made beside the live cluster first (pitr.py), then handed to the
snapshot restore of runbook section 8, so a replace from a moment is exactly as safe as one
from a snapshot: the copy is dumped with its fingerprint into a `manual` snapshot (reason
"point in time T"), and `restore(..., "replace")` takes the safety snapshot, asks for the
confirmation production needs, checks the restored copy against the fingerprint, swaps under
maintenance and writes the ledger. The cluster beside the live one is removed either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.ledger import Ledger
from pipelines.postgres.tools import ConnInfo
from pipelines.targets.local.backups.manifest import superuser
from pipelines.targets.local.backups.pitr import (
    PointInTimeResult,
    discard_restore,
    restore_to_point,
)
from pipelines.targets.local.backups.restore import (
    ConfirmationRequired,
    RestoreResult,
    restore,
)
from pipelines.targets.local.backups.snapshot import take_snapshot
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import DATABASE

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]


def replace_from_point(
    env: LocalEnv,
    *,
    to_time: str | None,
    to_lsn: str | None,
    confirm: bool,
    log: Log,
    ledger: Ledger | None = None,
) -> tuple[PointInTimeResult, RestoreResult]:
    if env.name == "production" and not confirm:
        point = to_time or to_lsn
        raise ConfirmationRequired(
            f"refusing to replace production's database with its state at {point} without "
            "explicit confirmation; nothing was changed. Re-run with --yes once the incident "
            "lead agrees, or restore --into scratch to inspect that state first."
        )
    ledger = ledger or FileLedger()
    copy = restore_to_point(env, to_time=to_time, to_lsn=to_lsn, log=log)
    try:
        log(f"dumping the copy as of {copy.target} with its fingerprint")
        source = ConnInfo("127.0.0.1", copy.port, superuser(env).user, superuser(env).password, "")
        manifest = take_snapshot(
            env,
            "manual",
            reason=f"point in time {copy.target} (restore {copy.id})",
            ledger=ledger,
            source=source.on(DATABASE),
        )
        swapped = restore(env, manifest.id, "replace", confirm, log=log, ledger=ledger)
    finally:
        discard_restore(env, copy.id)
    ledger.append(
        "pitr-restore",
        env.name,
        id=copy.id,
        into="replace",
        point=copy.target,
        base_backup=copy.backup_id,
        recovered_to=copy.recovered_to,
        snapshot=manifest.id,
        safety_snapshot=swapped.safety_snapshot,
        previous_database=swapped.previous_database,
        seconds=round(copy.seconds + swapped.seconds, 3),
    )
    return copy, swapped
