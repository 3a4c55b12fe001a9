"""LoadBalancer: the public ALB, its HTTPS and redirecting HTTP listeners, and the target group.

Part of the container service; a component of its own so that the SLO alarms (which need the
ALB's metric dimensions) exist before the ECS service that names them as deployment alarms.

The HTTPS listener answers every /api/_internal path except the two probes with a fixed 404
(the service guards them with METRICS_TOKEN as well): metrics, flags and whatever is added
there later are for the VPC, never for the internet. The policy pack's
`internal-routes-closed` rule checks it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.audit_logs import ALB_PREFIX, AuditLogs
from infra.names import Names
from infra.network import Network
from infra.spec import EnvironmentSpec

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
INTERNAL_PREFIX = "/api/_internal"
# Path patterns are compared case-sensitively with the path as sent, and the service decodes
# it: `%5F` and `%2F` spellings of the prefix reach the same routes. Without a slash after the
# prefix, `/api/_internal*` also covers `/api/_internal%2Fmetrics`.
CLOSED_PATTERNS = (f"{INTERNAL_PREFIX}*", "/api/%5Finternal*", "/api/%5finternal*")
PROBES_PRIORITY, CLOSED_PRIORITY, PRODUCTION_PRIORITY = 10, 20, 30
NOT_FOUND_BODY = json.dumps({"error": {"code": "not_found", "message": "not found"}})


class LoadBalancer(pulumi.ComponentResource):
    arn: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    https_listener: aws.lb.Listener
    # With drydock:rolloutStrategy=canary: the second target group ECS starts a release in,
    # and the rule whose weights it moves between the two (None with a rolling strategy).
    alternate_target_group_arn: pulumi.Output[str] | None
    production_rule_arn: pulumi.Output[str] | None
    # The rule that forwards the two probe paths (and, with a canary, follows the production
    # rule's weights).
    probes_rule_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        network: Network,
        audit: AuditLogs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:LoadBalancer", name, None, opts)
        names = Names(spec.stack)
        tags = names.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=network.public_subnet_ids,
            security_groups=[network.alb_security_group_id],
            drop_invalid_header_fields=True,
            # Every forwarded request carries X-Forwarded-For, so one without it from inside
            # the VPC is the ALB's own health check, which the service exempts from its
            # per-source limit (service/middleware.py). "remove" would exempt everyone.
            xff_header_processing_mode="append",
            desync_mitigation_mode="defensive",
            enable_http2=True,
            idle_timeout=60,
            enable_deletion_protection=spec.deletion_protection,
            # Every request, into the audit bucket (infra/audit_logs.py).
            access_logs={"bucket": audit.bucket, "prefix": ALB_PREFIX, "enabled": True},
            tags={**tags, "Name": names.prefix},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[audit.delivery_policy]),
        )

        def group(resource_name: str) -> aws.lb.TargetGroup:
            return aws.lb.TargetGroup(
                resource_name,
                target_type="ip",
                protocol="HTTP",
                port=spec.container_port,
                vpc_id=network.vpc_id,
                deregistration_delay=spec.deregistration_delay_seconds,
                health_check={
                    "enabled": True,
                    "protocol": "HTTP",
                    "port": "traffic-port",
                    "path": spec.readiness_path,
                    "matcher": "200",
                    "interval": spec.health_check_interval_seconds,
                    "timeout": spec.health_check_timeout_seconds,
                    "healthy_threshold": spec.healthy_threshold,
                    "unhealthy_threshold": spec.unhealthy_threshold,
                },
                tags=tags,
                opts=child,
            )

        target_group = group(f"{name}-tg")
        self.https_listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=spec.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
            tags=tags,
            opts=child,
        )
        aws.lb.ListenerRule(
            f"{name}-internal-closed",
            listener_arn=self.https_listener.arn,
            priority=CLOSED_PRIORITY,
            conditions=[{"path_pattern": {"values": list(CLOSED_PATTERNS)}}],
            actions=[
                {
                    "type": "fixed-response",
                    "fixed_response": {
                        "status_code": "404",
                        "content_type": "application/json",
                        "message_body": NOT_FOUND_BODY,
                    },
                }
            ],
            tags=tags,
            opts=child,
        )
        self.alternate_target_group_arn = self.production_rule_arn = None
        forward: dict[str, object] = {"type": "forward", "target_group_arn": target_group.arn}
        probes_opts = child
        if spec.rollout_strategy == "canary":
            alternate = group(f"{name}-tg-alternate")
            forward = {
                "type": "forward",
                "forward": {
                    "target_groups": [
                        {"arn": target_group.arn, "weight": 100},
                        {"arn": alternate.arn, "weight": 0},
                    ]
                },
            }
            # Everything the rules above do not answer. ECS's native canary moves this
            # rule's weights during a deployment (and swaps the groups' roles after one),
            # so Pulumi leaves its actions to ECS once created.
            production = aws.lb.ListenerRule(
                f"{name}-production",
                listener_arn=self.https_listener.arn,
                priority=PRODUCTION_PRIORITY,
                conditions=[{"path_pattern": {"values": ["/*"]}}],
                actions=[forward],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["actions"]),
            )
            self.alternate_target_group_arn = alternate.arn
            self.production_rule_arn = production.arn
            # ECS moves the production rule only; the pipeline copies its weights onto the
            # probes rule at each stage of a deployment (pipelines/targets/aws/canary.py), so
            # the probes never point at a group ECS has emptied.
            probes_opts = pulumi.ResourceOptions(parent=self, ignore_changes=["actions"])
        # Rules are evaluated by ascending priority: the probes first, then the closed prefix,
        # then (canary) the production rule; the rest falls through to the default forward.
        probes = aws.lb.ListenerRule(
            f"{name}-probes",
            listener_arn=self.https_listener.arn,
            priority=PROBES_PRIORITY,
            conditions=[{"path_pattern": {"values": [spec.readiness_path, spec.liveness_path]}}],
            actions=[forward],
            tags=tags,
            opts=probes_opts,
        )
        self.probes_rule_arn = probes.arn
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {
                    "type": "redirect",
                    "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"},
                }
            ],
            tags=tags,
            opts=child,
        )

        self.arn = alb.arn
        self.dns_name = alb.dns_name
        self.arn_suffix = alb.arn_suffix
        self.target_group_arn = target_group.arn
        self.target_group_arn_suffix = target_group.arn_suffix
        self.register_outputs({"dns_name": self.dns_name})
