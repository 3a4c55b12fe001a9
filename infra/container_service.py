"""ContainerService: ECR, the ECS cluster, task definitions, the Fargate service and its scaling.

Until a release image is configured (`drydock:image`), only the repository, cluster, roles and
log group exist: the first `pulumi up` makes the repository the pipeline pushes to.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra._aws import assume_role_policy, managed_policy, policy_document
from infra.app_secrets import Secrets
from infra.database import Database
from infra.keys import EncryptionKeys
from infra.load_balancer import LoadBalancer
from infra.names import Names
from infra.network import Network
from infra.spec import EnvironmentSpec
from infra.task_definitions import app_container, migrate_container


class ContainerService(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    role_arns: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        network: Network,
        load_balancer: LoadBalancer,
        secrets: Secrets,
        database: Database,
        keys: EncryptionKeys,
        deployment_alarm_names: pulumi.Input[list[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:ContainerService", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=n.repository,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[
                {"encryption_type": "KMS", "kms_key": keys.repository_key_arn}
            ],
            force_delete=False,
            tags=tags,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=repository.name,
            policy=json.dumps({"rules": _lifecycle_rules(spec.ecr_images_kept)}),
            opts=child,
        )
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=n.cluster,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            tags=tags,
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=n.log_group,
            retention_in_days=spec.log_retention_days,
            kms_key_id=keys.logs_key_arn,
            tags=tags,
            opts=child,
        )

        def execution_role(
            role: str, secret_arns: list[pulumi.Output[str]], key_arns: list[pulumi.Output[str]]
        ) -> aws.iam.Role:
            # Pulls the image and writes logs (managed policy), reads exactly these secrets.
            exec_role = aws.iam.Role(
                f"{name}-{role}-execution",
                assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
                tags=tags,
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-{role}-execution",
                role=exec_role.name,
                policy_arn=managed_policy("service-role/AmazonECSTaskExecutionRolePolicy"),
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-{role}-secrets",
                role=exec_role.id,
                policy=policy_document(
                    {
                        "Sid": "ReadTaskSecrets",
                        "Effect": "Allow",
                        "Action": "secretsmanager:GetSecretValue",
                        "Resource": secret_arns,
                    },
                    {
                        "Sid": "DecryptTaskSecrets",
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": key_arns,
                        "Condition": {
                            "StringEquals": {
                                "kms:ViaService": f"secretsmanager.{spec.region}.amazonaws.com"
                            }
                        },
                    },
                ),
                opts=child,
            )
            return exec_role

        app_execution = execution_role(
            "api", [secrets.app_db_arn, secrets.jwt_arn, secrets.metrics_arn], [secrets.key_arn]
        )
        migrate_execution = execution_role(
            "migrate",
            [secrets.app_db_arn, database.master_secret_arn],
            [secrets.key_arn, database.key_arn],
        )
        task_role = aws.iam.Role(
            f"{name}-task",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        if spec.ecs_exec:
            aws.iam.RolePolicy(
                f"{name}-task-exec",
                role=task_role.id,
                policy=policy_document(
                    {
                        "Sid": "EcsExec",
                        "Effect": "Allow",
                        "Action": [
                            "ssmmessages:CreateControlChannel",
                            "ssmmessages:CreateDataChannel",
                            "ssmmessages:OpenControlChannel",
                            "ssmmessages:OpenDataChannel",
                        ],
                        "Resource": "*",
                    }
                ),
                opts=child,
            )

        self.repository_url = repository.repository_url
        self.repository_name = repository.name
        self.cluster_name = cluster.name
        self.log_group_name = log_group.name
        # The roles its task definitions name: those a deployer passes to ECS.
        self.role_arns = [app_execution.arn, migrate_execution.arn, task_role.arn]
        if spec.image is not None:

            def task_definition(
                suffix: str, family: str, role: aws.iam.Role, container: dict[str, Any]
            ) -> aws.ecs.TaskDefinition:
                return aws.ecs.TaskDefinition(
                    f"{name}-{suffix}",
                    family=family,
                    cpu=str(spec.cpu),
                    memory=str(spec.memory),
                    network_mode="awsvpc",
                    requires_compatibilities=["FARGATE"],
                    runtime_platform={
                        "operating_system_family": "LINUX",
                        "cpu_architecture": "X86_64",
                    },
                    execution_role_arn=role.arn,
                    task_role_arn=task_role.arn,
                    volumes=[{"name": "tmp"}],
                    container_definitions=pulumi.Output.json_dumps([container]),
                    tags=tags,
                    opts=child,
                )

            logs = log_group.name
            task = task_definition(
                "task",
                n.task_family,
                app_execution,
                app_container(
                    spec,
                    spec.image,
                    logs,
                    secrets.app_db_arn,
                    secrets.jwt_arn,
                    secrets.metrics_arn,
                ),
            )
            task_definition(
                "migrate-task",
                n.migrate_family,
                migrate_execution,
                migrate_container(
                    spec, spec.image, logs, secrets.app_db_arn, database.master_secret_arn
                ),
            )
            self._service(name, spec, cluster, task, network, load_balancer, deployment_alarm_names)
        self.register_outputs({"repository_url": self.repository_url, "cluster": self.cluster_name})

    def _load_balancer_role(self, name: str, spec: EnvironmentSpec) -> aws.iam.Role:
        """What ECS assumes to move the production rule's weights and register tasks."""
        role = aws.iam.Role(
            f"{name}-load-balancer",
            assume_role_policy=assume_role_policy("ecs.amazonaws.com"),
            tags=Names(spec.stack).tags(spec.environment_class),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-load-balancer",
            role=role.name,
            policy_arn=managed_policy("AmazonECSInfrastructureRolePolicyForLoadBalancers"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role

    def _service(
        self,
        name: str,
        spec: EnvironmentSpec,
        cluster: aws.ecs.Cluster,
        task: aws.ecs.TaskDefinition,
        network: Network,
        load_balancer: LoadBalancer,
        deployment_alarm_names: pulumi.Input[list[str]],
    ) -> None:
        n = Names(spec.stack)
        deployment: aws.ecs.ServiceDeploymentConfigurationArgs | None = None
        advanced = None
        alternate, rule = (
            load_balancer.alternate_target_group_arn,
            load_balancer.production_rule_arn,
        )
        if alternate is not None and rule is not None:  # drydock:rolloutStrategy=canary
            advanced = aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
                alternate_target_group_arn=alternate,
                production_listener_rule=rule,
                role_arn=self._load_balancer_role(name, spec).arn,
            )
            # ECS shifts the first share, holds it for a stage, shifts the rest, then keeps
            # the old tasks through the bake so that a rollback is a weight change. The
            # deployment alarms below roll it back by themselves (runbook §7).
            deployment = aws.ecs.ServiceDeploymentConfigurationArgs(
                strategy="CANARY",
                canary_configuration=aws.ecs.ServiceDeploymentConfigurationCanaryConfigurationArgs(
                    canary_percent=float(spec.canary_steps[0]),
                    canary_bake_time_in_minutes=str(spec.canary_step_seconds // 60),
                ),
                bake_time_in_minutes=str(spec.bake_window_seconds // 60),
            )
        service = aws.ecs.Service(
            f"{name}-service",
            name=n.service,
            cluster=cluster.arn,
            task_definition=task.arn,
            desired_count=spec.desired_count,
            launch_type="FARGATE",
            platform_version="LATEST",
            # Never below the desired count during a rollout; new tasks start beside the old.
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_configuration=deployment,
            alarms={"alarm_names": deployment_alarm_names, "enable": True, "rollback": True},
            health_check_grace_period_seconds=spec.health_check_grace_period_seconds,
            enable_execute_command=spec.ecs_exec,
            network_configuration={
                "subnets": network.private_subnet_ids,
                "security_groups": [network.task_security_group_id],
                "assign_public_ip": False,
            },
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=load_balancer.target_group_arn,
                    container_name=n.container,
                    container_port=spec.container_port,
                    advanced_configuration=advanced,
                )
            ],
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            tags=n.tags(spec.environment_class),
            # Autoscaling owns the running count after creation.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[load_balancer.https_listener],
                ignore_changes=["desiredCount"],
            ),
        )
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=spec.min_count,
            max_capacity=spec.max_count,
            opts=pulumi.ResourceOptions(parent=self),
        )
        policies = {
            "cpu": (spec.scale_cpu_percent, "ECSServiceAverageCPUUtilization", None),
            "requests": (
                spec.scale_requests_per_target,
                "ALBRequestCountPerTarget",
                pulumi.Output.concat(
                    load_balancer.arn_suffix, "/", load_balancer.target_group_arn_suffix
                ),
            ),
        }
        for metric, (value, metric_type, label) in policies.items():
            aws.appautoscaling.Policy(
                f"{name}-scale-on-{metric}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration={
                    "target_value": value,
                    "predefined_metric_specification": {
                        "predefined_metric_type": metric_type,
                        "resource_label": label,
                    },
                    "scale_out_cooldown": 60,
                    "scale_in_cooldown": 300,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )


def _lifecycle_rules(images_kept: int) -> list[dict[str, object]]:
    return [
        {
            "rulePriority": 1,
            "description": "expire untagged layers after a week",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"keep the newest {images_kept} images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": images_kept,
            },
            "action": {"type": "expire"},
        },
    ]
