"""Pre-deploy RDS snapshots and Secrets Manager, against moto (it models both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from pipelines.targets.aws.environment import AwsEnvironment
from pipelines.targets.base import TargetError
from tests.pipelines.targets.aws.conftest import client, environment

pytestmark = pytest.mark.unit


@pytest.fixture
def env() -> Iterator[AwsEnvironment]:
    with mock_aws():
        client("rds").create_db_instance(
            DBInstanceIdentifier="drydock-staging",
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="drydock_admin",
            MasterUserPassword="not-a-real-password",
            StorageEncrypted=True,
        )
        yield environment()


def test_pre_deploy_snapshot_is_tagged_waited_for_and_verified(env: AwsEnvironment) -> None:
    taken = env.snapshot("pre-deploy", reason="before sha256:abc", deploy_id="20250301T1200Z-ab")
    assert taken["id"].startswith("drydock-staging-pre-deploy-20250301t1200z-ab-")
    assert taken["status"] == "available" and taken["instance"] == "drydock-staging"
    assert (taken["kind"], taken["deploy_id"], taken["environment"]) == (
        "pre-deploy",
        "20250301T1200Z-ab",
        "staging",
    )
    assert env.verify_snapshot(taken["id"])["verified"] is True
    assert [s["id"] for s in env.database.snapshots("pre-deploy")] == [taken["id"]]
    assert env.database.snapshots("daily") == []


def test_verify_refuses_an_unencrypted_snapshot(env: AwsEnvironment) -> None:
    rds = client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="plain",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="u",
        MasterUserPassword="not-a-real-password",
    )
    rds.create_db_snapshot(DBSnapshotIdentifier="plain-1", DBInstanceIdentifier="plain")
    with pytest.raises(TargetError, match=r"not this environment.*not encrypted"):
        env.verify_snapshot("plain-1")


def test_a_missing_snapshot_is_a_target_error(env: AwsEnvironment) -> None:
    with pytest.raises(TargetError, match="no snapshot nope"):
        env.verify_snapshot("nope")


def test_restore_command_restores_beside_the_live_instance(env: AwsEnvironment) -> None:
    command = env.restore_command("drydock-staging-pre-deploy-x")
    assert command.startswith("aws rds restore-db-instance-from-db-snapshot --region eu-west-1")
    assert "--db-snapshot-identifier drydock-staging-pre-deploy-x" in command
    assert "--db-instance-identifier drydock-staging-restored-" in command


def test_secrets_rotate_keep_the_previous_until_retired(env: AwsEnvironment) -> None:
    store = env.secrets
    store.put("smoke-admin", "one")
    store.put("smoke-admin", "one")  # the same value again is a no-op
    with pytest.raises(TargetError, match="different value"):
        store.put("smoke-admin", "two")
    store.rotate("smoke-admin", "two")
    assert (store.get("smoke-admin"), store.get("smoke-admin", "previous")) == ("two", "one")
    with pytest.raises(TargetError, match="still has a previous version"):
        store.rotate("smoke-admin", "three")
    assert store.retire("smoke-admin") is not None
    with pytest.raises(TargetError, match="cannot read previous"):
        store.get("smoke-admin", "previous")
    assert store.retire("smoke-admin") is None
    assert client("secretsmanager").describe_secret(SecretId="drydock/staging/smoke-admin")


def test_database_url_is_the_app_role_secret(env: AwsEnvironment) -> None:
    sm = client("secretsmanager")
    created = sm.create_secret(
        Name="drydock/staging/app-db",
        SecretString='{"username": "drydock_app", "url": "postgresql://drydock_app:x@db:5432/d"}',
    )
    env = environment(app_db_secret_arn=created["ARN"])
    assert env.database.url() == "postgresql://drydock_app:x@db:5432/d"
    with pytest.raises(TargetError, match="only the app role"):
        env.database.url("superuser")


def test_a_pre_deploy_snapshot_prunes_those_beyond_the_newest_kept(env: AwsEnvironment) -> None:
    kept = env.spec.pre_deploy_snapshots_kept
    older = [env.database.snapshot("pre-deploy", deploy_id=f"d{i}")["id"] for i in range(kept + 1)]
    manual = env.database.snapshot("manual")["id"]
    taken = env.snapshot("pre-deploy", deploy_id="d-new")
    assert sorted(taken["pruned"]) == sorted(older[:2])
    left = [s["id"] for s in env.database.snapshots("pre-deploy")]
    assert left == [taken["id"], *reversed(older[2:])]
    assert manual in [s["id"] for s in env.database.snapshots()]
