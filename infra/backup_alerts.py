"""BackupAlerts: a backup or copy job that fails pages the alarm topic, like an alarm.

AWS Backup reports each job's state to EventBridge. One rule matches this stack's jobs
that end badly (a backup into its vault, a copy out of it) and publishes them to the
alarm topic. Vault notifications cannot do it: `BACKUP_JOB_FAILED` is among the events
AWS lists as deprecated, which are accepted and never sent.

The topic's policy is declared here, because this is where a second publisher arrives:
CloudWatch alarms of this account, and this rule, may publish. It grants services only:
the account's own principals reach the topic through their IAM policies, as for any
resource, so naming the account here would add nothing.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import account_id, arn, policy_document
from infra.backups import Backups
from infra.names import Names
from infra.spec import EnvironmentSpec

FAILED = ["FAILED", "ABORTED", "EXPIRED"]


def event_pattern(vault_name: str, vault_arn: str) -> dict[str, object]:
    """Backup jobs into the vault, and copy jobs out of it, that did not complete."""
    return {
        "source": ["aws.backup"],
        "detail-type": ["Backup Job State Change", "Copy Job State Change"],
        "detail": {
            "state": FAILED,
            "$or": [{"backupVaultName": [vault_name]}, {"sourceBackupVaultArn": [vault_arn]}],
        },
    }


class BackupAlerts(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        backups: Backups,
        topic_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:BackupAlerts", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        rule = aws.cloudwatch.EventRule(
            f"{name}-failed-jobs",
            name=f"{n.prefix}-backup-job-failed",
            description=f"{n.prefix}: a backup or copy job of the database did not complete",
            event_pattern=pulumi.Output.json_dumps(
                pulumi.Output.all(backups.vault_name, backups.vault_arn).apply(
                    lambda v: event_pattern(v[0], v[1])
                )
            ),
            tags=tags,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-page",
            rule=rule.name,
            arn=topic_arn,
            # A line a person can act on, not the raw event.
            input_transformer={
                "input_paths": {
                    "type": "$.detail-type",
                    "state": "$.detail.state",
                    "message": "$.detail.statusMessage",
                    "time": "$.time",
                },
                "input_template": (
                    f'"{n.prefix}: AWS Backup <type> <state> at <time>: <message>. '
                    f'See docs/RUNBOOK.md (backups out of reach)."'
                ),
            },
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=topic_arn,
            policy=policy_document(
                {
                    "Sid": "ThisAccountsAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {
                        "ArnLike": {"aws:SourceArn": arn("cloudwatch", spec.region, "alarm:*")},
                        "StringEquals": {"aws:SourceAccount": account_id()},
                    },
                },
                {
                    "Sid": "FailedBackupJobsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn}},
                },
            ),
            opts=child,
        )
        self.register_outputs({"rule": rule.name})
