"""The AWS path of backups: RDS snapshots and retention against moto; the one-off ECS
tasks (which moto cannot run) with botocore's Stubber, checking the exact
`register_task_definition` and `run_task` requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from infra.spec import defaults
from pipelines.targets.aws.backups import CONTAINER
from pipelines.targets.base import TargetError
from tests.pipelines.targets.aws.backup_fixtures import (
    BUCKET,
    DAY,
    INSTANCE,
    OUTPUTS,
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


def test_snapshot_is_tagged_and_waited_for(aws: dict[str, Any]) -> None:
    record = backups(aws).create_snapshot("pre-deploy", reason="deploy 7", deploy_id="d-0007")
    assert record["status"] == "available" and record["instance"] == INSTANCE
    assert record["kind"] == "pre-deploy" and record["deploy_id"] == "d-0007"
    tags = tags_of(aws["rds"], record["id"])
    assert tags["kind"] == "pre-deploy" and tags["deploy-id"] == "d-0007"
    assert tags["environment"] == "production" and tags["reason"] == "deploy 7"
    daily = backups(aws).create_snapshot("daily")
    assert "retain-until" in tags_of(aws["rds"], daily["id"])
    with pytest.raises(TargetError, match="unknown snapshot kind 'hourly'"):
        backups(aws).create_snapshot("hourly")


def test_prune_applies_the_spec_and_keeps_the_newest_of_each_kind(aws: dict[str, Any]) -> None:
    spec = defaults("production")
    clock = Clock()
    b = backups(aws, clock)
    daily = [b.create_snapshot("daily")["id"] for _ in range(2)]
    pre = [b.create_snapshot("pre-deploy", deploy_id=f"d{i}")["id"] for i in range(12)]
    manual = b.create_snapshot("manual")["id"]
    assert [r["id"] for r in b.list_snapshots("daily")] == list(reversed(daily))
    clock.now += (spec.backup_retention_days + 1) * DAY
    plan = b.prune()
    deleting = {snapshot for snapshot, _ in plan.delete}
    assert plan.dry_run and plan.deleted == []
    assert daily[0] in deleting and daily[1] not in deleting  # the newest daily stays
    kept = spec.pre_deploy_snapshots_kept
    assert deleting & set(pre) == set(pre[: len(pre) - kept])
    assert manual not in deleting
    assert len(b.list_snapshots()) == 15  # a dry run deletes nothing
    applied = b.prune(dry_run=False)
    assert set(applied.deleted) == deleting
    assert {r["id"] for r in b.list_snapshots()} == {daily[1], manual, *pre[-kept:]}


def test_logical_dump_runs_a_one_off_task_that_writes_to_the_bucket(aws: dict[str, Any]) -> None:
    clock = Clock(now=1_750_000_000.0)
    b = backups(aws, clock)
    dump_id = f"production-weekly-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(clock.now))}"
    manifest = {"id": dump_id, "size_bytes": 1234, "sha256": "ab" * 32, "fingerprint": {"x": 1}}
    aws["s3"].put_object(  # what the task uploads through its presigned URL
        Bucket=BUCKET, Key=f"dumps/production/{dump_id}/manifest.json", Body=json.dumps(manifest)
    )
    seen = capture_overrides(aws["ecs"])
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["dump", "--id", dump_id], exit_code=0)
        result = b.logical_dump(reason="weekly")
        stub.assert_no_pending_responses()
    assert result["location"] == f"s3://{BUCKET}/dumps/production/{dump_id}/"
    assert result["sha256"] == "ab" * 32 and "fingerprint" not in result
    override = seen[0]
    assert override["name"] == CONTAINER and override["command"] == ["dump", "--id", dump_id]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert set(env) == {"DUMP_PUT_URL", "MANIFEST_PUT_URL"}
    assert f"dumps/production/{dump_id}/dump.pgdump" in env["DUMP_PUT_URL"]
    assert "Signature" in env["DUMP_PUT_URL"]


def test_failed_dump_task_is_reported_with_its_reason(aws: dict[str, Any]) -> None:
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["dump"], exit_code=3)
        with pytest.raises(TargetError, match=r"the dump task .* failed \(exit 3\): Essential"):
            backups(aws).logical_dump()


def test_tasks_reach_rds_through_the_aws_target(
    aws: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pipelines.backups import commands as backup_ops

    outputs = {
        **OUTPUTS,
        "service_name": "drydock-production-api",
        "container_name": "api",
        "task_definition_family": "drydock-production-api",
    }
    (tmp_path / "outputs.json").write_text(json.dumps({"production": outputs}))
    monkeypatch.setenv("DRYDOCK_AWS_OUTPUTS_FILE", str(tmp_path / "outputs.json"))
    assert backup_ops.snapshot("production", "manual", reason="by hand", target="aws") == 0
    taken = capsys.readouterr().out.splitlines()[-2]
    assert backup_ops.show("production", target="aws") == 0
    listed = capsys.readouterr().out
    assert taken in listed and "manual" in listed
    assert backup_ops.prune("production", apply=False, target="aws") == 0
    assert "prune production (aws, dry run: nothing deleted)" in capsys.readouterr().out
    assert backup_ops.show("production", target="gcp") == 1
    assert "--target must be local or aws, not 'gcp'" in capsys.readouterr().out
