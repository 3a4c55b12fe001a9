"""Audit trail rules: the load balancer logs every request, every VPC logs its flows, and
every resource says which environment class it belongs to."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from infra import environment_class as env_class
from infra.policy.registry import Resource, resource_rule, stack_rule, tags_of
from infra.policy.tokens import FLOW_LOG, LOAD_BALANCERS, VPC


@resource_rule("alb-access-logs", "application load balancers write access logs to S3")
def alb_access_logs(r: Resource) -> Iterator[str]:
    if r.type not in LOAD_BALANCERS or r.props.get("loadBalancerType", "application") != (
        "application"
    ):
        return
    logs = r.props.get("accessLogs") or {}
    if not (logs.get("enabled") is True and logs.get("bucket")):
        yield f"{r.name}: set access_logs enabled=True with a bucket that admits ELB delivery"


@stack_rule("vpc-flow-logs", "every VPC sends all its flows to CloudWatch Logs")
def vpc_flow_logs(resources: Sequence[Resource]) -> Iterator[str]:
    logged = {
        r.props.get("vpcId")
        for r in resources
        if r.type == FLOW_LOG
        and r.props.get("logDestinationType", "cloud-watch-logs") == "cloud-watch-logs"
        and r.props.get("trafficType") == "ALL"
    }
    for vpc in (r for r in resources if r.type == VPC):
        # A policy sees outputs, not ids; a VPC's ARN ends with its id (…:vpc/vpc-0123).
        if str(vpc.props.get("arn")).rsplit("/", 1)[-1] not in logged:
            yield (
                f"{vpc.name}: add an aws.ec2.FlowLog of this VPC, traffic_type ALL, into a "
                "CloudWatch log group"
            )


@stack_rule(
    "environment-class-tag",
    "every tagged resource names its environment class, and the stack has one class",
)
def environment_class_tag(resources: Sequence[Resource]) -> Iterator[str]:
    classes = set()
    for r in resources:
        if not r.props.get("tags"):
            continue  # untagged (or not taggable): its rules treat it as production
        declared = tags_of(r).get(env_class.TAG)
        if declared not in env_class.CLASSES:
            yield (
                f"{r.name}: tag {env_class.TAG} is {declared!r}; allowed: "
                f"{', '.join(env_class.CLASSES)} (Names.tags(spec.environment_class))"
            )
        else:
            classes.add(declared)
    if len(classes) > 1:
        yield f"the stack's resources name several classes: {', '.join(sorted(classes))}"
