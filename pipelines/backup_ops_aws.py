"""`invoke backup.* --target aws` and `drill.restore --target aws`: the same tasks on RDS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipelines.targets.base import check_environment_name

if TYPE_CHECKING:
    from pipelines.targets.aws_backups import AwsBackups


def backups_of(env: str) -> AwsBackups:
    from pipelines.targets.aws import AwsTarget
    from pipelines.targets.aws_backups import AwsBackups

    environment = AwsTarget().environment(check_environment_name(env))
    return AwsBackups(
        environment.name,
        environment.outputs,
        environment.clients,
        environment.spec,
        environment.database.current_image,
    )


def snapshot(env: str, kind: str, reason: str, deploy_id: str) -> int:
    record = backups_of(env).create_snapshot(kind, reason=reason, deploy_id=deploy_id)
    print(f"{record['id']}\n  {record['arn']}")
    return 0


def table(env: str, kind: str | None, as_json: bool) -> str:
    records = backups_of(env).list_snapshots(kind)
    if as_json:
        return json.dumps(records, indent=2, default=str)
    if not records:
        return f"no manual RDS snapshots of {env}"
    lines = [f"{'id':<64} {'kind':<10} {'status':<10} {'created':<26} deploy id"]
    lines += [
        f"{r['id']:<64} {r['kind'] or '-':<10} {r['status']:<10} {r['created_at']!s:<26} "
        f"{r['deploy_id'] or '-'}"
        for r in records
    ]
    return "\n".join(lines)


def prune(env: str, dry_run: bool) -> int:
    plan = backups_of(env).prune(dry_run=dry_run)
    print(f"prune {env} (aws, {'dry run: nothing deleted' if dry_run else 'applied'})")
    for snapshot_id, reason in plan.keep:
        print(f"  keep         {snapshot_id:<64} {reason}")
    verb = "would delete" if dry_run else "DELETE"
    for snapshot_id, reason in plan.delete:
        print(f"  {verb:<12} {snapshot_id:<64} {reason}")
    return 0


def drill(source: str, snapshot_id: str) -> int:
    report = backups_of(source).drill(snapshot_id or None)
    return 0 if report["ok"] else 1
