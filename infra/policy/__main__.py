"""The CrossGuard entry point: `pulumi preview --policy-pack infra/policy`.

Building PolicyPack starts the analyzer server and blocks; the rules live in `rules.py`.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy.rules import RULES, Resource, Rule, stack_of


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.check_resource
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: Any) -> None:
        resource = Resource(
            type=args.resource_type,
            name=args.name,
            props=args.props,
            stack=stack_of(args.urn),
            protect=bool(args.opts.protect),
        )
        for message in check(resource):
            report_violation(message, None)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.check_stack
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        resources = [
            Resource(r.resource_type, r.name, r.props, stack_of(r.urn), bool(r.opts.protect))
            for r in args.resources
        ]
        for message in check(resources):
            report_violation(message, None)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate)


PolicyPack(
    name="drydock-safe-defaults",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        _resource_policy(rule) if rule.check_resource else _stack_policy(rule) for rule in RULES
    ],
)
