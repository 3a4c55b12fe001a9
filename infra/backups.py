"""Backups: the AWS Backup plan for the database and the bucket for the drill's logical dumps.

RDS keeps its own automated daily snapshots (`backup_retention_period`); the plan adds
recovery points in a separate KMS-encrypted vault, daily and weekly (runbook §6).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import assume_role_policy, kms_key, managed_policy, policy_document
from infra.database import Database
from infra.names import Names
from infra.spec import EnvironmentSpec


class Backups(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    vault_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        database: Database,
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
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-dumps",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": spec.backups_expiry_days},
                    # A week to undo an accidental overwrite or delete.
                    "noncurrent_version_expiration": {"noncurrent_days": 7},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
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

        vault = aws.backup.Vault(
            f"{name}-vault",
            name=names.backup_vault,
            kms_key_arn=key.arn,
            force_destroy=False,
            tags=tags,
            opts=guarded,
        )
        plan = aws.backup.Plan(
            f"{name}-plan",
            name=f"{names.prefix}-database",
            rules=[
                {
                    "rule_name": "daily",
                    "target_vault_name": vault.name,
                    "schedule": spec.daily_backup_schedule,
                    "start_window": 60,
                    "completion_window": 240,
                    "lifecycle": {"delete_after": spec.backup_retention_days},
                    "recovery_point_tags": {**tags, "frequency": "daily"},
                },
                {
                    "rule_name": "weekly",
                    "target_vault_name": vault.name,
                    "schedule": spec.weekly_backup_schedule,
                    "start_window": 60,
                    "completion_window": 240,
                    "lifecycle": {"delete_after": spec.weekly_backup_retention_weeks * 7},
                    "recovery_point_tags": {**tags, "frequency": "weekly"},
                },
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
        self.register_outputs({"bucket": self.bucket_name, "vault": self.vault_name})
