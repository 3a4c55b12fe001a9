"""Whether the deploy role (infra/ci_identity.py) grants the AWS calls a Stubber test made.

Each client records its calls; each call becomes its IAM action (`ecs:DescribeServices`) and
the ARNs it names, and is checked against the role's statements: the action, and the
resource where the statement names one. Conditions are not evaluated: the infra tests check
those on the role itself (tests/infra/test_github_oidc.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from infra.ci_identity import Scope, permissions
from tests.pipelines.targets.aws.conftest import ACCOUNT, BUCKET, REGION

# Where IAM's prefix is not the endpoint's.
IAM_PREFIX = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Call:
    action: str
    arns: tuple[str, ...]


def arns_in(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("arn:"):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from arns_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from arns_in(item)


def record(clients: Iterable[Any]) -> list[Call]:
    """The calls these clients will make, appended as they are made."""
    calls: list[Call] = []
    for client in clients:
        prefix = client.meta.service_model.endpoint_prefix
        prefix = IAM_PREFIX.get(prefix, prefix)

        def seen(params: dict[str, Any], model: Any, _prefix: str = prefix, **_: Any) -> None:
            named = list(arns_in(params))
            if _prefix == "ecs" and {"cluster", "service"} <= params.keys():
                named.append(
                    f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{params['cluster']}/{params['service']}"
                )
            calls.append(Call(f"{_prefix}:{model.name}", tuple(named)))

        client.meta.events.register("before-parameter-build", seen)
    return calls


def deploy_role(probes_rule_arn: str) -> dict[str, Any]:
    return permissions(
        Scope(
            stack="staging",
            partition="aws",
            region=REGION,
            account=ACCOUNT,
            backups_bucket_arn=f"arn:aws:s3:::{BUCKET}",
            probes_rule_arn=probes_rule_arn,
            task_role_arns=(f"arn:aws:iam::{ACCOUNT}:role/exec",),
        )
    )


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def refused(calls: Iterable[Call], policy: Mapping[str, Any]) -> list[Call]:
    """The calls no statement of `policy` allows."""

    def allowed(call: Call) -> bool:
        for statement in policy["Statement"]:
            if statement["Effect"] != "Allow" or call.action not in listed(statement["Action"]):
                continue
            resources = listed(statement["Resource"])
            if "*" in resources or not call.arns:
                return True
            if any(fnmatchcase(arn, pattern) for arn in call.arns for pattern in resources):
                return True
        return False

    return [call for call in calls if not allowed(call)]
