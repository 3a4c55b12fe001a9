"""The stack outputs contract: the names `pipelines/targets/aws/environment.py` reads. Pure Python.

Renaming one of these is a breaking change for the aws target; add new keys instead.
No output carries a password: secrets are exported as ARNs only.
"""

from __future__ import annotations

SERVICE_URL = "service_url"
LOAD_BALANCER_DNS_NAME = "load_balancer_dns_name"
CLUSTER_NAME = "cluster_name"
SERVICE_NAME = "service_name"
CONTAINER_NAME = "container_name"
TASK_DEFINITION_FAMILY = "task_definition_family"
MIGRATE_TASK_DEFINITION_FAMILY = "migrate_task_definition_family"
TASK_SUBNET_IDS = "task_subnet_ids"
TASK_SECURITY_GROUP_ID = "task_security_group_id"
DB_INSTANCE_ID = "db_instance_id"
DB_ADDRESS = "db_address"
DB_NAME = "db_name"
DB_MASTER_SECRET_ARN = "db_master_secret_arn"  # noqa: S105 - an output name
APP_DB_SECRET_ARN = "app_db_secret_arn"  # noqa: S105 - an output name
JWT_SECRET_ARN = "jwt_secret_arn"  # noqa: S105 - an output name
BACKUPS_BUCKET = "backups_bucket"
BACKUP_VAULT_NAME = "backup_vault_name"
ALARM_NAMES = "alarm_names"
ALARM_TOPIC_ARN = "alarm_topic_arn"
DASHBOARD_NAME = "dashboard_name"
LOG_GROUP_NAME = "log_group_name"
ECR_REPOSITORY_URL = "ecr_repository_url"
ECR_REPOSITORY_NAME = "ecr_repository_name"
RELEASED_IMAGE = "released_image"
# The role the GitHub environment named like the stack assumes (its AWS_DEPLOY_ROLE_ARN).
GITHUB_DEPLOY_ROLE_ARN = "github_deploy_role_arn"
METRICS_TOKEN_SECRET_ARN = "metrics_token_secret_arn"  # noqa: S105 - an output name
SECURITY_ALARM_NAMES = "security_alarm_names"
# The HTTPS listener's rule for the two probe paths: with a canary, the pipeline makes it
# forward as the production rule does after ECS moves that one.
PROBES_RULE_ARN = "probes_rule_arn"

ALL = (
    SERVICE_URL,
    LOAD_BALANCER_DNS_NAME,
    CLUSTER_NAME,
    SERVICE_NAME,
    CONTAINER_NAME,
    TASK_DEFINITION_FAMILY,
    MIGRATE_TASK_DEFINITION_FAMILY,
    TASK_SUBNET_IDS,
    TASK_SECURITY_GROUP_ID,
    DB_INSTANCE_ID,
    DB_ADDRESS,
    DB_NAME,
    DB_MASTER_SECRET_ARN,
    APP_DB_SECRET_ARN,
    JWT_SECRET_ARN,
    BACKUPS_BUCKET,
    BACKUP_VAULT_NAME,
    ALARM_NAMES,
    ALARM_TOPIC_ARN,
    DASHBOARD_NAME,
    LOG_GROUP_NAME,
    ECR_REPOSITORY_URL,
    ECR_REPOSITORY_NAME,
    RELEASED_IMAGE,
    GITHUB_DEPLOY_ROLE_ARN,
    METRICS_TOKEN_SECRET_ARN,
    SECURITY_ALARM_NAMES,
    PROBES_RULE_ARN,
)
