"""Run the Pulumi program for one stack under Pulumi's mocks and keep what it declared.

Nothing reaches AWS. The mocks answer like AWS would for the few computed attributes the
program reads (ARNs, ids, DNS names, the RDS-managed master secret) and echo every input, so
each resource's inputs are exactly what `pulumi up` would send. Each input also keeps the
resources it was computed from (Pulumi's property dependencies), which is what lets the plan
name a reference where Terraform would (`bucket = aws_s3_bucket.x.id`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
# The regional Elastic Load Balancing accounts that write access logs (AWS's table); any other
# region gets the first, since only the shape of the answer matters there.
ELB_ACCOUNTS = {"eu-west-1": "156460612806", "eu-central-1": "054676820928"}
# A secret input arrives at the mocks wrapped in this signature (Pulumi's own constants).
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


@dataclass(frozen=True)
class Declared:
    """One resource the program declared: its inputs, the mocked state and its URN."""

    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any]
    dependencies: dict[str, tuple[str, ...]]  # input name -> URNs it was computed from


@dataclass(frozen=True)
class MockedStack:
    stack: str
    region: str
    resources: tuple[Declared, ...]

    def by_urn(self) -> dict[str, Declared]:
        return {r.urn: r for r in self.resources}


def is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SIG_KEY) == SECRET_SIG


def _computed(typ: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    """What AWS would compute for `typ` that the program reads back."""
    service = typ.split(":")[1].split("/")[0]
    kind = typ.split("/")[-1].split(":")[0]
    given = inputs.get("name") or name
    # A resource placed in another region (pulumi-aws 7's `region` argument) lives there.
    region = inputs.get("region") or region
    # The kind is in the ARN so that two resources of one service never share an ARN.
    state: dict[str, Any] = {"arn": f"arn:aws:{service}:{region}:{ACCOUNT}:{kind}/{given}"}
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        state |= {"arnSuffix": f"app/{name}/50dc6c495c0c9188", "dnsName": f"{name}.elb.aws"}
    elif typ == "aws:lb/targetGroup:TargetGroup":
        state |= {"arnSuffix": f"targetgroup/{name}/73e2d6bc24d8a067"}
    elif typ == "aws:rds/instance:Instance":
        identifier = inputs.get("identifier") or name
        state |= {
            "address": f"{identifier}.c0ffee.{region}.rds.amazonaws.com",
            "masterUserSecrets": [
                {
                    "secretArn": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:rds!db-1",
                    "kmsKeyId": inputs.get("masterUserSecretKmsKeyId"),
                    "secretStatus": "active",
                }
            ],
        }
    elif typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{given}-AbCdEf"
    elif typ == "random:index/randomPassword:RandomPassword":
        state["result"] = "r" * int(inputs.get("length", 32))
    elif typ == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{given}"
    elif typ.startswith("aws:s3/bucket") and typ.endswith((":Bucket", ":BucketV2")):
        state["bucket"] = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}20250101"
    elif typ == "aws:kms/key:Key":
        state["keyId"] = f"key-{name}"
    state.setdefault("name", given)
    return state


def call_result(function: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Data sources: the ones an AWS program commonly reads, answered for a test account."""
    if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {
            "names": [f"{region}{z}" for z in "abc"],
            "zoneIds": [f"az{i}" for i in (1, 2, 3)],
        }
    if function == "aws:index/getCallerIdentity:getCallerIdentity":
        arn = f"arn:aws:iam::{ACCOUNT}:user/scan"
        return {"accountId": ACCOUNT, "arn": arn, "userId": "AIDASCAN", "id": ACCOUNT}
    if function in ("aws:index/getRegion:getRegion", "aws:index/getRegion:getRegionResult"):
        return {"name": region, "region": region, "id": region, "endpoint": ""}
    if function == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if function == "aws:elb/getServiceAccount:getServiceAccount":
        elb = ELB_ACCOUNTS.get(args.get("region") or region, ELB_ACCOUNTS["eu-west-1"])
        return {"arn": f"arn:aws:iam::{elb}:root", "id": elb, "region": args.get("region")}
    return {}


def _mocks(region: str) -> Any:
    import pulumi

    class Mocks(pulumi.runtime.Mocks):
        def __init__(self) -> None:
            self.registered: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = dict(args.inputs)
            state = inputs
            if args.custom:
                state = {**_computed(args.typ, args.name, inputs, region), **inputs}
            resource_id = state.get("bucket") or f"{args.name}-id"
            self.registered[(args.typ, args.name)] = (inputs, {**state, "id": resource_id})
            return resource_id, state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
            return call_result(args.token, dict(args.args), region), []

    return Mocks()


def _monitor(mocks: Any) -> Any:
    from pulumi.runtime import mocks as pulumi_mocks

    class Monitor(pulumi_mocks.MockMonitor):
        """Keeps what the mocks are not told: the URN, and each input's dependencies."""

        def __init__(self) -> None:
            super().__init__(mocks)
            self.order: list[tuple[str, str, str, bool, dict[str, tuple[str, ...]]]] = []

        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            dependencies = {
                key: tuple(value.urns) for key, value in request.propertyDependencies.items()
            }
            self.order.append(
                (request.type, request.name, response.urn, bool(request.custom), dependencies)
            )
            return response

    return Monitor()


@contextmanager
def own_event_loop() -> Iterator[None]:
    """Pulumi's runtime needs a current event loop; put back whatever was current."""
    try:
        previous: asyncio.AbstractEventLoop | None = (
            asyncio.get_event_loop_policy().get_event_loop()
        )
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(previous)
        loop.close()


def config_strings(config: Mapping[str, Any]) -> dict[str, str]:
    """Config values the way Pulumi hands them to a program: strings, JSON for structures."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | dict):
            return json.dumps(value)
        return "" if value is None else str(value)

    return {k: text(v) for k, v in config.items()}


def build(stack: str, config: Mapping[str, Any]) -> MockedStack:
    """Run `infra.program.build` for `stack` with `config` (the stack file's `config:` map
    and whatever else is set), under mocks. A bad setting raises the spec's own error."""
    with own_event_loop():
        return _build(stack, config_strings(config))


def _build(stack: str, config: dict[str, str]) -> MockedStack:
    import pulumi
    from pulumi.runtime import settings as pulumi_settings

    from infra.program import build as build_program
    from infra.spec import from_pulumi_config

    spec = from_pulumi_config(config, stack)  # a bad setting stops before Pulumi starts
    region = spec.region
    pulumi_settings.reset_options(project="drydock", stack=stack, preview=False)
    pulumi.runtime.set_all_config(dict(config), secret_keys=[])
    mocks = _mocks(region)
    monitor = _monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="drydock", stack=stack, preview=False, monitor=monitor)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        outputs = {k: pulumi.Output.from_input(v) for k, v in build_program(spec).items()}
        return pulumi.Output.all(**outputs)

    try:
        program()
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
    declared = []
    for typ, name, urn, custom, dependencies in monitor.order:
        if typ == "pulumi:pulumi:Stack":
            continue
        inputs, state = mocks.registered[(typ, name)]
        declared.append(Declared(typ, name, urn, custom, inputs, state, dependencies))
    return MockedStack(stack, region, tuple(declared))
