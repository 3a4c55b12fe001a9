"""The point-in-time recovery drill on AWS (runbook sections 6 and 8).

1-2. orders through the environment's public URL with the client's ledger, and T, a whole
   second (RDS restores to the second) with no order in flight for `quiet_s` either side:
   the runner's clock and the database's may differ by that much without moving an order
   across T (`pipelines/backups/pitr_orders.py`);
3. once RDS has archived past T (`LatestRestorableTime`, a few minutes behind), the copy:
   `restore_db_instance_to_point_in_time` beside the live instance (pitr.py: private, its
   subnet group, security groups and parameter group), waited for, and given a one-time
   master password as the weekly drill's temporary instance is (drill.py);
4. verification to the row inside the VPC: a one-off task of the release's image
   (`backup_task pitr-verify`) reads the ledger from a presigned GET URL and writes its
   verdict through a presigned PUT URL, so it needs no AWS permission;
5. the copy deleted whatever happened, the shopper and item deleted, the report written
   next to the weekly drill's (`pipelines/backups/pitr_report.py`) and a ledger entry.

RTO is the restore request to the copy `available` with its password set, as the weekly AWS
drill measures it: the moment a replacement database could take traffic. No replica is
pointed at the copy as on the local target, since that would be a new revision of the
service (a deploy's time, not the restore's); the verification task's first answer from the
copy is reported beside it (`first_answer_s`), which adds Fargate's start to the same span.
RPO is T minus the newest write stamp the copy holds (the app's `now()` in orders,
heartbeat, items, users): RDS does not expose the recovery's "last completed transaction".
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.backups.pitr_orders import OrderLedger
from pipelines.backups.pitr_report import PitrDrillReport, iso_ms, record
from pipelines.targets.aws import pitr
from pipelines.targets.aws.common import client_error
from pipelines.targets.aws.drill import delete_instance, read_object, wait_settled
from pipelines.targets.base import TargetError

if TYPE_CHECKING:
    from pipelines.ledger import Ledger
    from pipelines.targets.aws.backups import AwsBackups

RTO_BASIS = "restore request to the copy available with its password set"
RPO_BASIS = "T minus the newest write stamp in the copy"


class DrillOrders(Protocol):
    """Steps 1-2 and the clean-up of what they created (`pitr_orders.ApiOrders`)."""

    def write(
        self, before_s: float, after_s: float, quiet_s: float
    ) -> tuple[OrderLedger, list[str]]: ...

    def cleanup(self) -> list[str]: ...


def wait_restorable(store: AwsBackups, moment: float, timeout_s: float) -> float:
    """Until RDS can restore to `moment`; returns how long that took."""
    rds, started = store.clients("rds"), store.now()
    while True:
        live = rds.describe_db_instances(DBInstanceIdentifier=store.instance)["DBInstances"][0]
        latest = live.get("LatestRestorableTime")
        if latest is not None and latest.timestamp() >= moment:
            return round(store.now() - started, 3)
        if store.now() - started > timeout_s:
            raise TargetError(
                f"{store.env}: RDS had not archived past T = {iso_ms(moment)} after "
                f"{timeout_s:g} s (LatestRestorableTime {latest}); nothing was restored"
            )
        store.sleep(store.poll_s)


def verify_in_task(
    store: AwsBackups, drill_id: str, book: OrderLedger, endpoint: dict[str, Any], password: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ledger to S3, the one-off verification task, its verdict back: (verdict, task)."""
    prefix = f"drills/{store.env}/{drill_id}"
    s3, expires = store.clients("s3"), int(store.timeout_s + 600)
    s3.put_object(
        Bucket=store.bucket,
        Key=f"{prefix}/ledger.json",
        Body=json.dumps(book.to_json()).encode(),
        ContentType="application/json",
    )
    ledger_url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": store.bucket, "Key": f"{prefix}/ledger.json"},
        ExpiresIn=expires,
    )
    where = ["--copy-host", endpoint["Address"], "--copy-port", str(endpoint.get("Port", 5432))]
    task = store.run_task(
        ["pitr-verify", "--id", drill_id, *where],
        {
            "COPY_ADMIN_PASSWORD": password,
            "LEDGER_GET_URL": str(ledger_url),
            "VERDICT_PUT_URL": store._put_url(f"{prefix}/verdict.json", expires),
        },
    )
    ran = {"arn": task.task_arn, "exit_code": task.exit_code, "stopped_reason": task.stopped_reason}
    return read_object(store, f"{prefix}/verdict.json"), ran


def _take_verdict(report: PitrDrillReport, verdict: dict[str, Any], task: dict[str, Any]) -> None:
    report.restore["task"] = task
    if not verdict:
        report.failure = (
            f"the verification task wrote no verdict; it exited {task['exit_code']}: "
            f"{task['stopped_reason']}"
        )
        return
    report.orders_expected = int(verdict.get("orders_expected", 0))
    report.orders_in_copy = int(verdict.get("orders_in_copy", 0))
    report.mismatches = list(verdict.get("mismatches", []))
    report.recovered_to = verdict.get("newest_write")
    report.rpo_s = verdict.get("rpo_s")
    if task["exit_code"] != 0 and not report.mismatches:
        report.failure = (
            f"the verification task exited {task['exit_code']}: {task['stopped_reason']}"
        )


def run(
    store: AwsBackups,
    orders: DrillOrders,
    reports_dir: Path,
    ledger: Ledger,
    *,
    write_before_s: float = 30.0,
    write_after_s: float = 10.0,
    quiet_s: float = 1.0,
    catch_up_timeout_s: float = 900.0,
) -> PitrDrillReport:
    log, started = store.log, store.now()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    report = PitrDrillReport(
        id=f"pitr-drill-{stamp}-{secrets.token_hex(2)}",
        target="aws",
        environment=store.env,
        started_at=iso_ms(started),
        rto_basis=RTO_BASIS,
        rpo_basis=RPO_BASIS,
    )
    copy: dict[str, Any] | None = None
    try:
        book, failures = orders.write(write_before_s, write_after_s, quiet_s)
        report.point, report.orders_written = iso_ms(book.point), len(book.acked)
        report.write_failures = failures[:10]
        log(f"pitr drill [3/5] waiting for RDS to archive past T = {report.point}")
        report.archive_catch_up_s = wait_restorable(store, book.point, catch_up_timeout_s)
        mark = store.now()
        copy = pitr.restore_to_time(store, pitr.iso(book.point), purpose="pitr-drill")
        report.restore = {**copy, "available_s": copy["seconds"]}
        password = secrets.token_urlsafe(24)
        store.clients("rds").modify_db_instance(
            DBInstanceIdentifier=copy["instance"],
            MasterUserPassword=password,
            ManageMasterUserPassword=False,
            ApplyImmediately=True,
        )
        endpoint = wait_settled(store, copy["instance"])["Endpoint"]
        report.rto_s = round(store.now() - mark, 3)
        log(f"pitr drill [4/5] {copy['instance']} ready (RTO {report.rto_s:.0f} s); verifying")
        verdict, task = verify_in_task(store, report.id, book, endpoint, password)
        _take_verdict(report, verdict, task)
        if verdict.get("first_answer_at"):
            report.restore["first_answer_s"] = round(float(verdict["first_answer_at"]) - mark, 3)
    except (TargetError, client_error()) as exc:
        report.failure = str(exc)
    except Exception as exc:  # writing orders (httpx) or anything else: the report says what
        report.failure = f"{type(exc).__name__}: {exc}"
    finally:
        if copy is not None:
            log(f"pitr drill [5/5] deleting {copy['instance']}")
            deleted, outcome = _delete_copy(store, copy)
            report.cleanup.append(outcome)
            if not deleted:
                report.failure = "; ".join(filter(None, [report.failure, outcome]))
        report.cleanup += orders.cleanup()
    report.seconds = round(store.now() - started, 3)
    record(report, reports_dir, ledger, store.env, log, target="aws")
    return report


def _delete_copy(store: AwsBackups, copy: dict[str, Any]) -> tuple[bool, str]:
    try:
        delete_instance(store, copy["instance"])
    except (TargetError, client_error()) as exc:
        return False, (
            f"{copy['instance']} NOT deleted ({exc}); delete it with `invoke backup.discard "
            f"--env {store.env} --id {copy['id']} --target aws`"
        )
    return True, f"{copy['instance']}: deleted"
