"""Passing and failing resources for the policy rules of the later rule modules (encryption,
audit, backups, alerting, edge): rule name -> (resources that pass, resources that fail).

`test_policy.py` merges them with its own cases and checks every rule against both lists.
For a resource rule each failing resource must fail on its own; for a stack rule, the
failing list as a whole.
"""

from __future__ import annotations

import json
from typing import Any

from infra import environment_class as env_class
from infra.policy import tokens as t
from infra.policy.registry import Resource

PROD, STAGING = env_class.PRODUCTION, env_class.STAGING
TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:drydock-production-alarms"
ALB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/a/1"
HTTP_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/a/1/80"
HOME_VAULT = "arn:aws:backup:eu-west-1:123456789012:backup-vault:drydock-production"
DR_VAULT = "arn:aws:backup:eu-central-1:123456789012:backup-vault:drydock-production-dr"
PLAN_ARN = "arn:aws:backup:eu-west-1:123456789012:backup-plan:plan-1"
ROOT_STATEMENT = {
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def res(token: str, label: str = "r", cls: str | None = None, /, **props: Any) -> Resource:
    """A resource of `token` named `label`; with `cls`, tagged with that environment class.
    The first three are positional, so that `props` may hold a `name` of its own."""
    if cls is not None:
        props["tags"] = {**props.get("tags", {}), env_class.TAG: cls}
    return Resource(token, label, props)


def key(policy: list[dict[str, Any]] | None, rotation: bool = True) -> Resource:
    document = json.dumps({"Version": "2012-10-17", "Statement": policy}) if policy else None
    return res(t.KMS_KEY, "key", policy=document, enableKeyRotation=rotation)


def lifecycle(*rules: dict[str, Any]) -> Resource:
    return res(t.BUCKET_LIFECYCLE[0], "lifecycle", rules=list(rules))


def expiring(prefix: str) -> dict[str, Any]:
    return {
        "id": f"expire-{prefix}",
        "status": "Enabled",
        "filter": {"prefix": prefix},
        "expiration": {"days": 30},
    }


def plan(cls: str | None = PROD, *copy_to: str) -> Resource:
    copies = [{"destinationVaultArn": a, "lifecycle": {"deleteAfter": 14}} for a in copy_to]
    rule = {"ruleName": "daily", "lifecycle": {"deleteAfter": 14}, "copyActions": copies}
    return res(t.BACKUP_PLAN, "plan", cls, arn=PLAN_ARN, rules=[rule])


def vault(cls: str = PROD, region: str | None = None) -> Resource:
    return res(t.BACKUP_VAULT, "vault", cls, name="drydock-production", region=region)


def lock(changeable: int | None = 3, minimum: int = 14) -> Resource:
    return res(
        t.VAULT_LOCK,
        "lock",
        backupVaultName="drydock-production",
        changeableForDays=changeable,
        minRetentionDays=minimum,
    )


def listener(protocol: str, *actions: dict[str, Any], **props: Any) -> Resource:
    if actions:
        props["defaultActions"] = list(actions)
    return res(t.LISTENERS[0], f"{protocol.lower()}-listener", protocol=protocol, **props)


REDIRECT = {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443"}}
FORWARD = {"type": "forward", "targetGroupArn": "arn:tg"}
ANSWER = {"type": "fixed-response", "fixedResponse": {"statusCode": "404"}}


def rule_on(listener_arn: str, *actions: dict[str, Any]) -> Resource:
    return res(t.LISTENER_RULES[0], "rule", listenerArn=listener_arn, actions=list(actions))


def ingress(port: int, cidr: str | None = "0.0.0.0/0", to: int | None = None) -> Resource:
    return res(
        t.INGRESS_RULE,
        f"in-{port}",
        ipProtocol="tcp",
        fromPort=port,
        toPort=port if to is None else to,
        cidrIpv4=cidr,
    )


def egress(port: int, protocol: str = "tcp") -> Resource:
    return res(
        t.EGRESS_RULE,
        f"out-{port}",
        ipProtocol=protocol,
        fromPort=port,
        toPort=port,
        cidrIpv4="0.0.0.0/0",
    )


def event_rule(pattern: dict[str, Any]) -> Resource:
    return res(t.EVENT_RULE, "event-rule", name="backup-failed", eventPattern=json.dumps(pattern))


BACKUP_FAILURES = {
    "source": ["aws.backup"],
    "detail-type": ["Backup Job State Change", "Copy Job State Change"],
    "detail": {"state": ["FAILED", "ABORTED"]},
}
PAGE = res(t.EVENT_TARGET, "page", rule="backup-failed", arn=TOPIC_ARN)
SUBSCRIBED = res(t.SUBSCRIPTION, "oncall", topic=TOPIC_ARN, protocol="email")
VPC = res(t.VPC, "vpc", arn="arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0abc")


def flow_log(vpc_id: str, traffic: str = "ALL") -> Resource:
    return res(
        t.FLOW_LOG,
        "flow-log",
        vpcId=vpc_id,
        trafficType=traffic,
        logDestinationType="cloud-watch-logs",
    )


CASES: dict[str, tuple[list[Resource], list[Resource]]] = {
    # Encryption.
    "kms-key-policy": (
        [key([ROOT_STATEMENT])],
        [
            key(None),
            key([ROOT_STATEMENT, {**ROOT_STATEMENT, "Sid": "Anyone", "Principal": "*"}]),
            key([{**ROOT_STATEMENT, "Principal": {"AWS": "*"}}]),
            key([ROOT_STATEMENT], rotation=False),
        ],
    ),
    "sns-topic-encrypted": (
        [res(t.TOPIC, "topic", kmsMasterKeyId="arn:aws:kms:eu-west-1:123456789012:key/k")],
        [res(t.TOPIC, "topic"), res(t.TOPIC, "topic", kmsMasterKeyId="alias/aws/sns")],
    ),
    "log-group-encrypted": (
        [res(t.LOG_GROUP, "logs", kmsKeyId="arn:aws:kms:eu-west-1:123456789012:key/k")],
        [res(t.LOG_GROUP, "logs", retentionInDays=365)],
    ),
    "ecr-customer-key": (
        [
            res(
                t.REPOSITORY,
                "repo",
                encryptionConfigurations=[{"encryptionType": "KMS", "kmsKey": "arn:key"}],
            )
        ],
        [
            res(t.REPOSITORY, "repo", encryptionConfigurations=[{"encryptionType": "KMS"}]),
            res(t.REPOSITORY, "repo", encryptionConfigurations=[{"encryptionType": "AES256"}]),
            res(t.REPOSITORY, "repo"),
        ],
    ),
    # Audit trails.
    "alb-access-logs": (
        [
            res(t.LOAD_BALANCERS[0], "alb", accessLogs={"bucket": "logs", "enabled": True}),
            res(t.LOAD_BALANCERS[0], "nlb", loadBalancerType="network"),
        ],
        [
            res(t.LOAD_BALANCERS[0], "alb"),
            res(t.LOAD_BALANCERS[0], "alb", accessLogs={"bucket": "logs", "enabled": False}),
        ],
    ),
    "vpc-flow-logs": (
        [VPC, flow_log("vpc-0abc")],
        [VPC, flow_log("vpc-other"), flow_log("vpc-0abc", traffic="REJECT")],
    ),
    "environment-class-tag": (
        [res(t.TOPIC, "a", STAGING), res(t.VPC, "b", STAGING), res(t.EVENT_TARGET, "untagged")],
        [
            res(t.TOPIC, "a", STAGING),
            res(t.VPC, "b", PROD),
            res(t.LOG_GROUP, "c", tags={"project": "drydock"}),
            res(t.LOG_GROUP, "d", "qa"),
        ],
    ),
    # Backups out of reach.
    "backup-copy-to-second-region": (
        [plan(PROD, DR_VAULT), plan(STAGING)],
        [plan(PROD), plan(PROD, HOME_VAULT), plan(None)],  # untagged: production
    ),
    "production-vault-lock": (
        [vault(), lock(), vault(STAGING, region="eu-central-1")],
        [vault(), lock(changeable=None, minimum=1), vault(region="eu-central-1")],
    ),
    "lifecycle-spares-ledger": (
        [
            lifecycle(
                expiring("dumps/"),
                {"id": "locks", "status": "Enabled", "filter": {"prefix": "locks/"}},
                {"id": "whole", "status": "Enabled", "filter": {}},
                {**expiring(""), "status": "Disabled"},
            )
        ],
        [
            lifecycle(expiring("")),
            lifecycle(expiring("ledger/")),
            lifecycle(expiring("l")),
            lifecycle(expiring("locks/production.json")),
        ],
    ),
    # Paging.
    "alarm-topic-subscribed": (
        [
            res(t.TOPIC, "topic", PROD, arn=TOPIC_ARN),
            res(t.ALARM, "alarm", alarmActions=[TOPIC_ARN]),
            SUBSCRIBED,
            res(t.TOPIC, "quiet", STAGING, arn="arn:aws:sns:eu-west-1:1:quiet"),
            res(t.ALARM, "staging-alarm", alarmActions=["arn:aws:sns:eu-west-1:1:quiet"]),
        ],
        [
            res(t.TOPIC, "topic", PROD, arn=TOPIC_ARN),
            res(t.ALARM, "alarm", okActions=[TOPIC_ARN]),
            PAGE,
        ],
    ),
    "backup-failures-notify": (
        [vault(), event_rule(BACKUP_FAILURES), PAGE],
        [
            vault(),
            event_rule({**BACKUP_FAILURES, "detail": {"state": ["COMPLETED"]}}),
            PAGE,
            res(t.EVENT_TARGET, "lambda", rule="backup-failed", arn="arn:aws:lambda:x"),
        ],
    ),
    # The edge.
    "alb-tls-policy": (
        [
            listener("HTTPS", sslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06"),
            listener("HTTPS", sslPolicy="ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04"),
            listener("HTTP", REDIRECT),
        ],
        [
            listener("HTTPS", sslPolicy="ELBSecurityPolicy-2016-08"),
            listener("HTTPS", sslPolicy="ELBSecurityPolicy-TLS-1-1-2017-01"),
            listener("HTTPS"),
        ],
    ),
    "http-redirects-to-https": (
        [listener("HTTP", REDIRECT, arn=HTTP_ARN), rule_on(HTTP_ARN, ANSWER)],
        [
            listener("HTTP", FORWARD),
            listener("HTTP", REDIRECT, arn=HTTP_ARN),
            rule_on(HTTP_ARN, FORWARD),
        ],
    ),
    "alb-waf": (
        [
            res(t.LOAD_BALANCERS[0], "alb", arn=ALB_ARN, internal=False),
            res(t.WEB_ACL_ASSOCIATION, "waf", resourceArn=ALB_ARN),
            res(t.LOAD_BALANCERS[0], "internal", arn="arn:internal", internal=True),
        ],
        [res(t.LOAD_BALANCERS[0], "alb", arn=ALB_ARN, internal=False)],
    ),
    "security-group-scope": (
        [ingress(443), ingress(80), egress(443), ingress(5432, cidr=None)],
        [
            ingress(22),
            ingress(0, to=65535),
            ingress(443, cidr="::/0", to=444),
            egress(0, protocol="-1"),
            egress(5432),
            res(
                t.SECURITY_GROUP,
                "inline",
                ingress=[
                    {"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/0"]}
                ],
            ),
            res(
                t.SECURITY_GROUP_RULE,
                "rdp",
                type="ingress",
                protocol="tcp",
                fromPort=3389,
                toPort=3389,
                cidrBlocks=["0.0.0.0/0"],
            ),
        ],
    ),
}
