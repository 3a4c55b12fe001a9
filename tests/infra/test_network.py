"""Network: zones, subnet tiers, NAT per stack, endpoints, and the security-group chain."""

from __future__ import annotations

import pytest

from tests.infra.harness import Stack

pytestmark = pytest.mark.unit

SUBNET = "aws:ec2/subnet:Subnet"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def _tier(stack: Stack, tier: str) -> list:
    return [s for s in stack.of_type(SUBNET) if s.get("tags.tier") == tier]


def test_vpc_spans_the_configured_zones_with_both_tiers(stack: Stack) -> None:
    vpc = stack.one("aws:ec2/vpc:Vpc")
    assert vpc.get("cidrBlock") == stack.spec.vpc_cidr
    assert vpc.get("enableDnsHostnames") is True
    for tier in ("public", "private"):
        subnets = _tier(stack, tier)
        zones = {s.get("availabilityZone") for s in subnets}
        assert len(subnets) == stack.spec.availability_zones >= 2
        assert len(zones) == len(subnets)
        assert all(s.get("mapPublicIpOnLaunch") is False for s in subnets)


def test_alb_is_public_and_tasks_and_database_are_private(stack: Stack) -> None:
    public = {s.id for s in _tier(stack, "public")}
    private = {s.id for s in _tier(stack, "private")}
    assert set(stack.one("aws:lb/loadBalancer:LoadBalancer").get("subnets")) == public
    assert set(stack.one("aws:rds/subnetGroup:SubnetGroup").get("subnetIds")) == private
    service = stack.one("aws:ecs/service:Service")
    assert set(service.get("networkConfiguration.subnets")) == private
    assert service.get("networkConfiguration.assignPublicIp") is False
    assert stack.outputs["task_subnet_ids"] == sorted(private)


def test_nat_gateways_per_stack_and_private_routes_use_them(
    staging: Stack, production: Stack
) -> None:
    assert len(staging.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(production.of_type("aws:ec2/natGateway:NatGateway")) == 3
    for stack in (staging, production):
        nats = {n.id for n in stack.of_type("aws:ec2/natGateway:NatGateway")}
        routes = [r for r in stack.of_type("aws:ec2/route:Route") if r.get("natGatewayId")]
        assert len(routes) == stack.spec.availability_zones
        assert {r.get("natGatewayId") for r in routes} == nats


def test_vpc_endpoints_for_ecr_secrets_logs_and_s3(stack: Stack) -> None:
    prefix = f"com.amazonaws.{stack.spec.region}."
    endpoints = {
        e.get("serviceName").removeprefix(prefix): e
        for e in stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert set(endpoints) == {"ecr.api", "ecr.dkr", "secretsmanager", "logs", "s3"}
    private = {s.id for s in _tier(stack, "private")}
    for service, endpoint in endpoints.items():
        if service == "s3":
            assert endpoint.get("vpcEndpointType") == "Gateway"
            assert len(endpoint.get("routeTableIds")) == stack.spec.availability_zones
        else:
            assert endpoint.get("vpcEndpointType") == "Interface"
            assert endpoint.get("privateDnsEnabled") is True
            assert set(endpoint.get("subnetIds")) == private


def _group(stack: Stack, resource_id: str | None) -> str | None:
    if resource_id is None:
        return None
    return stack.by_id(resource_id).name.removeprefix("network-").removesuffix("-sg")


def test_security_groups_open_exactly_the_chain_and_nothing_else(stack: Stack) -> None:
    port = stack.spec.container_port
    for group in stack.of_type(SG):
        assert not group.get("ingress"), group.name
        assert not group.get("egress"), group.name
    default = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not default.get("ingress")
    assert not default.get("egress")

    def rules(token: str) -> set[tuple]:
        return {
            (
                _group(stack, r.get("securityGroupId")),
                r.get("ipProtocol"),
                r.get("fromPort"),
                r.get("toPort"),
                r.get("cidrIpv4") or _group(stack, r.get("referencedSecurityGroupId")),
            )
            for r in stack.of_type(token)
        }

    assert rules(INGRESS) == {
        ("alb", "tcp", 443, 443, "0.0.0.0/0"),
        ("alb", "tcp", 80, 80, "0.0.0.0/0"),
        ("tasks", "tcp", port, port, "alb"),
        ("db", "tcp", 5432, 5432, "tasks"),
        ("endpoints", "tcp", 443, 443, "tasks"),
    }
    assert rules(EGRESS) == {
        ("alb", "tcp", port, port, "tasks"),
        ("tasks", "tcp", 5432, 5432, "db"),
        ("tasks", "tcp", 443, 443, "0.0.0.0/0"),
    }


def test_http_on_the_alb_only_redirects(stack: Stack) -> None:
    http = stack.one("aws:lb/listener:Listener", "ingress-http")
    assert http.get("port") == 80
    (action,) = http.get("defaultActions")
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}
