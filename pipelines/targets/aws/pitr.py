"""Point-in-time recovery on AWS (runbook sections 6 and 8): RDS restores to a time.

The window is the live instance's: from `BackupRetentionPeriod` days back (or its creation,
if later) to its `LatestRestorableTime`. A restore is
`restore_db_instance_to_point_in_time` beside the live instance, like the drill's temporary
instance: never public, the live one's subnet group, security groups and parameter group,
tagged `drydock:pitr` so that `discard` deletes it and nothing else. Replacing the live
instance stays a person's call (runbook section 8): the copy is there to switch over to.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import TYPE_CHECKING, Any

from pipelines.targets.aws.drill import beside_live, delete_instance
from pipelines.targets.base import TargetError

if TYPE_CHECKING:
    from pipelines.targets.aws.backups import AwsBackups

TAG = "drydock:pitr"
DAY_S = 86_400


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return None


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(backups: AwsBackups) -> dict[str, Any]:
    """The live instance's recoverable window: earliest and latest epochs (None if none)."""
    rds = backups.clients("rds")
    live = rds.describe_db_instances(DBInstanceIdentifier=backups.instance)["DBInstances"][0]
    latest = _epoch(live.get("LatestRestorableTime"))
    retention = int(live.get("BackupRetentionPeriod") or 0)
    earliest = None
    if latest is not None and retention > 0:
        earliest = backups.now() - retention * DAY_S
        created = _epoch(live.get("InstanceCreateTime"))
        earliest = max(earliest, created) if created else earliest
    return {
        "instance": backups.instance,
        "earliest": earliest,
        "latest": latest,
        "backup_retention_days": retention,
        "live": live,
    }


def describe(found: dict[str, Any]) -> str:
    if found["earliest"] is None or found["latest"] is None:
        return (
            f"nothing: automated backups of {found['instance']} are off "
            f"(BackupRetentionPeriod {found['backup_retention_days']})"
        )
    return f"from {iso(found['earliest'])} to {iso(found['latest'])} (UTC)"


def restore_request(
    live: dict[str, Any], temporary: str, restore_time: dt.datetime, tags: dict[str, str]
) -> dict[str, Any]:
    """`restore_db_instance_to_point_in_time` beside the live instance, never public."""
    return {
        "SourceDBInstanceIdentifier": live["DBInstanceIdentifier"],
        "TargetDBInstanceIdentifier": temporary,
        "RestoreTime": restore_time,
        **beside_live(live, tags),
    }


def parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TargetError(
            f"--to-time {text!r} is not a time; write it as ISO 8601, e.g. 2026-12-03T14:36:59Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def restore_to_time(
    backups: AwsBackups, to_time: str, *, purpose: str = "restore"
) -> dict[str, Any]:
    """A new private instance holding the live one's data as of `to_time`, available.
    Anything created is deleted again if the restore fails."""
    moment = parse_time(to_time)
    found = window(backups)
    target = moment.timestamp()
    now = backups.now()
    env = backups.env
    if target > now:
        raise TargetError(
            f"the target time {iso(target)} is in the future (it is now {iso(now)}); "
            f"{env} can be recovered {describe(found)}"
        )
    if found["earliest"] is None or not found["earliest"] <= target <= found["latest"]:
        raise TargetError(
            f"cannot recover {env} to {iso(target)}: it is outside the recoverable window, "
            f"which runs {describe(found)}; nothing was created"
        )
    restore_id = f"pitr-{time.strftime('%Y%m%dt%H%M%S', time.gmtime(now))}-{secrets.token_hex(2)}"
    temporary = f"{backups.instance}-{restore_id}"[:63].rstrip("-")
    tags = {
        TAG: restore_id,
        "drydock:purpose": purpose,
        "environment": env,
        "drydock:restore-time": iso(target),
    }
    rds = backups.clients("rds")
    backups.log(f"restoring {backups.instance} as of {iso(target)} into {temporary}")
    started = backups.now()
    rds.restore_db_instance_to_point_in_time(
        **restore_request(found["live"], temporary, moment, tags)
    )
    try:
        backups._waiter("db_instance_available", rds, DBInstanceIdentifier=temporary)
        described = rds.describe_db_instances(DBInstanceIdentifier=temporary)["DBInstances"][0]
    except BaseException:
        delete_instance(backups, temporary)
        raise
    return {
        "id": restore_id,
        "instance": temporary,
        "point": iso(target),
        "endpoint": (described.get("Endpoint") or {}).get("Address"),
        "seconds": round(backups.now() - started, 3),
    }


def discard(backups: AwsBackups, restore_id: str) -> None:
    """Delete the instance a point-in-time restore made; refuses any other instance."""
    rds = backups.clients("rds")
    for page in rds.get_paginator("describe_db_instances").paginate():
        for instance in page.get("DBInstances", []):
            if {"Key": TAG, "Value": restore_id} in instance.get("TagList", []):
                delete_instance(backups, instance["DBInstanceIdentifier"])
                return
    raise TargetError(f"no instance tagged {TAG}={restore_id} in {backups.env}; nothing deleted")
