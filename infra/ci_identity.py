"""CI's AWS identity as documents: whom a stack's deploy role trusts and what it may do.

Pure Python, so that the tests and the workflow checks read the same values the Pulumi
component (`github_oidc.py`) declares. The permissions are the README's list ("The deploying
identity needs these permissions"), each scoped to the stack's own resources where IAM
can scope the action; the few that take no resource in IAM are granted on "*".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.names import Names

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
# Longest deploy job (production, 215 min) plus margin: the workflow asks for each job's
# whole time limit, and a session cannot outlast the role's maximum.
MAX_SESSION_S = 4 * 3600
LEDGER_ENVIRONMENT = "production"  # the ledger lives in production's backups bucket
LOCK_PREFIX = "locks"  # pipelines/targets/aws/s3.py: locks/<env>.json, ledger/<env>/...
LEDGER_PREFIX = "ledger"


def subject(repository: str, environment: str) -> str:
    """The `sub` GitHub puts in a token of a job that declares `environment:`."""
    return f"repo:{repository}:environment:{environment}"


def provider_arn(partition: str, account: str) -> str:
    """IAM names an account's GitHub provider after its URL: one ARN per account."""
    return f"arn:{partition}:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}"


def trust_policy(provider: str, repository: str, environment: str) -> dict[str, Any]:
    """Only tokens for this repository's `environment`, meant for STS: exact values, no
    pattern, so no other environment, branch, pull request or repository matches."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GithubEnvironmentOnly",
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subject(repository, environment),
                    }
                },
            }
        ],
    }


@dataclass(frozen=True)
class Scope:
    """Where one stack's resources are: what the permissions are scoped to."""

    stack: str
    partition: str
    region: str
    account: str
    backups_bucket_arn: str
    probes_rule_arn: str  # the listener rule a canary deployment keeps beside the production one
    task_role_arns: tuple[str, ...]  # the task and execution roles its task definitions name

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    @property
    def ledger_bucket_arn(self) -> str:
        """Production's backups bucket: this stack's own, or found by its name prefix (the
        `Backups` component names it `<prefix>-backups-<suffix>`)."""
        if self.stack == LEDGER_ENVIRONMENT:
            return self.backups_bucket_arn
        return f"arn:{self.partition}:s3:::{Names(LEDGER_ENVIRONMENT).prefix}-backups-*"

    @property
    def backups_key_aliases(self) -> list[str]:
        """The aliases of the keys of the buckets it writes (`Backups` aliases each key)."""
        stacks = dict.fromkeys([self.stack, LEDGER_ENVIRONMENT])
        return [f"alias/{Names(stack).prefix}-backups" for stack in stacks]


def _allow(sid: str, actions: list[str], resources: Any, **condition: Any) -> dict[str, Any]:
    statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    return statement | ({"Condition": condition} if condition else {})


def permissions(scope: Scope) -> dict[str, Any]:
    """The deploy role's policy: steps 3-7 of the deploy and the release image's push, in
    the README's order (ECS, RDS, monitoring, Secrets Manager, the buckets, ECR)."""
    n = Names(scope.stack)
    statements = [
        *_ecs(scope, n),
        _allow(
            "SnapshotItsDatabase",
            [
                "rds:CreateDBSnapshot",
                "rds:DescribeDBSnapshots",
                "rds:DescribeDBInstances",
                "rds:AddTagsToResource",
                "rds:ListTagsForResource",
            ],
            [
                scope.arn("rds", f"db:{n.db_instance}"),
                scope.arn("rds", f"snapshot:{n.db_instance}-*"),
            ],
        ),
        _allow(  # each deploy prunes pre-deploy snapshots to preDeploySnapshotsKept
            "PruneItsSnapshots",
            ["rds:DeleteDBSnapshot"],
            scope.arn("rds", f"snapshot:{n.db_instance}-*"),
        ),
        _allow(
            "ReadItsLogs",
            ["logs:FilterLogEvents", "logs:GetLogEvents"],
            scope.arn("logs", f"log-group:{n.log_group}:*"),
        ),
        _allow(
            "MetricsAndLoadBalancerReadsTakeNoResource",
            [
                "cloudwatch:GetMetricData",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeRules",
            ],
            "*",
        ),
        # A canary deployment: the probes rule follows the weights ECS gives the production
        # rule (pipelines/targets/aws/canary.py). This one rule, nothing else on the listener.
        _allow(
            "ProbesFollowTheProductionRule",
            ["elasticloadbalancing:ModifyRule"],
            scope.probes_rule_arn,
        ),
        # By name: the pipeline asks for its stack's alarms (AlarmNames), all named so.
        _allow(
            "ReadItsAlarms",
            ["cloudwatch:DescribeAlarms"],
            scope.arn("cloudwatch", f"alarm:{n.prefix}-*"),
        ),
        _allow(
            "ItsOwnSecrets",
            [
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
            ],
            scope.arn("secretsmanager", f"secret:drydock/{scope.stack}/*"),
        ),
        *_buckets(scope),
        _allow(
            "PushReleasesToItsRepository",
            [
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",  # steps 5-7 read the revision label
            ],
            scope.arn("ecr", f"repository/{n.repository}"),
        ),
        _allow("EcrLoginTakesNoResource", ["ecr:GetAuthorizationToken"], "*"),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def _ecs(scope: Scope, n: Names) -> list[dict[str, Any]]:
    cluster = scope.arn("ecs", f"cluster/{n.cluster}")
    revisions = [
        scope.arn("ecs", f"task-definition/{family}:*")
        for family in (n.task_family, n.migrate_family)
    ]
    return [
        _allow(
            "RollOutItsService",
            ["ecs:DescribeServices", "ecs:UpdateService", "ecs:ListServiceDeployments"],
            scope.arn("ecs", f"service/{n.cluster}/{n.service}"),
        ),
        # The native canary: followed to its end, and stopped with a rollback when the
        # pipeline's comparison of the two target groups fails.
        _allow(
            "FollowAndStopItsDeployments",
            ["ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"],
            scope.arn("ecs", f"service-deployment/{n.cluster}/{n.service}/*"),
        ),
        _allow(
            "RunItsMigrateTaskInItsCluster",
            ["ecs:RunTask"],
            revisions[1],
            ArnEquals={"ecs:cluster": cluster},
        ),
        _allow("WatchItsTasks", ["ecs:DescribeTasks"], scope.arn("ecs", f"task/{n.cluster}/*")),
        _allow("MarkItsRevisions", ["ecs:TagResource"], revisions),
        _allow(
            "TaskDefinitionsTakeNoResource",
            [
                "ecs:RegisterTaskDefinition",
                "ecs:DescribeTaskDefinition",
                "ecs:ListTaskDefinitions",
            ],
            "*",
        ),
        # IAM names container instances as ListTasks' resource, which Fargate has none of;
        # the cluster condition is how ECS scopes it (its developer guide's own example).
        _allow("ListItsClustersTasks", ["ecs:ListTasks"], "*", ArnEquals={"ecs:cluster": cluster}),
        _allow(
            "PassItsTaskRolesToEcsOnly",
            ["iam:PassRole"],
            list(scope.task_role_arns),
            StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"},
        ),
    ]


def _buckets(scope: Scope) -> list[dict[str, Any]]:
    """Its deploy lock in its own bucket; the ledger, read whole and appended to only under
    its environment; the buckets' keys, only as S3 uses them."""
    bucket, ledger = scope.backups_bucket_arn, scope.ledger_bucket_arn
    # Found by name, the ledger's bucket must also be in this account: names are global.
    in_account = {"aws:ResourceAccount": scope.account}
    # Listing its own bucket lets a missing lock read as NoSuchKey, not AccessDenied.
    listing = [_allow("ListItsBucket", ["s3:ListBucket"], bucket)]
    if ledger != bucket:
        listing.append(
            _allow(
                "ListTheLedger",
                ["s3:ListBucket"],
                ledger,
                StringLike={"s3:prefix": f"{LEDGER_PREFIX}/*"},
                StringEquals=in_account,
            )
        )
    return [
        *listing,
        _allow(
            "TakeAndReleaseItsDeployLock",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            f"{bucket}/{LOCK_PREFIX}/{scope.stack}.json",
        ),
        _allow(
            "ReadTheLedger",
            ["s3:GetObject"],
            f"{ledger}/{LEDGER_PREFIX}/*",
            StringEquals=in_account,
        ),
        _allow(
            "AppendItsEnvironmentToTheLedger",
            ["s3:PutObject"],
            f"{ledger}/{LEDGER_PREFIX}/{scope.stack}/*",
            StringEquals=in_account,
        ),
        _allow(
            "TheBucketKeysThroughS3Only",
            ["kms:GenerateDataKey", "kms:Decrypt"],
            scope.arn("kms", "key/*"),
            StringEquals={"kms:ViaService": f"s3.{scope.region}.amazonaws.com"},
            **{"ForAnyValue:StringEquals": {"kms:ResourceAliases": scope.backups_key_aliases}},
        ),
    ]
