"""What a policy rule is, the list every rule module adds to, and the helpers they share.

Pure Python, like every rule module: building a `PolicyPack` starts a server that blocks,
so only `__main__.py` imports pulumi_policy. A rule is a function of one resource's
properties (Pulumi's camelCase names, outputs included) or of the whole stack's resources.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra import environment_class as env_class


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    stack: str = ""
    protect: bool = False


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check_resource: Callable[[Resource], Iterable[str]] | None = None
    check_stack: Callable[[Sequence[Resource]], Iterable[str]] | None = None


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str


RULES: list[Rule] = []


def resource_rule(name: str, description: str) -> Callable[[Any], Any]:
    def register(fn: Callable[[Resource], Iterable[str]]) -> Callable[[Resource], Iterable[str]]:
        RULES.append(Rule(name, description, check_resource=fn))
        return fn

    return register


def stack_rule(name: str, description: str) -> Callable[[Any], Any]:
    def register(
        fn: Callable[[Sequence[Resource]], Iterable[str]],
    ) -> Callable[[Sequence[Resource]], Iterable[str]]:
        RULES.append(Rule(name, description, check_stack=fn))
        return fn

    return register


def evaluate(resources: Sequence[Resource], rules: Iterable[Rule] | None = None) -> list[Violation]:
    """Every violation of `rules` (default: all) by `resources`."""
    found = []
    for rule in RULES if rules is None else rules:
        if rule.check_resource is not None:
            for resource in resources:
                found += [
                    Violation(rule.name, resource.name, m) for m in rule.check_resource(resource)
                ]
        if rule.check_stack is not None:
            found += [Violation(rule.name, "(stack)", m) for m in rule.check_stack(resources)]
    return found


def stack_of(urn: str) -> str:
    """The stack name inside a URN: urn:pulumi:<stack>::<project>::<type>::<name>."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def tags_of(r: Resource) -> Mapping[str, Any]:
    tags = r.props.get("tags") or r.props.get("tagsAll") or {}
    return tags if isinstance(tags, Mapping) else {}


def class_of(r: Resource) -> str:
    """The resource's environment class, from its tag. One that does not say is held to
    production's rules: a missing tag must never be the way out of them."""
    declared = tags_of(r).get(env_class.TAG)
    return declared if declared in env_class.CLASSES else env_class.PRODUCTION


def is_production(r: Resource) -> bool:
    return class_of(r) == env_class.PRODUCTION


def statements(document: Any) -> list[dict[str, Any]]:
    """The statements of an IAM-style policy document, given as JSON text or a mapping."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    found = document.get("Statement") if isinstance(document, Mapping) else None
    found = [found] if isinstance(found, Mapping) else found or []
    return [s for s in found if isinstance(s, dict)]


def listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
