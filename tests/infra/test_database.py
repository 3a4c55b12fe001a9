"""Database and backups: encryption, privacy, retention, final snapshot, TLS, AWS Backup."""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import Stack, walk

pytestmark = pytest.mark.unit

RDS = "aws:rds/instance:Instance"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
ABORT_UPLOADS = {
    "id": "abort-incomplete-uploads",
    "status": "Enabled",
    "filter": {},
    "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1},
}


def _key_arn(stack: Stack, component: str) -> str:
    return stack.one("aws:kms/key:Key", f"{component}-key").state["arn"]


def test_rds_is_encrypted_private_and_tls_only(stack: Stack) -> None:
    db = stack.one(RDS)
    assert db.get("engine") == "postgres"
    assert db.get("storageEncrypted") is True
    assert db.get("kmsKeyId") == _key_arn(stack, "database")
    assert db.get("publiclyAccessible") is False
    (group,) = db.get("vpcSecurityGroupIds")
    assert stack.by_id(group).name == "network-db-sg"
    params = stack.one("aws:rds/parameterGroup:ParameterGroup")
    assert params.get("family") == f"postgres{stack.spec.db_engine_version}"
    assert db.get("parameterGroupName") == params.state["name"]
    values = {p["name"]: p["value"] for p in params.get("parameters")}
    assert values == {
        "rds.force_ssl": "1",
        "log_min_duration_statement": str(stack.spec.log_min_duration_statement_ms),
    }
    kms = stack.one("aws:kms/key:Key", "database-key")
    assert kms.get("enableKeyRotation") is True


def test_rds_backups_windows_and_final_snapshot(stack: Stack) -> None:
    db = stack.one(RDS)
    assert db.get("backupRetentionPeriod") == stack.spec.backup_retention_days >= 7
    assert db.get("backupWindow") == stack.spec.backup_window
    assert db.get("maintenanceWindow") == stack.spec.maintenance_window
    assert db.get("copyTagsToSnapshot") is True
    assert db.get("deleteAutomatedBackups") is False
    assert db.get("skipFinalSnapshot") is False
    assert db.get("finalSnapshotIdentifier") == f"drydock-{stack.name}-final"
    assert db.get("performanceInsightsEnabled") is True
    assert db.get("monitoringInterval") == stack.spec.monitoring_interval_seconds > 0
    role = stack.by_arn(db.get("monitoringRoleArn"))
    assert "monitoring.rds.amazonaws.com" in role.get("assumeRolePolicy")


def test_rds_log_exports_have_retention(stack: Stack) -> None:
    db = stack.one(RDS)
    groups = {g.get("name"): g for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for export in db.get("enabledCloudwatchLogsExports"):
        group = groups[f"/aws/rds/instance/drydock-{stack.name}/{export}"]
        assert group.get("retentionInDays") == stack.spec.log_retention_days
        assert group.get("kmsKeyId") == stack.one("aws:kms/key:Key", "keys-logs").state["arn"]


def test_master_password_is_managed_by_rds_and_never_in_clear(stack: Stack) -> None:
    db = stack.one(RDS)
    assert db.get("manageMasterUserPassword") is True
    assert db.get("masterUserSecretKmsKeyId") == _key_arn(stack, "database")
    assert "password" not in db.inputs
    assert stack.outputs["db_master_secret_arn"].startswith("arn:aws:secretsmanager:")
    assert not [k for k in stack.outputs if "password" in k]


def test_production_protects_the_database_staging_does_not(
    staging: Stack, production: Stack
) -> None:
    assert production.one(RDS).get("deletionProtection") is True
    assert production.one(RDS).protect is True
    assert production.one(RDS).get("multiAz") is True
    assert staging.one(RDS).get("deletionProtection") is False
    assert staging.one(RDS).protect is False
    assert staging.one(RDS).get("multiAz") is False
    guarded = {
        "database-key",
        "backups-key",
        "backups-bucket",
        "backups-vault",
        "database-instance",
        "keys-logs",
        "keys-repository",
        *DR_KEPT,
    }
    assert {r.name for r in production.resources if r.protect} == guarded
    assert not [r.name for r in staging.resources if r.protect]


# What the second region holds: its key, its vault of copies, the bucket's replica.
DR_KEPT = {"dr-key", "dr-vault", "dr-bucket"}


def test_a_destroy_leaves_backups_logs_and_the_keys_that_decrypt_them(stack: Stack) -> None:
    retained = {r.name for r in stack.resources if r.retain_on_delete}
    kept = {"database-key", "backups-key", "backups-bucket", "backups-vault"}
    kept |= {"keys-logs", "keys-repository", "audit-bucket"}
    assert retained == kept | (DR_KEPT if stack.spec.dr_region else set())


def test_aws_backup_plan_daily_and_weekly_in_a_kms_vault(stack: Stack) -> None:
    vault = stack.one("aws:backup/vault:Vault", "backups-vault")
    assert vault.get("kmsKeyArn") == _key_arn(stack, "backups")
    assert vault.get("forceDestroy") is False
    rules = {r["ruleName"]: r for r in stack.one("aws:backup/plan:Plan").get("rules")}
    assert set(rules) == {"daily", "weekly"}
    assert rules["daily"]["lifecycle"]["deleteAfter"] == stack.spec.backup_retention_days >= 7
    assert rules["weekly"]["lifecycle"]["deleteAfter"] >= 5 * 7
    assert rules["daily"]["schedule"] == stack.spec.daily_backup_schedule
    assert all(r["targetVaultName"] == vault.state["name"] for r in rules.values())
    selection = stack.one("aws:backup/selection:Selection")
    assert selection.get("resources") == [stack.one(RDS).state["arn"]]
    role = stack.one("aws:iam/role:Role", "backups-role")
    assert "backup.amazonaws.com" in role.get("assumeRolePolicy")


def test_backups_bucket_versioned_kms_private_tls_only_and_expiring(stack: Stack) -> None:
    bucket = stack.one("aws:s3/bucket:Bucket", "backups-bucket")
    name = bucket.id
    assert bucket.get("forceDestroy") is False
    versioning = stack.one("aws:s3/bucketVersioning:BucketVersioning", "backups-versioning")
    assert (versioning.get("bucket"), versioning.get("versioningConfiguration.status")) == (
        name,
        "Enabled",
    )
    sse = stack.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "backups-encryption",
    )
    (rule,) = sse.get("rules")
    assert sse.get("bucket") == name
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": _key_arn(stack, "backups"),
    }
    block = stack.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "backups-public-access"
    )
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(block.get(f) is True for f in flags)
    policy = json.loads(
        stack.one("aws:s3/bucketPolicy:BucketPolicy", "backups-tls-only").get("policy")
    )
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {bucket.state["arn"], bucket.state["arn"] + "/*"}
    assert stack.outputs["backups_bucket"] == name


def test_the_bucket_lifecycle_expires_the_drills_dumps_only(stack: Stack) -> None:
    rules = stack.one(LIFECYCLE, "backups-lifecycle").get("rules")
    expiring = [r for r in rules if r.get("expiration")]
    (dumps,) = expiring
    assert dumps["status"] == "Enabled"
    assert dumps["filter"] == {"prefix": "dumps/"}
    assert dumps["expiration"]["days"] == stack.spec.backups_expiry_days
    # The ledger (release history) and the deploy locks are never expired; the locks'
    # superseded versions (one per lease renewal) are.
    locks = next(r for r in rules if r["filter"] == {"prefix": "locks/"})
    assert locks["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    assert "expiration" not in locks
    assert not [r for r in rules if "ledger" in json.dumps(r)]


def test_failed_multipart_uploads_are_dropped_in_every_bucket(stack: Stack) -> None:
    for lifecycle in stack.of_type(LIFECYCLE):
        whole = [r for r in lifecycle.get("rules") if r["filter"] == {}]
        assert whole == [ABORT_UPLOADS], lifecycle.name


def test_no_resource_anywhere_is_public_or_unencrypted_by_flag(stack: Stack) -> None:
    for resource in stack.resources:
        assert resource.get("publiclyAccessible") is not True, resource.name
        assert resource.get("storageEncrypted") is not False, resource.name
    assert "0.0.0.0/0" not in set(walk(stack.one(RDS).inputs))
