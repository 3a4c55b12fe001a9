"""`invoke secrets.rotate --target aws`: the signing key's keyring in Secrets Manager (moto),
a new revision of the service rolled out (botocore's Stubber answers ECS's deployment), the
S3 ledger (moto) and the `key_rotated` security event."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipelines.operations.rotation import rotate
from pipelines.operations.timeline import describe_entry
from pipelines.targets.aws.s3 import S3Ledger
from pipelines.targets.base import TargetError
from tests.pipelines.operations.test_operations_aws import (
    BREAKER,
    NEW,
    OLD,
    TAGS,
    WHERE,
    read_current,
    target,
)
from tests.pipelines.targets.aws.conftest import (
    BUCKET,
    CLUSTER,
    FAMILY,
    OLD_IMAGE,
    REGION,
    SERVICE,
    FakeTime,
    client,
    deployment,
    service,
    task_definition,
    td_arn,
)

pytestmark = pytest.mark.unit

SECRET_ID = "drydock/staging/jwt"
FIRST = {"kid": "k1", "secret": "first-key-" + "a" * 54}  # as the Pulumi program writes it


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        sm = client("secretsmanager")
        sm.create_secret(Name=SECRET_ID, SecretString=json.dumps(FIRST))
        yield {"s3": s3, "secretsmanager": sm, "ecs": client("ecs")}


def keyring(aws: dict[str, Any]) -> dict[str, str]:
    value = aws["secretsmanager"].get_secret_value(SecretId=SECRET_ID)["SecretString"]
    return dict(json.loads(value))


def redeploy(stub: Stubber, settles: bool = True) -> None:
    """The serving revision registered again unchanged, and rolled out."""
    current = task_definition(FAMILY, OLD, OLD_IMAGE)
    read_current(stub, current)
    expected = {
        k: copy.deepcopy(v)
        for k, v in current.items()
        if k not in {"taskDefinitionArn", "revision"}
    }
    expected["containerDefinitions"][0]["environment"] = []
    expected["tags"] = TAGS[:3]
    stub.add_response(
        "register_task_definition",
        {"taskDefinition": task_definition(FAMILY, NEW, OLD_IMAGE)},
        expected,
    )
    started = service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS")])
    stub.add_response(
        "update_service",
        {"service": started["services"][0]},
        {
            "cluster": CLUSTER,
            "service": SERVICE,
            "taskDefinition": td_arn(FAMILY, NEW),
            "forceNewDeployment": False,
        },
    )
    if settles:
        done = service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "COMPLETED")])
        stub.add_response("describe_services", done, WHERE)
        stub.add_response("tag_resource", {}, {"resourceArn": td_arn(FAMILY, NEW), "tags": ANY})
    else:
        back = [
            deployment("ecs-svc/back", OLD, "PRIMARY", "COMPLETED"),
            deployment("ecs-svc/new", NEW, "ACTIVE", "FAILED", BREAKER),
        ]
        stub.add_response("describe_services", service(OLD, back), WHERE)


def rotate_on_aws(
    aws: dict[str, Any], compromised: bool = False, settles: bool | None = True
) -> str:
    """`settles=None`: nothing may reach ECS (the rotation is refused before)."""
    ecs = aws["ecs"]
    with Stubber(ecs) as stub:
        if settles is not None:
            redeploy(stub, settles)
        try:
            return rotate(
                "staging",
                "jwt",
                compromised,
                S3Ledger(BUCKET, client=aws["s3"]),
                target(FakeTime(), **aws),
            )
        finally:
            stub.assert_no_pending_responses()


def security_events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "drydock.security"]


def test_a_routine_rotation_keeps_the_old_key_until_its_cutoff_and_rolls_the_service(
    aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drydock.security")
    before = time.time()
    message = rotate_on_aws(aws)
    after = time.time()
    ring = keyring(aws)
    assert ring["kid"].startswith("staging-") and ring["secret"] not in (FIRST["secret"], "")
    assert (ring["previous_kid"], ring["previous_secret"]) == ("k1", FIRST["secret"])
    cutoff = datetime.fromisoformat(ring["previous_not_after"].replace("Z", "+00:00"))
    # One access-token lifetime after the rotation, whole seconds (iso() drops the fraction).
    assert before - 1 < cutoff.timestamp() - 900 <= after, "one access-token lifetime after it"
    assert message.startswith("staging: drydock/staging/jwt rotated (routine)")
    assert f"kept k1 verifying access tokens until {ring['previous_not_after']}" in message
    assert "rolled the service onto the new keys" in message
    assert "next: nothing now. Rotate again only after" in message
    assert FIRST["secret"] not in message and ring["secret"] not in message
    [entry] = S3Ledger(BUCKET, client=aws["s3"]).entries("staging")
    assert entry["kind"] == "secret-rotated" and entry["ok"] is True
    assert (entry["mode"], entry["kid"], entry["previous_kid"]) == ("routine", ring["kid"], "k1")
    assert describe_entry(entry).startswith(
        f"drydock/staging/jwt rotated (routine), {ring['kid']} signs ok by "
    ), "as incident.timeline shows it"
    [event] = security_events(caplog)
    assert event.levelno == logging.INFO
    assert event.__dict__["security_event"] == "key_rotated"
    assert event.__dict__["user_id"] is None
    assert (event.__dict__["mode"], event.__dict__["kid"]) == ("routine", ring["kid"])


def test_a_second_routine_rotation_inside_the_cutoff_is_refused_and_changes_nothing(
    aws: dict[str, Any],
) -> None:
    rotate_on_aws(aws)
    ring = keyring(aws)
    with pytest.raises(TargetError, match=r"previous signing key \(k1\) still verifies"):
        rotate_on_aws(aws, settles=None)
    assert keyring(aws) == ring
    assert len(S3Ledger(BUCKET, client=aws["s3"]).entries("staging")) == 1


def test_a_compromise_rotation_keeps_no_older_key(
    aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    rotate_on_aws(aws)
    routine = keyring(aws)
    caplog.set_level(logging.INFO, logger="drydock.security")
    message = rotate_on_aws(aws, compromised=True)
    ring = keyring(aws)
    assert ring["kid"] not in ("k1", routine["kid"])
    assert not ring.get("previous_kid") and not ring.get("previous_secret")
    assert f"dropped k1, {routine['kid']}" in message
    assert "every session logs in again now" in message
    entry = S3Ledger(BUCKET, client=aws["s3"]).entries("staging")[-1]
    assert entry["mode"] == "compromise" and entry["dropped"] == ["k1", routine["kid"]]
    assert entry["previous_kid"] is None
    [event] = security_events(caplog)
    assert event.levelno == logging.WARNING and event.__dict__["mode"] == "compromise"


def test_a_rotation_whose_roll_out_fails_says_how_to_finish_it(aws: dict[str, Any]) -> None:
    with pytest.raises(TargetError) as excinfo:
        rotate_on_aws(aws, compromised=True, settles=False)
    message = str(excinfo.value)
    assert BREAKER in message
    assert "its running tasks keep the keys they started with, the dropped key included" in message
    assert (
        f"aws ecs update-service --cluster {CLUSTER} --service {SERVICE} --force-new-deployment"
        in message
    )
    assert keyring(aws)["kid"] != "k1", "the secret did change"
    [entry] = S3Ledger(BUCKET, client=aws["s3"]).entries("staging")
    assert entry["ok"] is False and BREAKER in entry["reason"]


def test_only_the_signing_key_is_rotated_by_the_pipeline_on_aws(aws: dict[str, Any]) -> None:
    with pytest.raises(TargetError, match=r"'db-app' is generated by Pulumi.*RUNBOOK"):
        rotate("staging", "db-app", False, S3Ledger(BUCKET, client=aws["s3"]), target(**aws))
    assert keyring(aws) == FIRST
