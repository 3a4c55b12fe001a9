"""The drill on AWS: a snapshot restored into a tagged temporary instance (moto), verified by
a one-off task (Stubber), deleted whatever the verification said."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from pipelines.targets.aws import drill as aws_drill
from tests.pipelines.targets.aws.backup_fixtures import (
    BUCKET,
    INSTANCE,
    Clock,
    backups,
    capture_overrides,
    expect_task,
    moto_account,
    tags_of,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    yield from moto_account(monkeypatch)


@pytest.fixture
def drill_id(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("secrets.token_hex", lambda n: "beef")
    return "beef"


def run_drill(
    aws: dict[str, Any], report: dict[str, Any] | None, exit_code: int, tmp: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    clock = Clock(now=1_750_000_000.0)
    b = backups(aws, clock)
    snapshot = b.create_snapshot("weekly")
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(clock.now))
    drill_id = f"drill-{stamp}-beef"
    if report is not None:
        aws["s3"].put_object(
            Bucket=BUCKET,
            Key=f"drills/production/{drill_id}/report.json",
            Body=json.dumps(report),
        )
    seen = capture_overrides(aws["ecs"])
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["drill"], exit_code=exit_code)
        result = aws_drill.run(b, reports=tmp)
    assert result["snapshot"]["id"] == snapshot["id"]
    return result, seen


@pytest.mark.usefixtures("drill_id")
def test_drill_restores_a_tagged_temporary_instance_verifies_and_deletes_it(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    verification = {"ok": True, "rpo_s": 42.0, "tables": 9, "rds_copy_mismatches": []}
    result, seen = run_drill(aws, verification, 0, tmp_path)
    assert result["ok"] is True, result
    assert result["rpo_s"] == 42.0 and result["rto_s"] is not None
    temporary = result["temporary_instance"]
    assert temporary.startswith(f"{INSTANCE}-drill-")
    command = seen[0]["command"]
    assert command[:2] == ["drill", "--id"] and "--copy-host" in command
    env = {e["name"]: e["value"] for e in seen[0]["environment"]}
    assert set(env) == {"COPY_ADMIN_PASSWORD", "DUMP_PUT_URL", "MANIFEST_PUT_URL", "REPORT_PUT_URL"}
    remaining = aws["rds"].describe_db_instances()["DBInstances"]
    assert [i["DBInstanceIdentifier"] for i in remaining] == [INSTANCE], "temporary instance left"
    saved = json.loads((tmp_path / f"{result['id']}.json").read_text())
    assert saved["ok"] is True and (tmp_path / "history.jsonl").exists()


@pytest.mark.usefixtures("drill_id")
def test_drill_carries_its_tags_and_stays_private(aws: dict[str, Any]) -> None:
    b = backups(aws)
    live = aws["rds"].describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
    tags = {"drydock:drill": "drill-x", "drydock:purpose": "restore-drill"}
    request = aws_drill.restore_request(b, live, "snap-1", f"{INSTANCE}-drill-x", tags)
    assert request["PubliclyAccessible"] is False and request["DeletionProtection"] is False
    assert request["DBSubnetGroupName"] == live["DBSubnetGroup"]["DBSubnetGroupName"]
    assert {"Key": "drydock:drill", "Value": "drill-x"} in request["Tags"]
    aws["rds"].create_db_snapshot(DBSnapshotIdentifier="snap-1", DBInstanceIdentifier=INSTANCE)
    aws["rds"].restore_db_instance_from_db_snapshot(**request)
    arn = aws["rds"].describe_db_instances(DBInstanceIdentifier=f"{INSTANCE}-drill-x")[
        "DBInstances"
    ][0]["DBInstanceArn"]
    carried = {
        t["Key"]: t["Value"] for t in aws["rds"].list_tags_for_resource(ResourceName=arn)["TagList"]
    }
    assert carried["drydock:drill"] == "drill-x"


@pytest.mark.usefixtures("drill_id")
def test_drill_fails_loudly_on_a_mismatch_and_still_deletes_the_instance(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    verification = {
        "ok": False,
        "rpo_s": 30.0,
        "rds_copy_mismatches": [],
        "logical_mismatches": ["table public.items: 299 rows in the copy, 300 in the source"],
        "restore_errors": [],
    }
    result, _ = run_drill(aws, verification, 1, tmp_path)
    assert result["ok"] is False
    assert "table public.items: 299 rows in the copy, 300 in the source" in result["failure"]
    assert len(aws["rds"].describe_db_instances()["DBInstances"]) == 1


@pytest.mark.usefixtures("drill_id")
def test_drill_without_a_report_names_the_task_exit(aws: dict[str, Any], tmp_path: Any) -> None:
    result, _ = run_drill(aws, None, 137, tmp_path)
    assert result["ok"] is False
    assert (
        "the verification task exited 137: Essential container in task exited" in result["failure"]
    )
    assert len(aws["rds"].describe_db_instances()["DBInstances"]) == 1


def test_drill_without_snapshots_says_how_to_take_one(aws: dict[str, Any], tmp_path: Any) -> None:
    with Stubber(aws["rds"]) as stub:
        stub.add_response(
            "describe_db_snapshots", {"DBSnapshots": []}, {"DBInstanceIdentifier": INSTANCE}
        )
        result = aws_drill.run(backups(aws), reports=tmp_path)
    assert result["ok"] is False
    assert f"{INSTANCE} has no available snapshot to drill" in result["failure"]
    assert "invoke backup.snapshot --env production" in result["failure"]


@pytest.mark.usefixtures("drill_id")
@pytest.mark.parametrize("passes", [True, False])
def test_the_drill_holds_its_snapshot_while_it_runs_and_records_a_pass(
    aws: dict[str, Any], tmp_path: Any, passes: bool
) -> None:
    """What retention reads: the hold while the drill restores, the pass once it has."""
    from pipelines.targets.aws.retention import DRILL_UNTIL, VERIFIED_AT, VERIFIED_BY, iso

    during: list[dict[str, str]] = []

    def look(**_: Any) -> None:  # as the verification task starts
        listing = aws["rds"].describe_db_snapshots(
            DBInstanceIdentifier=INSTANCE, SnapshotType="manual"
        )
        [listed] = listing["DBSnapshots"]
        during.append(tags_of(aws["rds"], listed["DBSnapshotIdentifier"]))

    aws["ecs"].meta.events.register("provide-client-params.ecs.RunTask", look)
    verification = {"ok": passes, "rpo_s": 1.0, "rds_copy_mismatches": []}
    result, _ = run_drill(aws, verification, 0 if passes else 1, tmp_path)
    assert result["ok"] is passes
    [held] = during
    assert held[DRILL_UNTIL] == iso(1_750_000_000.0 + 2 * 60.0)  # the drill's own deadline
    after = tags_of(aws["rds"], result["snapshot"]["id"])
    assert DRILL_UNTIL not in after, "the hold ends with the drill"
    if passes:
        assert after[VERIFIED_BY] == result["id"] and after[VERIFIED_AT].endswith("Z")
    else:
        assert VERIFIED_BY not in after and VERIFIED_AT not in after
