"""The restore drill on AWS: snapshot -> temporary instance -> one-off verification -> delete.

RTO here is the drill's start to the temporary instance answering as `available` with its
one-time password set: the point where a replacement database could take traffic. RPO is
now minus the newest heartbeat in the RDS copy, measured by the task. The one-time master
password travels in the task's environment override: it belongs to a private instance that
is deleted when the drill ends, and is never written anywhere else.

A manual snapshot carries the drill's marks (retention.py reads them): `drydock:drill-until`
while the drill restores from it, so pruning leaves it alone, and `drydock:verified-by` and
`drydock:verified-at` once a drill has verified it, so the newest verified snapshot stays.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.targets.aws.common import client_error, error_code
from pipelines.targets.aws.retention import DRILL_UNTIL, VERIFIED_AT, VERIFIED_BY, iso
from pipelines.targets.base import TargetError

if TYPE_CHECKING:
    from pipelines.targets.aws.backups import AwsBackups

REPORTS = Path(__file__).resolve().parents[3] / "reports" / "drills"


def newest_snapshot(backups: AwsBackups, snapshot_id: str | None) -> dict[str, Any]:
    rds = backups.clients("rds")
    if snapshot_id:
        return dict(rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"][0])
    found: list[dict[str, Any]] = []
    for page in rds.get_paginator("describe_db_snapshots").paginate(
        DBInstanceIdentifier=backups.instance
    ):
        found += [s for s in page.get("DBSnapshots", []) if s.get("Status") == "available"]
    if not found:
        raise TargetError(
            f"{backups.env}: {backups.instance} has no available snapshot to drill; take one: "
            f"invoke backup.snapshot --env {backups.env} --kind manual --target aws"
        )
    return max(found, key=lambda s: s["SnapshotCreateTime"])


def wait_settled(backups: AwsBackups, instance: str) -> dict[str, Any]:
    """Until the instance is `available` with no modification pending (a password reset
    passes through `resetting-master-credentials`)."""
    rds = backups.clients("rds")
    deadline = backups.now() + backups.timeout_s
    while True:
        described = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
        pending = described.get("PendingModifiedValues") or {}
        if described.get("DBInstanceStatus") == "available" and "MasterUserPassword" not in pending:
            return dict(described)
        if backups.now() > deadline:
            raise TargetError(
                f"{backups.env}: {instance} is {described.get('DBInstanceStatus')} after "
                f"{backups.timeout_s:g} s"
            )
        backups.sleep(backups.poll_s)


def restore_request(
    backups: AwsBackups, live: dict[str, Any], snapshot: str, temporary: str, tags: dict[str, str]
) -> dict[str, Any]:
    """`restore_db_instance_from_db_snapshot` beside the live instance, never public."""
    return {
        "DBInstanceIdentifier": temporary,
        "DBSnapshotIdentifier": snapshot,
        **beside_live(live, tags),
    }


def beside_live(live: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """What every temporary copy of the live instance shares, whatever it is restored from:
    the live instance's class, subnet group, security groups and parameter group; never
    public, single-AZ, deletable, and tagged so that only the drill's own cleanup touches it."""
    settings: dict[str, Any] = {
        "DBInstanceClass": live["DBInstanceClass"],
        "DBSubnetGroupName": live["DBSubnetGroup"]["DBSubnetGroupName"],
        "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in live.get("VpcSecurityGroups", [])],
        "PubliclyAccessible": False,
        "MultiAZ": False,
        "DeletionProtection": False,
        "AutoMinorVersionUpgrade": False,
        "CopyTagsToSnapshot": False,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    groups = live.get("DBParameterGroups") or []
    if groups:
        settings["DBParameterGroupName"] = groups[0]["DBParameterGroupName"]
    return settings


def delete_instance(backups: AwsBackups, instance: str) -> None:
    rds = backups.clients("rds")
    try:
        rds.delete_db_instance(
            DBInstanceIdentifier=instance, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
    except client_error() as exc:
        if error_code(exc) == "DBInstanceNotFound":
            return
        raise
    backups._waiter("db_instance_deleted", rds, DBInstanceIdentifier=instance)


def run(
    backups: AwsBackups, snapshot_id: str | None = None, reports: Path = REPORTS
) -> dict[str, Any]:
    rds, log = backups.clients("rds"), backups.log
    started = backups.now()
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(started))
    drill_id = f"drill-{stamp}-{secrets.token_hex(2)}"
    temporary = f"{backups.instance}-{drill_id}"[:63].rstrip("-")
    report: dict[str, Any] = {
        "id": drill_id,
        "target": "aws",
        "environment": backups.env,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "temporary_instance": temporary,
        "ok": False,
    }
    created, marked = False, ""
    try:
        snapshot = newest_snapshot(backups, snapshot_id)
        report["snapshot"] = {
            "id": snapshot["DBSnapshotIdentifier"],
            "type": snapshot.get("SnapshotType"),
            "created_at": str(snapshot.get("SnapshotCreateTime")),
        }
        live = rds.describe_db_instances(DBInstanceIdentifier=backups.instance)["DBInstances"][0]
        tags = {
            "drydock:drill": drill_id,
            "drydock:purpose": "restore-drill",
            "drydock:snapshot": snapshot["DBSnapshotIdentifier"],
            "drydock:delete-after": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 2 * backups.timeout_s)
            ),
            "environment": backups.env,
        }
        if snapshot.get("SnapshotType") == "manual":  # automated ones are RDS's, never pruned
            marked = snapshot["DBSnapshotArn"]
            rds.add_tags_to_resource(
                ResourceName=marked,
                Tags=[{"Key": DRILL_UNTIL, "Value": tags["drydock:delete-after"]}],
            )
        log(f"drill [1/4] restoring {snapshot['DBSnapshotIdentifier']} into {temporary}")
        rds.restore_db_instance_from_db_snapshot(
            **restore_request(backups, live, snapshot["DBSnapshotIdentifier"], temporary, tags)
        )
        created = True
        backups._waiter("db_instance_available", rds, DBInstanceIdentifier=temporary)
        password = secrets.token_urlsafe(24)
        rds.modify_db_instance(
            DBInstanceIdentifier=temporary,
            MasterUserPassword=password,
            ManageMasterUserPassword=False,
            ApplyImmediately=True,
        )
        described = wait_settled(backups, temporary)
        report["rto_s"] = round(backups.now() - started, 3)
        endpoint = described["Endpoint"]
        log(f"drill [2/4] {temporary} available after {report['rto_s']:.0f} s; verifying")
        prefix = f"drills/{backups.env}/{drill_id}"
        expires = backups.timeout_s + 600
        where = ["--copy-host", endpoint["Address"], "--copy-port", str(endpoint.get("Port", 5432))]
        task = backups.run_task(
            ["drill", "--id", drill_id, *where],
            {
                "COPY_ADMIN_PASSWORD": password,
                "DUMP_PUT_URL": backups._put_url(f"{prefix}/dump.pgdump", expires),
                "MANIFEST_PUT_URL": backups._put_url(f"{prefix}/manifest.json", expires),
                "REPORT_PUT_URL": backups._put_url(f"{prefix}/report.json", expires),
            },
        )
        report["task"] = {
            "arn": task.task_arn,
            "exit_code": task.exit_code,
            "stopped_reason": task.stopped_reason,
        }
        verification = read_object(backups, f"{prefix}/report.json")
        report["verification"] = verification
        report["rpo_s"] = verification.get("rpo_s")
        report["ok"] = task.exit_code == 0 and bool(verification.get("ok"))
        if not report["ok"]:
            problems = [
                *verification.get("rds_copy_mismatches", []),
                *verification.get("logical_mismatches", []),
                *verification.get("restore_errors", []),
            ]
            report["failure"] = "; ".join(problems) or (
                f"the verification task exited {task.exit_code}: {task.stopped_reason}"
            )
    except (TargetError, client_error()) as exc:
        report["failure"] = str(exc)
    finally:
        if created:
            log(f"drill [3/4] deleting {temporary}")
            delete_instance(backups, temporary)
    if marked:
        _settle_marks(backups, marked, report)
    report["seconds"] = round(backups.now() - started, 3)
    _write(report, reports)
    verdict = "DRILL PASSED" if report["ok"] else "DRILL FAILED"
    measured = f"RTO {report.get('rto_s')} s, RPO {report.get('rpo_s')} s"
    log(f"drill [4/4] {verdict} {backups.env} (aws): {measured}")
    if report.get("failure"):
        log(f"  ! {report['failure']}")
    return report


def _settle_marks(backups: AwsBackups, arn: str, report: dict[str, Any]) -> None:
    """The drill no longer holds the snapshot; a passed drill records that it verified it.
    A failure here is a warning: the hold lapses by itself at its deadline."""
    rds = backups.clients("rds")
    try:
        rds.remove_tags_from_resource(ResourceName=arn, TagKeys=[DRILL_UNTIL])
        if report["ok"]:
            verified = [
                {"Key": VERIFIED_BY, "Value": report["id"]},
                {"Key": VERIFIED_AT, "Value": iso(backups.now())},
            ]
            rds.add_tags_to_resource(ResourceName=arn, Tags=verified)
    except client_error() as exc:
        warning = f"could not update the drill's tags on {arn}: {exc}"
        report.setdefault("warnings", []).append(warning)
        backups.log(f"  warn {warning}")


def read_object(backups: AwsBackups, key: str) -> dict[str, Any]:
    try:
        body = backups.clients("s3").get_object(Bucket=backups.bucket, Key=key)["Body"]
    except client_error() as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return {}
        raise
    data: dict[str, Any] = json.loads(body.read())
    return data


def _write(report: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{report['id']}.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    line = {
        k: report.get(k)
        for k in ("id", "started_at", "ok", "environment", "target", "rto_s", "rpo_s")
    }
    with (directory / "history.jsonl").open("a") as handle:
        handle.write(json.dumps({**line, "report": str(directory / f"{report['id']}.json")}) + "\n")
    from pipelines.backups.report import history
    from pipelines.reports import drill as drill_html

    drill_html.write(
        report, drill_html.past_drills(history(directory)), directory / f"{report['id']}.html"
    )
