"""Backups out of reach: copies in the second region, production's vaults locked in
compliance mode, the bucket replicated there, and failed jobs paging the alarm topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.backup_alerts import FAILED
from tests.infra.harness import ACCOUNT, DR_REGION, REGION, Stack

pytestmark = pytest.mark.unit

VAULT = "aws:backup/vault:Vault"
LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
PLAN = "aws:backup/plan:Plan"


def rules(stack: Stack) -> dict[str, dict[str, Any]]:
    return {r["ruleName"]: r for r in stack.one(PLAN).get("rules")}


def test_every_recovery_point_is_copied_to_the_second_region(production: Stack) -> None:
    dr_vault = production.one(VAULT, "dr-vault")
    assert dr_vault.get("region") == DR_REGION
    assert dr_vault.get("name") == "drydock-production-dr"
    assert dr_vault.state["arn"].split(":")[3] == DR_REGION != REGION
    dr_key = production.one("aws:kms/key:Key", "dr-key")
    assert (dr_key.get("region"), dr_vault.get("kmsKeyArn")) == (DR_REGION, dr_key.state["arn"])
    for name, rule in rules(production).items():
        (copy,) = rule["copyActions"]
        assert copy["destinationVaultArn"] == dr_vault.state["arn"], name
        # A copy lives as long as the point it copies.
        assert copy["lifecycle"] == {"deleteAfter": rule["lifecycle"]["deleteAfter"]}


def test_staging_without_a_dr_region_copies_nothing(staging: Stack) -> None:
    assert staging.spec.dr_region is None
    assert all(r["copyActions"] == [] for r in rules(staging).values())
    assert [v.name for v in staging.of_type(VAULT)] == ["backups-vault"]


def test_production_vaults_are_locked_in_compliance_mode(production: Stack, staging: Stack) -> None:
    locks = {lock.name: lock for lock in production.of_type(LOCK)}
    assert set(locks) == {"backups-vault-lock", "dr-vault-lock"}
    vaults = {
        "backups-vault-lock": production.one(VAULT, "backups-vault"),
        "dr-vault-lock": production.one(VAULT, "dr-vault"),
    }
    for name, lock in locks.items():
        vault = vaults[name]
        assert lock.get("backupVaultName") == vault.state["name"]
        assert lock.get("region") == vault.get("region")
        # changeable_for_days is what makes it compliance mode (no one can lift it after).
        assert lock.get("changeableForDays") == 3
        assert lock.get("minRetentionDays") == production.spec.backup_retention_days
        assert lock.get("maxRetentionDays") is None
    assert staging.of_type(LOCK) == []


def test_the_bucket_replicates_the_ledger_and_dumps_not_deletes_or_locks(
    production: Stack,
) -> None:
    replica = production.one("aws:s3/bucket:Bucket", "dr-bucket")
    assert replica.get("region") == DR_REGION
    dr_key = production.one("aws:kms/key:Key", "dr-key").state["arn"]
    config = production.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert config.get("bucket") == production.one("aws:s3/bucket:Bucket", "backups-bucket").id
    by_prefix = {r["filter"]["prefix"]: r for r in config.get("rules")}
    assert set(by_prefix) == {"ledger/", "dumps/"}  # not locks/
    for rule in by_prefix.values():
        assert rule["status"] == "Enabled"
        assert rule["deleteMarkerReplication"] == {"status": "Disabled"}
        assert rule["destination"]["bucket"] == replica.state["arn"]
        assert rule["destination"]["encryptionConfiguration"] == {"replicaKmsKeyId": dr_key}
        assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
    role = production.by_arn(config.get("role"))
    assert "s3.amazonaws.com" in role.get("assumeRolePolicy")
    policy = json.loads(
        production.one("aws:iam/rolePolicy:RolePolicy", "backups-replication").get("policy")
    )
    listed = [
        [s["Action"]] if isinstance(s["Action"], str) else s["Action"] for s in policy["Statement"]
    ]
    actions = {action for group in listed for action in group}
    assert {"s3:ReplicateObject", "s3:ReplicateTags"} <= actions
    assert "s3:ReplicateDelete" not in actions
    assert all(s["Resource"] != "*" for s in policy["Statement"])
    replica_rules = production.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "dr-lifecycle"
    ).get("rules")
    assert [r["filter"] for r in replica_rules if r.get("expiration")] == [{"prefix": "dumps/"}]


def test_a_failed_backup_or_copy_job_pages_the_alarm_topic(stack: Stack) -> None:
    rule = stack.one("aws:cloudwatch/eventRule:EventRule")
    vault = stack.one(VAULT, "backups-vault")
    assert json.loads(rule.get("eventPattern")) == {
        "source": ["aws.backup"],
        "detail-type": ["Backup Job State Change", "Copy Job State Change"],
        "detail": {
            "state": FAILED,
            "$or": [
                {"backupVaultName": [vault.state["name"]]},
                {"sourceBackupVaultArn": [vault.state["arn"]]},
            ],
        },
    }
    target = stack.one("aws:cloudwatch/eventTarget:EventTarget")
    topic = stack.one("aws:sns/topic:Topic").state["arn"]
    assert (target.get("rule"), target.get("arn")) == (rule.state["name"], topic)
    assert "<state>" in target.get("inputTransformer.inputTemplate")


def test_the_topic_admits_this_accounts_alarms_and_the_backup_rule_only(stack: Stack) -> None:
    topic = stack.one("aws:sns/topic:Topic").state["arn"]
    policy = stack.one("aws:sns/topicPolicy:TopicPolicy")
    assert policy.get("arn") == topic
    by_sid = {s["Sid"]: s for s in json.loads(policy.get("policy"))["Statement"]}
    assert set(by_sid) == {"ThisAccountsAlarmsPublish", "FailedBackupJobsPublish"}
    alarms = by_sid["ThisAccountsAlarmsPublish"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Condition"] == {
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    events = by_sid["FailedBackupJobsPublish"]
    rule = stack.one("aws:cloudwatch/eventRule:EventRule").state["arn"]
    assert events["Condition"] == {"ArnEquals": {"aws:SourceArn": rule}}
    assert all(s["Action"] == "sns:Publish" and s["Resource"] == topic for s in by_sid.values())
