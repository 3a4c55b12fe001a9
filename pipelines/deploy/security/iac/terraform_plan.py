"""A mocked stack written as the Terraform plan (`terraform show -json`) it corresponds to.

pulumi-aws is bridged from the Terraform AWS provider, so each input is a Terraform argument
under another spelling: camelCase becomes snake_case, a nested object becomes a block (a
list of one), and a list of blocks that Pulumi named in the plural takes Terraform's singular
name back (`defaultActions` -> `default_action`). Maps (tags, metric dimensions) keep their
keys. An input computed from another resource's id, ARN or name becomes a reference to it
(`aws_kms_key.database-key.arn`), as it would be in a plan made before that resource exists:
checkov joins resources on those references for its cross-resource checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelines.deploy.security.iac.mocked_stack import Declared, MockedStack, is_secret
from pipelines.deploy.security.iac.terraform_types import snake, terraform_type

FORMAT_VERSION = "1.2"
PROVIDERS = {"aws": "registry.terraform.io/hashicorp/aws"}
SENSITIVE = "(sensitive)"
# Map-typed arguments: their keys are data, not argument names.
MAP_KEYS = frozenset({"tags", "tagsAll", "dimensions", "recoveryPointTags", "variables"})
# Lists of blocks whose Terraform name is itself plural (Pulumi did not pluralise them).
PLURAL_BLOCKS = frozenset({"placementConstraints"})
# Outputs that identify a resource; an input equal to one of them is a reference to it.
IDENTITY_OUTPUTS: tuple[str, ...] = ("id", "arn", "name", "bucket", "keyId", "arnSuffix")
IDENTITY_OUTPUTS += ("dnsName", "repositoryUrl", "address", "identifier", "family")
_ARGUMENT = re.compile(r"[a-z][A-Za-z0-9]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def singular(name: str) -> str:
    """Terraform's name for a list of blocks Pulumi pluralised."""
    if name in PLURAL_BLOCKS:
        return name
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("sses"):
        return name[:-2]
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _is_map(key: str, value: Mapping[str, Any]) -> bool:
    return key in MAP_KEYS or not all(_ARGUMENT.fullmatch(k) for k in value)


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Pulumi sends every number as a float; Terraform's 80, not 80.0
    return value


class _References:
    """Identity outputs of every resource in the plan, to turn inputs into references."""

    def __init__(self, addresses: Mapping[str, str], stack: MockedStack) -> None:
        self.outputs: dict[str, list[tuple[str, str]]] = {}
        for resource in stack.resources:
            address = addresses.get(resource.urn)
            if address is None:
                continue
            self.outputs[resource.urn] = [
                (value, f"{address}.{snake(key)}")
                for key in IDENTITY_OUTPUTS
                if isinstance(value := resource.state.get(key), str) and value
            ]
        self.addresses = addresses

    def of(self, value: str, dependencies: tuple[str, ...]) -> str | None:
        for urn in dependencies:
            for output, reference in self.outputs.get(urn, ()):
                if value == output:
                    return reference
        return None


def _convert(value: Any, dependencies: tuple[str, ...], refs: _References, found: list[str]) -> Any:
    if is_secret(value):
        return SENSITIVE
    if isinstance(value, str):
        reference = refs.of(value, dependencies)
        if reference is None:
            return value
        found.append(reference)
        return reference
    if isinstance(value, list):
        return [_convert(item, dependencies, refs, found) for item in value]
    if isinstance(value, Mapping):
        return _arguments(value, dependencies, refs, found)
    return _scalar(value)


def _arguments(
    inputs: Mapping[str, Any], dependencies: tuple[str, ...], refs: _References, found: list[str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in inputs.items():
        value = raw["value"] if is_secret(raw) and isinstance(raw, Mapping) else raw
        if is_secret(raw):
            values[snake(key)] = SENSITIVE
        elif isinstance(value, Mapping) and _is_map(key, value):
            values[snake(key)] = {
                k: _convert(v, dependencies, refs, found) for k, v in value.items()
            }
        elif isinstance(value, Mapping):
            values[snake(key)] = [_arguments(value, dependencies, refs, found)]
        elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
            values[snake(singular(key))] = _convert(value, dependencies, refs, found)
        else:
            values[snake(key)] = _convert(value, dependencies, refs, found)
    return values


def addresses_of(stack: MockedStack) -> dict[str, str]:
    """URN -> Terraform address for every resource that has a Terraform twin."""
    taken: set[str] = set()
    addresses = {}
    for resource in stack.resources:
        kind = terraform_type(resource.type) if resource.custom else None
        if kind is None:
            continue
        name = resource.name if _NAME.fullmatch(resource.name) else _safe(resource.name)
        address, n = f"{kind}.{name}", 1
        while address in taken:
            n += 1
            address = f"{kind}.{name}_{n}"
        taken.add(address)
        addresses[resource.urn] = address
    return addresses


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return cleaned if _NAME.fullmatch(cleaned) else f"r_{cleaned}"


def _resource(resource: Declared, address: str, refs: _References) -> tuple[dict[str, Any], ...]:
    kind, name = address.split(".", 1)
    provider = PROVIDERS.get(kind.split("_", 1)[0], f"registry.terraform.io/hashicorp/{kind}")
    values: dict[str, Any] = {}
    expressions: dict[str, Any] = {}
    for key, raw in resource.inputs.items():
        found: list[str] = []
        converted = _arguments({key: raw}, resource.dependencies.get(key, ()), refs, found)
        values |= converted
        if found:
            referenced = sorted({*found, *(f.rsplit(".", 1)[0] for f in found)})
            expressions[next(iter(converted))] = {"references": referenced}
    common = {"address": address, "mode": "managed", "type": kind, "name": name}
    planned = {**common, "provider_name": provider, "schema_version": 0, "values": values}
    change = {
        **common,
        "provider_name": provider,
        "change": {"actions": ["create"], "before": None, "after": values, "after_unknown": {}},
    }
    configuration = {
        **common,
        "provider_config_key": kind.split("_", 1)[0],
        "expressions": expressions,
        # Where it came from in the Pulumi program, for a reader of the plan.
        "pulumi": {"type": resource.type, "name": resource.name, "urn": resource.urn},
    }
    return planned, change, configuration


def plan(stack: MockedStack) -> dict[str, Any]:
    """The plan JSON of `stack`: planned values, resource changes (all creates) and the
    configuration's references, as `checkov --framework terraform_plan` reads them."""
    addresses = addresses_of(stack)
    refs = _References(addresses, stack)
    planned, changes, configured = [], [], []
    by_urn = stack.by_urn()
    for urn, address in addresses.items():
        resource, change, configuration = _resource(by_urn[urn], address, refs)
        planned.append(resource)
        changes.append(change)
        configured.append(configuration)
    return {
        "format_version": FORMAT_VERSION,
        "terraform_version": "1.9.0",
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": changes,
        "configuration": {
            "provider_config": {
                "aws": {
                    "name": "aws",
                    "full_name": PROVIDERS["aws"],
                    "expressions": {"region": {"constant_value": stack.region}},
                }
            },
            "root_module": {"resources": configured},
        },
    }
