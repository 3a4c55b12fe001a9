"""DisasterRecovery: where the backups go in the second region (`drydock:drRegion`).

- A vault under a key of that region, which the AWS Backup plan copies every recovery point
  into (infra/backups.py). In production it is locked in compliance mode, like the primary
  vault: no one, the account's root included, can delete a point before its minimum
  retention, or unlock the vault once the grace period has passed.
- A replica bucket that the backups bucket replicates the ledger and the drill's dumps
  into. Deletes are not replicated, so a dump or ledger entry removed at home (by mistake,
  by its lifecycle, or by someone who should not) is still there.

Declared in that region through pulumi-aws 7's per-resource `region` argument, with no
second provider to configure.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import ABORT_INCOMPLETE_UPLOADS, kms_key, policy_document
from infra.buckets import kms_encryption, make_private
from infra.names import DUMPS_PREFIX, Names
from infra.spec import EnvironmentSpec

# Compliance mode can be undone for this many days after it is first applied, then never.
LOCK_GRACE_DAYS = 3


def vault_lock(
    name: str,
    spec: EnvironmentSpec,
    vault: aws.backup.Vault,
    opts: pulumi.ResourceOptions,
    region: str | None = None,
) -> aws.backup.VaultLockConfiguration:
    """Compliance mode: points stay at least `backupRetentionDays`, whoever asks."""
    return aws.backup.VaultLockConfiguration(
        name,
        backup_vault_name=vault.name,
        min_retention_days=spec.backup_retention_days,
        changeable_for_days=LOCK_GRACE_DAYS,
        region=region,
        opts=opts,
    )


class DisasterRecovery(pulumi.ComponentResource):
    region: str
    key_arn: pulumi.Output[str]
    vault_arn: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:DisasterRecovery", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)
        # The copies are what is left after a disaster: a destroy of the stack leaves them.
        guarded = pulumi.ResourceOptions(
            parent=self, protect=spec.deletion_protection, retain_on_delete=True
        )
        self.region = region

        key = kms_key(
            f"{name}-key",
            f"{n.prefix}-dr-backups",
            f"{n.prefix}: recovery point copies and the backups replica ({region})",
            tags,
            guarded,
            region=region,
        )
        vault = aws.backup.Vault(
            f"{name}-vault",
            name=n.dr_backup_vault,
            kms_key_arn=key.arn,
            force_destroy=False,
            region=region,
            tags=tags,
            opts=guarded,
        )
        if spec.is_production:
            vault_lock(f"{name}-vault-lock", spec, vault, child, region)

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{n.prefix}-replica-",
            force_destroy=False,
            region=region,
            tags=tags,
            opts=guarded,
        )
        # Replication needs versioning on both sides.
        locked = make_private(name, bucket, kms_encryption(key.arn), child, region=region)
        public_block, versioning = locked.public_block, locked.versioning
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    # The dumps' copies expire as the originals do; the ledger never.
                    "id": "expire-dumps",
                    "status": "Enabled",
                    "filter": {"prefix": DUMPS_PREFIX},
                    "expiration": {"days": spec.backups_expiry_days},
                    "noncurrent_version_expiration": {"noncurrent_days": 7},
                },
                ABORT_INCOMPLETE_UPLOADS,
            ],
            region=region,
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
            region=region,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )

        self.key_arn = key.arn
        self.vault_arn = vault.arn
        # Resolved once versioning is on: replication into it is refused before.
        self.bucket_arn = pulumi.Output.all(bucket.arn, versioning.id).apply(lambda a: a[0])
        self.register_outputs({"vault_arn": self.vault_arn, "bucket_arn": self.bucket_arn})
