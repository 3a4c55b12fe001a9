"""Build a stack under Pulumi's mocks and record every registered resource.

The mocks answer like AWS would for the few computed attributes the program reads (ARNs,
DNS names, the RDS-managed master secret); everything else echoes the inputs. Each build
resets the Pulumi runtime settings and config, so stacks never leak into one another. The
data sources, the secret wrapping and the config encoding are the infra scan's own
(`pipelines/deploy/security/iac/mocked_stack.py`), so the tests and the scan see one program
the same way; what the tests add is the resource options (protect, retain, parent) and a
state shaped for the policy pack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from infra.policy.rules import Resource
from infra.spec import EnvironmentSpec, from_pulumi_config
from pipelines.deploy.security.iac.mocked_stack import (
    ACCOUNT,
    call_result,
    is_secret,
    own_event_loop,
)
from pipelines.deploy.security.iac.mocked_stack import config_strings as pulumi_config_strings

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
CERTIFICATE = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/drydock@sha256:" + "ab" * 32
# What a platform team sets before the first release (see README "Provision AWS").
REPOSITORY = "acme/drydock"
RELEASE_CONFIG = {
    "drydock:certificateArn": CERTIFICATE,
    "drydock:githubRepository": REPOSITORY,
    "drydock:image": IMAGE,
}
# What production requires on top (infra/spec.py `require_for_aws`): someone to page and a
# second region for the backups. Staging is built without both: it may go without.
ONCALL = "oncall@example.com"
DR_REGION = "eu-central-1"
PRODUCTION_CONFIG = {
    **RELEASE_CONFIG,
    "drydock:alarmEmails": [ONCALL],
    "drydock:drRegion": DR_REGION,
}


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    parent_type: str

    def get(self, path: str, default: Any = None) -> Any:
        """A nested input by dotted path, e.g. `healthCheck.path`; secrets unwrapped."""
        value: Any = self.inputs
        for part in path.split("."):
            value = unsecret(value)
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return unsecret(value)

    def is_secret(self, key: str) -> bool:
        return is_secret(self.inputs.get(key))


@dataclass
class Stack:
    name: str
    spec: EnvironmentSpec
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(token) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {token} {name or ''}, found {len(found)}"
        return found[0]

    def by_id(self, resource_id: str) -> Registered:
        return next(r for r in self.resources if r.id == resource_id)

    def by_arn(self, arn: str) -> Registered:
        return next(r for r in self.resources if r.custom and r.state.get("arn") == arn)

    def policy_view(self) -> list[Resource]:
        """The resources as the policy pack sees them (custom resources, with outputs)."""
        return [
            Resource(r.type, r.name, r.state, self.name, r.protect)
            for r in self.resources
            if r.custom
        ]


def _computed(token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    service = token.split(":")[1].split("/")[0]
    given = inputs.get("name") or name
    # A resource placed in another region (pulumi-aws 7's `region` argument) lives there.
    region = inputs.get("region") or REGION
    state: dict[str, Any] = {"arn": f"arn:aws:{service}:{region}:{ACCOUNT}:{given}"}
    if token == "aws:lb/loadBalancer:LoadBalancer":
        state |= {"arnSuffix": f"app/{name}/50dc6c495c0c9188", "dnsName": f"{name}.elb.aws"}
    elif token == "aws:lb/targetGroup:TargetGroup":
        state |= {"arnSuffix": f"targetgroup/{name}/73e2d6bc24d8a067"}
    elif token == "aws:rds/instance:Instance":
        state |= {
            "address": f"{inputs['identifier']}.c0ffee.{REGION}.rds.amazonaws.com",
            "masterUserSecrets": [
                {
                    "secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1",
                    "kmsKeyId": inputs.get("masterUserSecretKmsKeyId"),
                    "secretStatus": "active",
                }
            ],
        }
    elif token == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{given}-AbCdEf"
    elif token == "random:index/randomPassword:RandomPassword":
        state["result"] = "r" * int(inputs["length"])
    elif token == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{given}"
    elif token == "aws:s3/bucket:Bucket":
        state["bucket"] = f"{inputs['bucketPrefix']}20250101"
        state["arn"] = f"arn:aws:s3:::{state['bucket']}"
    elif token == "aws:kms/key:Key":
        state["keyId"] = f"key-{name}"
    elif token == "aws:ec2/vpc:Vpc":
        state["arn"] = f"arn:aws:ec2:{region}:{ACCOUNT}:vpc/{name}-id"  # ends with its id
    state.setdefault("name", given)
    return state


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        state = {**_computed(args.typ, args.name, inputs), **inputs} if args.custom else inputs
        resource_id = state.get("bucket") or f"{args.name}-id"
        self.registered[(args.typ, args.name)] = (resource_id, inputs, state)
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return call_result(args.token, dict(args.args), REGION), []


class _Monitor(pulumi_mocks.MockMonitor):
    """Records what MockResourceArgs leaves out: protect, retain-on-delete and the parent."""

    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self.options: list[tuple[str, str, bool, bool, bool, str]] = []

    def RegisterResource(self, request: Any) -> Any:
        parent_type = request.parent.split("::")[2].split("$")[-1] if request.parent else ""
        self.options.append(
            (
                request.type,
                request.name,
                bool(request.protect),
                bool(request.retainOnDelete),
                bool(request.custom),
                parent_type,
            )
        )
        return super().RegisterResource(request)


def stack_file_config(stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def reset_runtime(stack: str, config: Mapping[str, str]) -> _Monitor:
    """Fresh settings, root stack and config, then mocks: nothing survives from before."""
    pulumi_settings.reset_options(project="drydock", stack=stack, preview=False)
    pulumi.runtime.set_all_config(dict(config), secret_keys=[])
    mocks = _Mocks()
    monitor = _Monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="drydock", stack=stack, preview=False, monitor=monitor)
    return monitor


def build_stack(stack: str, **overrides: Any) -> Stack:
    """Build `stack` from its committed stack file plus `overrides` (`drydock:` keys)."""
    with own_event_loop():
        return _build_stack(stack, overrides)


def _build_stack(stack: str, overrides: Mapping[str, Any]) -> Stack:
    from infra.program import build

    config = pulumi_config_strings({**stack_file_config(stack), **overrides})
    spec = from_pulumi_config(config, stack)  # a bad setting stops before Pulumi starts
    monitor = reset_runtime(stack, config)
    result = Stack(stack, spec)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        outputs = {k: pulumi.Output.from_input(v) for k, v in build(spec).items()}
        return pulumi.Output.all(**outputs).apply(result.outputs.update)

    program()
    mocks = monitor.mocks
    assert isinstance(mocks, _Mocks)
    for token, name, protect, retain, custom, parent_type in monitor.options:
        if token == "pulumi:pulumi:Stack":
            continue
        resource_id, inputs, state = mocks.registered[(token, name)]
        result.resources.append(
            Registered(
                token, name, inputs, state, resource_id, custom, protect, retain, parent_type
            )
        )
    return result


def unsecret(value: Any) -> Any:
    return value["value"] if is_secret(value) else value


def walk(value: Any) -> Iterator[Any]:
    """Every scalar inside nested dicts and lists."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from walk(item)
    else:
        yield value
