"""Pruning RDS snapshots with what drills mark on them, as exact AWS call sequences under
botocore's Stubber: `describe_db_snapshots` paginated, then for each snapshot to go one
more `describe_db_snapshots` and the `delete_db_snapshot`, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from infra.spec import defaults
from pipelines.targets.aws.backups import AwsBackups
from pipelines.targets.aws.retention import DRILL_UNTIL, VERIFIED_AT, VERIFIED_BY, iso
from tests.pipelines.targets.aws.backup_fixtures import (
    ACCOUNT,
    DAY,
    IMAGE,
    INSTANCE,
    OUTPUTS,
    REGION,
)
from tests.pipelines.targets.aws.conftest import client

pytestmark = pytest.mark.unit

NOW = 1_750_000_000.0
SPEC = defaults("production")
KEPT = SPEC.pre_deploy_snapshots_kept
LISTING = {"DBInstanceIdentifier": INSTANCE, "SnapshotType": "manual"}


def snapshot(name: str, kind: str, age_days: float, **tags: str) -> dict[str, Any]:
    identifier = f"{INSTANCE}-{name}"
    return {
        "DBSnapshotIdentifier": identifier,
        "DBSnapshotArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{identifier}",
        "DBInstanceIdentifier": INSTANCE,
        "SnapshotCreateTime": datetime.fromtimestamp(NOW - age_days * DAY, UTC),
        "Status": "available",
        "AllocatedStorage": 50,
        "Encrypted": True,
        "SnapshotType": "manual",
        "TagList": [{"Key": k, "Value": v} for k, v in {"kind": kind, **tags}.items()],
    }


def pre_deploy(count: int, marks: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """`count` pre-deploy snapshots, one per release, newest (p0) first."""
    return [snapshot(f"p{i}", "pre-deploy", i * 0.5, **marks.get(i, {})) for i in range(count)]


@pytest.fixture
def rds() -> Iterator[tuple[Any, Stubber]]:
    rds = client("rds")
    with Stubber(rds) as stub:
        yield rds, stub
        stub.assert_no_pending_responses()


def backups(rds: Any) -> AwsBackups:
    return AwsBackups(
        "production",
        OUTPUTS,
        {"rds": rds}.__getitem__,
        SPEC,
        lambda: IMAGE,
        now=lambda: NOW,
        log=lambda _: None,
    )


def expect_listing(stub: Stubber, snapshots: list[dict[str, Any]], page: int) -> None:
    """The listing in pages of `page`, as RDS returns them, joined by Marker."""
    pages = [snapshots[i : i + page] for i in range(0, len(snapshots), page)]
    for number, chunk in enumerate(pages):
        response: dict[str, Any] = {"DBSnapshots": chunk}
        if number + 1 < len(pages):
            response["Marker"] = f"page-{number + 2}"
        params = {**LISTING, "Marker": f"page-{number + 1}"} if number else LISTING
        stub.add_response("describe_db_snapshots", response, params)


def expect_deleted(stub: Stubber, described: dict[str, Any], deleted: bool = True) -> None:
    name = described["DBSnapshotIdentifier"]
    stub.add_response(
        "describe_db_snapshots", {"DBSnapshots": [described]}, {"DBSnapshotIdentifier": name}
    )
    if deleted:
        stub.add_response(
            "delete_db_snapshot",
            {"DBSnapshot": {"DBSnapshotIdentifier": name, "Status": "deleted"}},
            {"DBSnapshotIdentifier": name},
        )


def ids(*names: str) -> list[str]:
    return [f"{INSTANCE}-{name}" for name in names]


def test_pruning_keeps_the_newest_pre_deploy_snapshots_and_the_newest_verified_one(
    rds: tuple[Any, Stubber],
) -> None:
    client_, stub = rds
    verified_earlier = {VERIFIED_BY: "drill-a", VERIFIED_AT: iso(NOW - 6 * DAY)}
    verified_last = {VERIFIED_BY: "drill-b", VERIFIED_AT: iso(NOW - DAY)}
    snapshots = pre_deploy(KEPT + 4, {KEPT + 1: verified_last, KEPT + 2: verified_earlier})
    weekly = snapshot("weekly-1", "weekly", 400)  # past retention, but not a pre-deploy one
    # RDS lists in no promised order: by name here, and the ages decide.
    listing = sorted([*snapshots, weekly], key=lambda s: s["DBSnapshotIdentifier"])
    expect_listing(stub, listing, page=5)
    for number in (KEPT, KEPT + 2, KEPT + 3):  # deleted newest first
        expect_deleted(stub, snapshots[number])

    plan = backups(client_).prune(dry_run=False, kinds=("pre-deploy",))

    assert plan.deleted == ids(f"p{KEPT}", f"p{KEPT + 2}", f"p{KEPT + 3}")
    reasons = dict(plan.keep)
    assert reasons[ids(f"p{KEPT + 1}")[0]].startswith(
        "the newest snapshot a drill verified (drill-b, "
    )
    assert reasons[ids("p0")[0]] == "the newest pre-deploy snapshot that passes the restore checks"
    assert all(reasons[i] == f"one of the newest {KEPT} pre-deploy snapshots" for i in ids("p1"))
    assert len(plan.keep) == KEPT + 1
    assert ids("weekly-1")[0] not in reasons, "other kinds are backup.prune's"


def test_pruning_never_deletes_a_snapshot_a_drill_restores_from(
    rds: tuple[Any, Stubber],
) -> None:
    client_, stub = rds
    running = {DRILL_UNTIL: iso(NOW + 3600)}
    lapsed = {DRILL_UNTIL: iso(NOW - 60)}  # left by a drill that was killed: no hold
    snapshots = pre_deploy(KEPT + 3, {KEPT: running, KEPT + 1: lapsed})
    expect_listing(stub, snapshots, page=4)
    expect_deleted(stub, snapshots[KEPT + 1])
    # A drill started on this one after the listing: described again, it is held.
    started_since = snapshot(f"p{KEPT + 2}", "pre-deploy", (KEPT + 2) * 0.5, **running)
    expect_deleted(stub, started_since, deleted=False)

    plan = backups(client_).prune(dry_run=False, kinds=("pre-deploy",))

    assert plan.deleted == ids(f"p{KEPT + 1}")
    reasons = dict(plan.keep)
    held = f"a drill restores from it (marked until {iso(NOW + 3600)})"
    assert reasons[ids(f"p{KEPT}")[0]] == held
    assert reasons[ids(f"p{KEPT + 2}")[0]] == held
    assert plan.delete == [
        (ids(f"p{KEPT + 1}")[0], f"older than the newest {KEPT} pre-deploy snapshots")
    ]


def test_a_dry_run_lists_and_deletes_nothing(rds: tuple[Any, Stubber]) -> None:
    client_, stub = rds
    expect_listing(stub, pre_deploy(KEPT + 1, {}), page=100)
    plan = backups(client_).prune(dry_run=True)
    assert plan.deleted == [] and [i for i, _ in plan.delete] == ids(f"p{KEPT}")
