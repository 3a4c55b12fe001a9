"""Network: a VPC over 2-3 zones, public subnets for the ALB, private ones for tasks and the DB.

Security groups form a chain and nothing else is open: internet -> ALB (443, and 80 only to
redirect) -> tasks (container port) -> database (5432). Tasks leave the VPC on 443 only.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from infra.names import Names
from infra.spec import EnvironmentSpec

ANYWHERE = "0.0.0.0/0"
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "secretsmanager", "logs")


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    alb_security_group_id: pulumi.Output[str]
    task_security_group_id: pulumi.Output[str]
    db_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, spec: EnvironmentSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("drydock:infra:Network", name, None, opts)
        names = Names(spec.stack)
        tags = names.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        ).names
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=spec.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # interface endpoints need private DNS
            tags={**tags, "Name": names.prefix},
            opts=child,
        )
        # The VPC's default group allows all traffic between its members: strip it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=tags, opts=child)

        blocks = list(ipaddress.ip_network(spec.vpc_cidr).subnets(prefixlen_diff=4))
        public, private = [], []
        for i in range(spec.availability_zones):
            zone = zones[i]
            public.append(
                aws.ec2.Subnet(
                    f"{name}-public-{i}",
                    vpc_id=vpc.id,
                    cidr_block=str(blocks[i]),
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={**tags, "Name": f"{names.prefix}-public-{i}", "tier": "public"},
                    opts=child,
                )
            )
            private.append(
                aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=vpc.id,
                    cidr_block=str(blocks[8 + i]),
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={**tags, "Name": f"{names.prefix}-private-{i}", "tier": "private"},
                    opts=child,
                )
            )

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, tags=tags, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block=ANYWHERE,
            gateway_id=igw.id,
            opts=child,
        )
        for i, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
            )

        # One NAT in staging saves money; one per zone in production survives a zone outage.
        nats = []
        for i in range(spec.nat_gateways):
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags=tags, opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public[i].id,
                    tags={**tags, "Name": f"{names.prefix}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        private_rts = []
        for i, subnet in enumerate(private):
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=vpc.id, tags=tags, opts=child)
            aws.ec2.Route(
                f"{name}-private-default-{i}",
                route_table_id=rt.id,
                destination_cidr_block=ANYWHERE,
                nat_gateway_id=nats[i % len(nats)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            private_rts.append(rt)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            # No inline rules: every rule is a separate resource below, so none is implicit.
            return aws.ec2.SecurityGroup(
                f"{name}-{role}-sg",
                vpc_id=vpc.id,
                description=description,
                revoke_rules_on_delete=True,
                tags={**tags, "Name": f"{names.prefix}-{role}"},
                opts=child,
            )

        alb = group("alb", "drydock load balancer")
        tasks = group("tasks", "drydock service tasks")
        db = group("db", "drydock PostgreSQL")
        endpoints = group("endpoints", "drydock VPC interface endpoints")

        def allow(
            direction: str,
            rule: str,
            sg: aws.ec2.SecurityGroup,
            port: int,
            cidr: str | None = None,
            peer: aws.ec2.SecurityGroup | None = None,
        ) -> None:
            kind = {
                "in": aws.vpc.SecurityGroupIngressRule,
                "out": aws.vpc.SecurityGroupEgressRule,
            }[direction]
            kind(
                f"{name}-{rule}",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=cidr,
                referenced_security_group_id=peer.id if peer else None,
                description=rule,
                opts=child,
            )

        port = spec.container_port
        allow("in", "alb-https-from-internet", alb, 443, cidr=ANYWHERE)
        allow("in", "alb-http-redirect-from-internet", alb, 80, cidr=ANYWHERE)
        allow("out", "alb-to-tasks", alb, port, peer=tasks)
        allow("in", "tasks-from-alb", tasks, port, peer=alb)
        allow("out", "tasks-to-db", tasks, 5432, peer=db)
        allow("out", "tasks-https-out", tasks, 443, cidr=ANYWHERE)
        allow("in", "db-from-tasks", db, 5432, peer=tasks)
        allow("in", "endpoints-from-tasks", endpoints, 443, peer=tasks)

        # Image pulls, secrets and logs stay inside the VPC instead of crossing the NAT.
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{spec.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[endpoints.id],
                tags={**tags, "Name": f"{names.prefix}-{service}"},
                opts=child,
            )
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{spec.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags={**tags, "Name": f"{names.prefix}-s3"},
            opts=child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.alb_security_group_id = alb.id
        self.task_security_group_id = tasks.id
        self.db_security_group_id = db.id
        self.register_outputs({"vpc_id": vpc.id, "private_subnet_ids": self.private_subnet_ids})
