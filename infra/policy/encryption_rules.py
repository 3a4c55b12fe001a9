"""Encryption rules: every key says who may use it, and what AWS services write for the
stack (log events, alarm messages, images) is under a customer-managed key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infra.policy.registry import Resource, listed, resource_rule, statements
from infra.policy.tokens import KMS_KEY, LOG_GROUP, REPOSITORY, TOPIC

# SNS's AWS-managed key: its policy cannot admit CloudWatch, so alarms could not publish.
AWS_MANAGED_SNS_KEY = "alias/aws/sns"


def _anyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in listed(principal.get("AWS"))


@resource_rule(
    "kms-key-policy",
    "every KMS key has an explicit key policy that admits no anonymous principal, and rotates",
)
def kms_key_policy(r: Resource) -> Iterator[str]:
    if r.type != KMS_KEY:
        return
    found = statements(r.props.get("policy"))
    if not found:
        yield f"{r.name}: set an explicit policy (the account through IAM, plus its services)"
    for statement in found:
        if (
            statement.get("Effect") == "Allow"
            and _anyone(statement.get("Principal"))
            and not statement.get("Condition")
        ):
            yield f"{r.name}: statement {statement.get('Sid', '?')} allows any principal"
    if r.props.get("enableKeyRotation") is not True:
        yield f"{r.name}: set enable_key_rotation=True"


@resource_rule(
    "sns-topic-encrypted",
    "SNS topics are encrypted with a customer-managed key (one CloudWatch may use)",
)
def sns_topic_encrypted(r: Resource) -> Iterator[str]:
    if r.type != TOPIC:
        return
    key = r.props.get("kmsMasterKeyId")
    if not key:
        yield f"{r.name}: set kms_master_key_id to a customer-managed key admitting CloudWatch"
    elif key == AWS_MANAGED_SNS_KEY:
        yield (
            f"{r.name}: {AWS_MANAGED_SNS_KEY} cannot admit CloudWatch, so alarms could not "
            "publish; use a customer-managed key"
        )


@resource_rule("log-group-encrypted", "log groups are encrypted with a customer-managed key")
def log_group_encrypted(r: Resource) -> Iterator[str]:
    if r.type == LOG_GROUP and not r.props.get("kmsKeyId"):
        yield f"{r.name}: set kms_key_id to a key whose policy admits logs.<region>.amazonaws.com"


@resource_rule("ecr-customer-key", "image repositories are encrypted with a customer-managed key")
def ecr_customer_key(r: Resource) -> Iterator[str]:
    if r.type != REPOSITORY:
        return
    configurations = listed(r.props.get("encryptionConfigurations"))
    if not any(
        c.get("encryptionType") == "KMS" and c.get("kmsKey")
        for c in configurations
        if isinstance(c, dict)
    ):
        yield f"{r.name}: set encryption_configurations KMS with kms_key (a customer key)"
