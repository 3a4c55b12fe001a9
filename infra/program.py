"""The Pulumi program as a factory: `build(spec)` declares one stack and returns its outputs.

A function rather than module-level code so that tests can build staging and production in
one process under Pulumi's mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi

from infra import outputs as out
from infra.alarms import Alarms, SecurityAlarms
from infra.app_secrets import Secrets
from infra.audit_logs import AuditLogs
from infra.backup_alerts import BackupAlerts
from infra.backups import Backups
from infra.container_service import ContainerService
from infra.database import Database
from infra.dr_backups import DisasterRecovery
from infra.github_oidc import GithubOidc
from infra.keys import EncryptionKeys
from infra.load_balancer import LoadBalancer
from infra.names import Names
from infra.network import Network
from infra.spec import EnvironmentSpec, require_for_aws
from infra.web_firewall import WebFirewall


def build(spec: EnvironmentSpec) -> dict[str, Any]:
    """Declare every resource of the stack `spec` describes; return the outputs contract."""
    for warning in require_for_aws(spec):
        pulumi.log.warn(warning)
    n = Names(spec.stack)
    keys = EncryptionKeys("keys", spec)
    network = Network("network", spec)
    audit = AuditLogs("audit", spec, network, keys.logs_key_arn)
    database = Database("database", spec, network, keys.logs_key_arn)
    secrets = Secrets("secrets", spec, database)
    dr = DisasterRecovery("dr", spec, spec.dr_region) if spec.dr_region else None
    backups = Backups("backups", spec, database, audit, dr)
    load_balancer = LoadBalancer("ingress", spec, network, audit)
    WebFirewall("firewall", spec, load_balancer, keys.logs_key_arn)
    alarms = Alarms("alarms", spec, load_balancer, database.identifier, keys.topic_key_arn)
    BackupAlerts("backup-alerts", spec, backups, alarms.topic_arn)
    service = ContainerService(
        "service",
        spec,
        network,
        load_balancer,
        secrets,
        database,
        keys,
        alarms.deployment_alarm_names,
    )
    ci = GithubOidc(
        "github-oidc", spec, service.role_arns, backups.bucket_arn, load_balancer.probes_rule_arn
    )
    security_alarms = SecurityAlarms(
        "security-alarms", spec, service.log_group_name, alarms.topic_arn
    )
    host = spec.domain_name or load_balancer.dns_name
    result: dict[str, Any] = {
        out.SERVICE_URL: pulumi.Output.concat("https://", host),
        out.LOAD_BALANCER_DNS_NAME: load_balancer.dns_name,
        out.CLUSTER_NAME: service.cluster_name,
        out.SERVICE_NAME: n.service,
        out.CONTAINER_NAME: n.container,
        out.TASK_DEFINITION_FAMILY: n.task_family,
        out.MIGRATE_TASK_DEFINITION_FAMILY: n.migrate_family,
        out.TASK_SUBNET_IDS: network.private_subnet_ids,
        out.TASK_SECURITY_GROUP_ID: network.task_security_group_id,
        out.DB_INSTANCE_ID: database.identifier,
        out.DB_ADDRESS: database.address,
        out.DB_NAME: spec.db_name,
        out.DB_MASTER_SECRET_ARN: database.master_secret_arn,
        out.APP_DB_SECRET_ARN: secrets.app_db_arn,
        out.JWT_SECRET_ARN: secrets.jwt_arn,
        out.BACKUPS_BUCKET: backups.bucket_name,
        out.BACKUP_VAULT_NAME: backups.vault_name,
        out.ALARM_NAMES: alarms.names,
        out.ALARM_TOPIC_ARN: alarms.topic_arn,
        out.DASHBOARD_NAME: n.dashboard,
        out.LOG_GROUP_NAME: service.log_group_name,
        out.ECR_REPOSITORY_URL: service.repository_url,
        out.ECR_REPOSITORY_NAME: service.repository_name,
        out.RELEASED_IMAGE: spec.image or "",
        out.GITHUB_DEPLOY_ROLE_ARN: ci.role_arn,
        out.METRICS_TOKEN_SECRET_ARN: secrets.metrics_arn,
        out.SECURITY_ALARM_NAMES: security_alarms.names,
        out.PROBES_RULE_ARN: load_balancer.probes_rule_arn,
    }
    return result
