"""EncryptionKeys: the customer-managed keys of what the other components write through an
AWS service: log groups, the alarm topic and the image repository.

Each key's policy names the one service principal that must use the key itself; everyone
else gets the key through IAM (`kms_key`'s first statement). An AWS-managed key would not
do: its policy cannot be changed, so CloudWatch could not publish to a topic under
`alias/aws/sns`, nor CloudWatch Logs write a group under any key it is not named in.
"""

from __future__ import annotations

import pulumi

from infra._aws import arn, kms_key
from infra.names import Names
from infra.spec import EnvironmentSpec

# What CloudWatch Logs does with a log group's key (AWS's documented key policy).
LOGS_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"]
LOGS_ACTIONS += ["kms:Describe*"]
# A publisher to an encrypted topic makes and reads its data keys.
PUBLISH_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
# Who publishes to the alarm topic: CloudWatch alarms, and EventBridge with AWS Backup's
# failed jobs (infra/backup_alerts.py).
TOPIC_PUBLISHERS = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]


class EncryptionKeys(pulumi.ComponentResource):
    logs_key_arn: pulumi.Output[str]
    topic_key_arn: pulumi.Output[str]
    repository_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, spec: EnvironmentSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("drydock:infra:EncryptionKeys", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        # Log events and images outlive a destroy only if their keys do; as for the
        # database's key, a destroy leaves them in AWS.
        kept = pulumi.ResourceOptions(
            parent=self, protect=spec.deletion_protection, retain_on_delete=True
        )

        # Only this stack's log groups: the service's, the database's exports, the VPC
        # flow logs and the WAF's. CloudWatch Logs names the group in the encryption context.
        groups = [
            f"log-group:/drydock/{spec.stack}/*",
            f"log-group:/aws/rds/instance/{n.db_instance}/*",
            f"log-group:{n.waf_log_group}",
        ]
        logs = kms_key(
            f"{name}-logs",
            f"{n.prefix}-logs",
            f"{n.prefix}: CloudWatch log groups",
            tags,
            kept,
            allow=[
                {
                    "Sid": "CloudWatchLogsEncryptsThisStacksGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{spec.region}.amazonaws.com"},
                    "Action": LOGS_ACTIONS,
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": [
                                arn("logs", spec.region, group) for group in groups
                            ]
                        }
                    },
                }
            ],
        )
        topic = kms_key(
            f"{name}-alarm-topic",
            f"{n.prefix}-alarm-topic",
            f"{n.prefix}: the alarm topic's messages",
            tags,
            pulumi.ResourceOptions(parent=self),
            allow=[
                {
                    "Sid": "AlarmsAndBackupFailuresPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": TOPIC_PUBLISHERS},
                    "Action": PUBLISH_ACTIONS,
                    # No source condition: the services do not all pass one to KMS, and a
                    # condition they lack would silence the pager. Who may publish at all
                    # is the topic policy's to say (infra/backup_alerts.py).
                    "Resource": "*",
                }
            ],
        )
        # ECR encrypts layers through a grant it makes with the pusher's IAM permissions;
        # pulls decrypt through the same grant, so the key needs no service statement.
        repository = kms_key(
            f"{name}-repository",
            f"{n.prefix}-repository",
            f"{n.prefix}: the release images",
            tags,
            kept,
        )

        self.logs_key_arn = logs.arn
        self.topic_key_arn = topic.arn
        self.repository_key_arn = repository.arn
        self.register_outputs(
            {"logs": self.logs_key_arn, "topic": topic.arn, "repository": repository.arn}
        )
