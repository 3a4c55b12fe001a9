"""What every bucket of the stacks gets: owner-enforced objects, no public access, default
encryption and versioning. One place, so the three buckets cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# ELB and S3 server access logs can only be delivered under SSE-S3.
SSE_S3: list[Any] = [{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}]


def kms_encryption(key_arn: pulumi.Input[str]) -> list[Any]:
    return [
        {
            "apply_server_side_encryption_by_default": {
                "sse_algorithm": "aws:kms",
                "kms_master_key_id": key_arn,
            },
            "bucket_key_enabled": True,
        }
    ]


@dataclass(frozen=True)
class PrivateBucket:
    public_block: aws.s3.BucketPublicAccessBlock
    versioning: aws.s3.BucketVersioning


def make_private(
    name: str,
    bucket: aws.s3.Bucket,
    encryption: list[Any],
    opts: pulumi.ResourceOptions,
    region: pulumi.Input[str] | None = None,
) -> PrivateBucket:
    where: dict[str, Any] = {"region": region} if region is not None else {}
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=opts,
        **where,
    )
    public_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
        **where,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id, rules=encryption, opts=opts, **where
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=opts,
        **where,
    )
    return PrivateBucket(public_block, versioning)
