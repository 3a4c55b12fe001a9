"""Backups: the AWS Backup plan for the database and the bucket for the drill's logical dumps.

RDS keeps its own automated daily snapshots (`backup_retention_period`); the plan adds
recovery points in a separate KMS-encrypted vault, daily and weekly (runbook §6). With a
second region (`drydock:drRegion`, infra/dr_backups.py) each point is also copied there,
and the bucket replicates its ledger and dumps there. Production's vault is locked in
compliance mode. The bucket's lifecycle expires the drill's dumps only: the ledger (the
release history deploys and `incident.timeline` read) and the deploy locks stay.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import (
    ABORT_INCOMPLETE_UPLOADS,
    assume_role_policy,
    kms_key,
    managed_policy,
    policy_document,
)
from infra.audit_logs import S3_PREFIX, AuditLogs
from infra.buckets import kms_encryption, make_private
from infra.database import Database
from infra.dr_backups import DisasterRecovery, vault_lock
from infra.names import DUMPS_PREFIX, LEDGER_PREFIX, LOCKS_PREFIX, Names
from infra.spec import EnvironmentSpec


class Backups(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    vault_name: pulumi.Output[str]
    vault_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        database: Database,
        audit: AuditLogs,
        dr: DisasterRecovery | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:Backups", name, None, opts)
        names = Names(spec.stack)
        tags = names.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)
        # Recovery points and dumps must survive a destroy of the stack: keep them in AWS.
        guarded = pulumi.ResourceOptions(
            parent=self, protect=spec.deletion_protection, retain_on_delete=True
        )

        key = kms_key(
            f"{name}-key",
            f"{names.prefix}-backups",
            f"{names.prefix}: backup vault and logical dumps",
            tags,
            guarded,
        )

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{names.prefix}-backups-",
            force_destroy=False,
            tags=tags,
            opts=guarded,
        )
        locked = make_private(name, bucket, kms_encryption(key.arn), child)
        public_block, versioning = locked.public_block, locked.versioning
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-dumps",
                    "status": "Enabled",
                    "filter": {"prefix": DUMPS_PREFIX},
                    "expiration": {"days": spec.backups_expiry_days},
                    # A week to undo an accidental overwrite or delete.
                    "noncurrent_version_expiration": {"noncurrent_days": 7},
                },
                {
                    # Each lease renewal leaves the lock's previous version behind; the
                    # lock itself (current version) is never expired by S3.
                    "id": "forget-old-lock-versions",
                    "status": "Enabled",
                    "filter": {"prefix": LOCKS_PREFIX},
                    "noncurrent_version_expiration": {"noncurrent_days": 1},
                },
                ABORT_INCOMPLETE_UPLOADS,
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=policy_document(
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )
        aws.s3.BucketLogging(
            f"{name}-access-logs",
            bucket=bucket.id,
            target_bucket=audit.bucket,
            target_prefix=f"{S3_PREFIX}/backups/",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[audit.delivery_policy]),
        )
        if dr is not None:
            self._replicate(name, spec, bucket, key, versioning, dr)

        vault = aws.backup.Vault(
            f"{name}-vault",
            name=names.backup_vault,
            kms_key_arn=key.arn,
            force_destroy=False,
            tags=tags,
            opts=guarded,
        )
        if spec.is_production:
            vault_lock(f"{name}-vault-lock", spec, vault, child)

        def rule(rule_name: str, schedule: str, keep_days: int) -> aws.backup.PlanRuleArgsDict:
            copies: list[aws.backup.PlanRuleCopyActionArgsDict] = []
            if dr is not None:
                # The copy is kept as long as the original.
                copies.append(
                    {
                        "destination_vault_arn": dr.vault_arn,
                        "lifecycle": {"delete_after": keep_days},
                    }
                )
            return {
                "rule_name": rule_name,
                "target_vault_name": vault.name,
                "schedule": schedule,
                "start_window": 60,
                "completion_window": 240,
                "lifecycle": {"delete_after": keep_days},
                "copy_actions": copies,
                "recovery_point_tags": {**tags, "frequency": rule_name},
            }

        plan = aws.backup.Plan(
            f"{name}-plan",
            name=f"{names.prefix}-database",
            rules=[
                rule("daily", spec.daily_backup_schedule, spec.backup_retention_days),
                rule(
                    "weekly",
                    spec.weekly_backup_schedule,
                    spec.weekly_backup_retention_weeks * 7,
                ),
            ],
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume_role_policy("backup.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        for policy in (
            "AWSBackupServiceRolePolicyForBackup",
            "AWSBackupServiceRolePolicyForRestores",
        ):
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy}",
                role=role.name,
                policy_arn=managed_policy(f"service-role/{policy}"),
                opts=child,
            )
        aws.backup.Selection(
            f"{name}-database",
            name=f"{names.prefix}-database",
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[database.instance.arn],
            opts=child,
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.vault_name = vault.name
        self.vault_arn = vault.arn
        self.register_outputs({"bucket": self.bucket_name, "vault": self.vault_name})

    def _replicate(
        self,
        name: str,
        spec: EnvironmentSpec,
        bucket: aws.s3.Bucket,
        key: aws.kms.Key,
        versioning: aws.s3.BucketVersioning,
        dr: DisasterRecovery,
    ) -> None:
        """The ledger and the dumps into the replica bucket of the DR region, re-encrypted
        there under its key. Delete markers stay home; the deploy locks are not copied."""
        child = pulumi.ResourceOptions(parent=self)
        tags = Names(spec.stack).tags(spec.environment_class)
        role = aws.iam.Role(
            f"{name}-replication",
            assume_role_policy=assume_role_policy("s3.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-replication",
            role=role.id,
            policy=policy_document(
                {
                    "Sid": "ReadTheReplicationConfiguration",
                    "Effect": "Allow",
                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    "Resource": bucket.arn,
                },
                {
                    "Sid": "ReadTheVersionsToCopy",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                    ],
                    "Resource": pulumi.Output.concat(bucket.arn, "/*"),
                },
                {
                    "Sid": "WriteTheReplica",
                    "Effect": "Allow",
                    "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                    "Resource": pulumi.Output.concat(dr.bucket_arn, "/*"),
                },
                {
                    "Sid": "DecryptAtHome",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": key.arn,
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"s3.{spec.region}.amazonaws.com"}
                    },
                },
                {
                    "Sid": "EncryptInTheDrRegion",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": dr.key_arn,
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"s3.{dr.region}.amazonaws.com"}
                    },
                },
            ),
            opts=child,
        )
        aws.s3.BucketReplicationConfig(
            f"{name}-replication",
            bucket=bucket.id,
            role=role.arn,
            rules=[
                {
                    "id": f"replicate-{prefix.rstrip('/')}",
                    "priority": priority,
                    "status": "Enabled",
                    "filter": {"prefix": prefix},
                    "delete_marker_replication": {"status": "Disabled"},
                    "source_selection_criteria": {
                        "sse_kms_encrypted_objects": {"status": "Enabled"}
                    },
                    "destination": {
                        "bucket": dr.bucket_arn,
                        "storage_class": "STANDARD",
                        "encryption_configuration": {"replica_kms_key_id": dr.key_arn},
                    },
                }
                for priority, prefix in enumerate((LEDGER_PREFIX, DUMPS_PREFIX), start=1)
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
