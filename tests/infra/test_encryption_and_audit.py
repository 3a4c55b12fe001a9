"""Customer keys with explicit policies for everything AWS writes for the stack, and the
audit trails: ALB access logs, the backups bucket's server access logs, VPC flow logs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines.deploy.security.iac.mocked_stack import ACCOUNT, ELB_ACCOUNTS
from tests.infra.harness import REGION, Stack

pytestmark = pytest.mark.unit

KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROOT_ADMIN = {
    "Sid": "TheAccountAdministersTheKeyThroughIam",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def statements(document: str) -> list[dict[str, Any]]:
    return list(json.loads(document)["Statement"])


def key_arn(stack: Stack, name: str) -> str:
    return str(stack.one(KEY, name).state["arn"])


def test_every_key_has_an_explicit_policy_and_rotates(stack: Stack) -> None:
    keys = stack.of_type(KEY)
    expected = {"database-key", "secrets-key", "backups-key", "keys-logs", "keys-alarm-topic"}
    expected |= {"keys-repository"} | ({"dr-key"} if stack.spec.dr_region else set())
    assert {k.name for k in keys} == expected
    for key in keys:
        assert statements(key.get("policy"))[0] == ROOT_ADMIN, key.name
        assert key.get("enableKeyRotation") is True
        assert key.get("deletionWindowInDays") == 30


def test_the_logs_key_admits_the_regional_logs_service_for_this_stacks_groups(
    stack: Stack,
) -> None:
    (_, logs) = statements(stack.one(KEY, "keys-logs").get("policy"))
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    allowed = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    assert allowed == [
        f"{prefix}/drydock/{stack.name}/*",
        f"{prefix}/aws/rds/instance/drydock-{stack.name}/*",
        f"{prefix}aws-waf-logs-drydock-{stack.name}",
    ]
    groups = stack.of_type(LOG_GROUP)
    assert len(groups) == 5  # service, two database exports, flow logs, firewall
    for group in groups:
        assert group.get("kmsKeyId") == key_arn(stack, "keys-logs"), group.name
        assert any(_arn_like(f"{prefix}{group.get('name')}", pattern) for pattern in allowed), (
            group.name
        )


def _arn_like(arn: str, pattern: str) -> bool:
    return arn == pattern or (pattern.endswith("*") and arn.startswith(pattern[:-1]))


def test_the_alarm_topic_is_under_a_key_cloudwatch_may_use(stack: Stack) -> None:
    topic = stack.one("aws:sns/topic:Topic")
    assert topic.get("kmsMasterKeyId") == key_arn(stack, "keys-alarm-topic")
    (_, publishers) = statements(stack.one(KEY, "keys-alarm-topic").get("policy"))
    assert publishers["Principal"] == {
        "Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }
    assert publishers["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_images_are_under_a_customer_key(stack: Stack) -> None:
    repository = stack.one("aws:ecr/repository:Repository")
    assert repository.get("encryptionConfigurations") == [
        {"encryptionType": "KMS", "kmsKey": key_arn(stack, "keys-repository")}
    ]


def test_the_alb_logs_every_request_into_the_access_log_bucket(stack: Stack) -> None:
    bucket = stack.one("aws:s3/bucket:Bucket", "audit-bucket")
    alb = stack.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb.get("accessLogs") == {"bucket": bucket.id, "prefix": "alb", "enabled": True}
    assert bucket.get("tags.purpose") == "access-logs"
    policy = statements(stack.one("aws:s3/bucketPolicy:BucketPolicy", "audit-policy").get("policy"))
    by_sid = {s.get("Sid"): s for s in policy}
    elb = by_sid["TheRegionsLoadBalancersDeliverAccessLogs"]
    assert elb["Principal"] == {
        "Service": "logdelivery.elasticloadbalancing.amazonaws.com",
        "AWS": f"arn:aws:iam::{ELB_ACCOUNTS[REGION]}:root",
    }
    assert elb["Action"] == "s3:PutObject"
    assert elb["Resource"] == f"{bucket.state['arn']}/alb/AWSLogs/{ACCOUNT}/*"
    s3 = by_sid["S3DeliversThisAccountsServerAccessLogs"]
    assert s3["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert s3["Resource"] == f"{bucket.state['arn']}/s3/*"
    assert s3["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert by_sid["DenyInsecureTransport"]["Effect"] == "Deny"


def test_the_access_log_bucket_is_sse_s3_private_and_expires_logs(stack: Stack) -> None:
    sse = stack.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "audit-encryption",
    )
    # ELB and S3 server access logs can be delivered under SSE-S3 only.
    assert sse.get("rules") == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    block = stack.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "audit-public-access"
    )
    assert block.get("restrictPublicBuckets") is True
    rules = stack.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "audit-lifecycle"
    ).get("rules")
    expiring = {r["filter"]["prefix"]: r["expiration"]["days"] for r in rules if "expiration" in r}
    assert expiring == {"alb/": stack.spec.log_retention_days, "s3/": stack.spec.log_retention_days}


def test_the_backups_bucket_logs_its_access_into_the_log_bucket(stack: Stack) -> None:
    logging = stack.one("aws:s3/bucketLogging:BucketLogging")
    assert logging.get("bucket") == stack.one("aws:s3/bucket:Bucket", "backups-bucket").id
    assert logging.get("targetBucket") == stack.one("aws:s3/bucket:Bucket", "audit-bucket").id
    assert logging.get("targetPrefix") == "s3/backups/"


def test_vpc_flow_logs_go_to_an_encrypted_group_through_a_scoped_role(stack: Stack) -> None:
    flow = stack.one("aws:ec2/flowLog:FlowLog")
    group = stack.one(LOG_GROUP, "audit-flow-logs")
    assert flow.get("vpcId") == stack.one("aws:ec2/vpc:Vpc").id
    assert (flow.get("trafficType"), flow.get("logDestinationType")) == ("ALL", "cloud-watch-logs")
    assert flow.get("logDestination") == group.state["arn"]
    assert group.get("name") == f"/drydock/{stack.name}/vpc-flow-logs"
    assert group.get("retentionInDays") == stack.spec.log_retention_days
    role = stack.by_arn(flow.get("iamRoleArn"))
    (trust,) = statements(role.get("assumeRolePolicy"))
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    write, find = statements(
        stack.one("aws:iam/rolePolicy:RolePolicy", "audit-flow-logs").get("policy")
    )
    assert write["Resource"] == [group.state["arn"], group.state["arn"] + ":*"]
    assert find["Action"] == "logs:DescribeLogGroups"
    assert "*" not in json.dumps([write["Resource"], find["Resource"]]).replace(":*", "")
