"""Small building blocks shared by the components: KMS keys, IAM trust and policy documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

# A lifecycle rule for every bucket: incomplete multipart uploads anywhere are dropped after
# a day. A rule of its own, over the whole bucket, that expires no object.
ABORT_INCOMPLETE_UPLOADS: aws.s3.BucketLifecycleConfigurationRuleArgsDict = {
    "id": "abort-incomplete-uploads",
    "status": "Enabled",
    "filter": {},
    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
}


def kms_key(
    name: str,
    alias: str,
    description: str,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
    *,
    allow: Sequence[dict[str, Any]] = (),
    region: str | None = None,
) -> aws.kms.Key:
    """A customer-managed key with yearly rotation, the longest deletion window and an
    explicit policy: the account administers it through IAM, and the services in `allow`
    may use it. Without a policy of our own AWS would write the same first statement, but
    a reader (and checkov) could not tell which services the key serves."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=key_policy(*allow),
        region=region,
        tags=tags,
        opts=opts,
    )
    aws.kms.Alias(
        f"{name}-alias",
        name=f"alias/{alias}",
        target_key_id=key.key_id,
        region=region,
        opts=pulumi.ResourceOptions(parent=opts.parent),
    )
    return key


def key_policy(*allow: dict[str, Any]) -> pulumi.Output[str]:
    """A key policy: the account's IAM decides who else may use the key (so roles get it
    from their own policies, as everywhere else), plus the service statements in `allow`."""
    return policy_document(
        {
            "Sid": "TheAccountAdministersTheKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": account_root()},
            "Action": "kms:*",
            "Resource": "*",
        },
        *allow,
    )


def account_root() -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition(), ":iam::", account_id(), ":root")


def account_id() -> pulumi.Output[str]:
    account: pulumi.Output[str] = aws.get_caller_identity_output().account_id
    return account


def partition() -> pulumi.Output[str]:
    name: pulumi.Output[str] = aws.get_partition_output().partition
    return name


def arn(service: str, region: str, resource: str) -> pulumi.Output[str]:
    """An ARN in this account and partition: `arn(<service>, <region>, <resource>)`."""
    return pulumi.Output.concat(
        "arn:", partition(), f":{service}:{region}:", account_id(), f":{resource}"
    )


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def policy_document(*statements: dict[str, Any]) -> pulumi.Output[str]:
    """An IAM policy document; statements may hold Outputs (ARNs)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"
