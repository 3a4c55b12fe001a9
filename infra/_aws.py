"""Small building blocks shared by the components: KMS keys, IAM trust and policy documents."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws


def kms_key(
    name: str, alias: str, description: str, tags: dict[str, str], opts: pulumi.ResourceOptions
) -> aws.kms.Key:
    """A customer-managed key with yearly rotation and the longest deletion window."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=tags,
        opts=opts,
    )
    aws.kms.Alias(
        f"{name}-alias",
        name=f"alias/{alias}",
        target_key_id=key.key_id,
        opts=pulumi.ResourceOptions(parent=opts.parent),
    )
    return key


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
