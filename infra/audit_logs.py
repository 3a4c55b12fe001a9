"""AuditLogs: who talked to the stack, kept where an incident review can read it.

- An access-log bucket. The ALB writes its access logs under `alb/`, S3 the backups
  bucket's server access logs under `s3/`. Both are delivered by AWS services that can
  write only under SSE-S3 (neither ELB access logs nor S3 server access logs support a
  KMS key on the target), so this one bucket is SSE-S3 and holds nothing else.
- VPC flow logs of every interface, accepted and rejected, into a CloudWatch log group
  under the stack's logs key.

Both expire after `logRetentionDays`, at least a year in production.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import ABORT_INCOMPLETE_UPLOADS, account_id, arn, policy_document
from infra.buckets import SSE_S3, make_private
from infra.names import Names
from infra.network import Network
from infra.spec import EnvironmentSpec

ALB_PREFIX = "alb"
S3_PREFIX = "s3"
# What the regional ELB service delivers as (regions opened since August 2022 know only
# this principal; older ones also accept their ELB account, which is granted too).
ELB_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"
S3_DELIVERY = "logging.s3.amazonaws.com"
FLOW_LOGS = "vpc-flow-logs.amazonaws.com"


class AuditLogs(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    # A log writer checks when it is configured that it may write: depend on this.
    delivery_policy: aws.s3.BucketPolicy

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        network: Network,
        logs_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:AuditLogs", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{n.prefix}-logs-",
            force_destroy=False,
            tags={**tags, "purpose": "access-logs"},
            # An audit trail outlives the stack it describes.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        public_block = make_private(name, bucket, SSE_S3, child).public_block
        expiring: list[aws.s3.BucketLifecycleConfigurationRuleArgsDict] = [
            {
                "id": f"expire-{prefix}-logs",
                "status": "Enabled",
                "filter": {"prefix": f"{prefix}/"},
                "expiration": {"days": spec.log_retention_days},
                "noncurrent_version_expiration": {"noncurrent_days": 7},
            }
            for prefix in (ALB_PREFIX, S3_PREFIX)
        ]
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[*expiring, ABORT_INCOMPLETE_UPLOADS],
            opts=child,
        )
        elb_account = aws.elb.get_service_account_output(
            region=spec.region, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        objects = pulumi.Output.concat(bucket.arn, "/*")
        self.delivery_policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=policy_document(
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket.arn, objects],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "TheRegionsLoadBalancersDeliverAccessLogs",
                    "Effect": "Allow",
                    "Principal": {"Service": ELB_DELIVERY, "AWS": elb_account.arn},
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(
                        bucket.arn, f"/{ALB_PREFIX}/AWSLogs/", account_id(), "/*"
                    ),
                },
                {
                    "Sid": "S3DeliversThisAccountsServerAccessLogs",
                    "Effect": "Allow",
                    "Principal": {"Service": S3_DELIVERY},
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(bucket.arn, f"/{S3_PREFIX}/*"),
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id()}},
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )

        self._flow_logs(name, spec, network, logs_key_arn, tags)

        self.bucket = bucket.bucket
        self.register_outputs({"bucket": self.bucket})

    def _flow_logs(
        self,
        name: str,
        spec: EnvironmentSpec,
        network: Network,
        logs_key_arn: pulumi.Input[str],
        tags: dict[str, str],
    ) -> None:
        n = Names(spec.stack)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=n.flow_log_group,
            retention_in_days=spec.log_retention_days,
            kms_key_id=logs_key_arn,
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=policy_document(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": FLOW_LOGS},
                    "Action": "sts:AssumeRole",
                    # Flow logs of this account only (the confused-deputy guard).
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id()},
                        "ArnLike": {
                            "aws:SourceArn": arn("ec2", spec.region, "vpc-flow-log/*"),
                        },
                    },
                }
            ),
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=policy_document(
                {
                    "Sid": "WriteTheFlowLogGroup",
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
                },
                {
                    "Sid": "FindTheGroup",
                    "Effect": "Allow",
                    "Action": "logs:DescribeLogGroups",
                    "Resource": arn("logs", spec.region, "log-group:*"),
                },
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-vpc-flow-logs",
            vpc_id=network.vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=600,
            tags={**tags, "Name": f"{n.prefix}-vpc"},
            opts=child,
        )
