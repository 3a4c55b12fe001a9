"""Database: RDS PostgreSQL, private, KMS-encrypted, with backups and a final snapshot.

The master password is generated and rotated by RDS inside Secrets Manager
(`manage_master_user_password`), so it never passes through Pulumi state or outputs.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra._aws import assume_role_policy, kms_key, managed_policy
from infra.names import Names
from infra.network import Network
from infra.spec import EnvironmentSpec

PORT = 5432
LOG_EXPORTS = ("postgresql", "upgrade")


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance
    key_arn: pulumi.Output[str]
    identifier: pulumi.Output[str]
    address: pulumi.Output[str]
    master_secret_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        network: Network,
        logs_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:Database", name, None, opts)
        names = Names(spec.stack)
        tags = names.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)
        # Snapshots outlive the instance (the final one above all), so their key outlives the
        # stack: a destroy leaves it in AWS instead of scheduling its deletion.
        guarded = pulumi.ResourceOptions(
            parent=self, protect=spec.deletion_protection, retain_on_delete=True
        )

        key = kms_key(
            f"{name}-key",
            f"{names.prefix}-database",
            f"{names.prefix}: RDS storage, snapshots, Performance Insights, master secret",
            tags,
            guarded,
        )
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=network.private_subnet_ids,
            description=f"{names.prefix} private subnets",
            tags=tags,
            opts=child,
        )
        major = spec.db_engine_version
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            description=f"{names.prefix}: TLS only, slow statement log",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {
                    "name": "log_min_duration_statement",
                    "value": str(spec.log_min_duration_statement_ms),
                },
            ],
            tags=tags,
            opts=child,
        )
        monitoring = aws.iam.Role(
            f"{name}-monitoring",
            assume_role_policy=assume_role_policy("monitoring.rds.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-monitoring",
            role=monitoring.name,
            policy_arn=managed_policy("service-role/AmazonRDSEnhancedMonitoringRole"),
            opts=child,
        )
        # Created before the instance so RDS does not create them without a retention.
        logs = [
            aws.cloudwatch.LogGroup(
                f"{name}-{export}-logs",
                name=names.db_log_group(export),
                retention_in_days=spec.log_retention_days,
                kms_key_id=logs_key_arn,
                tags=tags,
                opts=child,
            )
            for export in LOG_EXPORTS
        ]

        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=names.db_instance,
            engine="postgres",
            engine_version=major,
            auto_minor_version_upgrade=True,
            instance_class=spec.db_instance_class,
            allocated_storage=spec.db_allocated_storage_gb,
            max_allocated_storage=spec.db_max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_name=spec.db_name,
            username=names.db_admin_user,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key.arn,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[network.db_security_group_id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=spec.multi_az,
            backup_retention_period=spec.backup_retention_days,
            backup_window=spec.backup_window,
            maintenance_window=spec.maintenance_window,
            copy_tags_to_snapshot=True,
            delete_automated_backups=False,
            deletion_protection=spec.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=names.final_snapshot,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=key.arn,
            performance_insights_retention_period=7,
            monitoring_interval=spec.monitoring_interval_seconds,
            monitoring_role_arn=monitoring.arn,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            apply_immediately=False,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, protect=spec.deletion_protection, depends_on=logs
            ),
        )
        self.key_arn = key.arn
        self.identifier = self.instance.identifier
        self.address = self.instance.address
        self.master_secret_arn = self.instance.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn or ""
        )
        self.register_outputs({"identifier": self.identifier, "address": self.address})
