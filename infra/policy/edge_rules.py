"""The edge: modern TLS only, plain HTTP only to redirect, a web firewall in front of the
public load balancer, and security groups open to the internet on the web ports alone.

These held before only as unit tests of this repository's program; as rules, a user's
`pulumi preview` enforces them on whatever the program becomes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from infra.policy.registry import Resource, listed, number, resource_rule, stack_rule
from infra.policy.tokens import (
    EGRESS_RULE,
    INGRESS_RULE,
    LISTENER_RULES,
    LISTENERS,
    LOAD_BALANCERS,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    WEB_ACL_ASSOCIATION,
)

# TLS 1.3, and 1.2 at the least: ELB's TLS13-1-2 and TLS13-1-3 policies (FIPS ones too).
TLS_POLICY = re.compile(r"ELBSecurityPolicy-TLS13-1-[23]-[\w-]+")
ANYWHERE = frozenset({"0.0.0.0/0", "::/0"})
# The internet may reach the web ports, and tasks may call out over HTTPS; nothing else.
OPEN_INGRESS_PORTS = frozenset({80, 443})
OPEN_EGRESS_PORTS = frozenset({443})


@resource_rule("alb-tls-policy", "HTTPS listeners negotiate TLS 1.2 or 1.3 only")
def alb_tls_policy(r: Resource) -> Iterator[str]:
    if r.type not in LISTENERS or r.props.get("protocol") != "HTTPS":
        return
    policy = str(r.props.get("sslPolicy") or "")
    if not TLS_POLICY.fullmatch(policy):
        yield (
            f"{r.name}: ssl_policy {policy or '(default)'} allows older TLS; use "
            "ELBSecurityPolicy-TLS13-1-2-2021-06 or a TLS13-1-3 policy"
        )


def _redirects_to_https(action: Any) -> bool:
    return (
        isinstance(action, dict)
        and action.get("type") == "redirect"
        and (action.get("redirect") or {}).get("protocol") == "HTTPS"
    )


@stack_rule("http-redirects-to-https", "plain HTTP listeners only redirect to HTTPS")
def http_redirects_to_https(resources: Sequence[Resource]) -> Iterator[str]:
    plain = {}
    for r in resources:
        if r.type in LISTENERS and r.props.get("protocol") == "HTTP":
            plain[r.props.get("arn")] = r
            actions = listed(r.props.get("defaultActions"))
            if not actions or not all(_redirects_to_https(a) for a in actions):
                yield f"{r.name}: an HTTP listener's default action must redirect to HTTPS"
    for r in resources:
        if r.type in LISTENER_RULES and r.props.get("listenerArn") in plain:
            actions = listed(r.props.get("actions"))
            if not all(
                _redirects_to_https(a)
                or (isinstance(a, dict) and a.get("type") == "fixed-response")
                for a in actions
            ):
                yield f"{r.name}: a rule on a plain HTTP listener may only redirect or answer"


@stack_rule("alb-waf", "internet-facing load balancers are behind a WAF web ACL")
def alb_waf(resources: Sequence[Resource]) -> Iterator[str]:
    protected = {r.props.get("resourceArn") for r in resources if r.type == WEB_ACL_ASSOCIATION}
    for r in resources:
        if (
            r.type in LOAD_BALANCERS
            and r.props.get("internal") is not True
            and r.props.get("loadBalancerType", "application") == "application"
            and r.props.get("arn") not in protected
        ):
            yield f"{r.name}: associate a WAFv2 web ACL (aws.wafv2.WebAclAssociation)"


def _open_rules(r: Resource) -> Iterator[tuple[str, dict[str, Any]]]:
    """(direction, rule) for each rule of `r` that reaches anywhere."""
    if r.type in (INGRESS_RULE, EGRESS_RULE):
        direction = "ingress" if r.type == INGRESS_RULE else "egress"
        if {r.props.get("cidrIpv4"), r.props.get("cidrIpv6")} & ANYWHERE:
            yield direction, dict(r.props)
    elif r.type == SECURITY_GROUP_RULE:
        if set(listed(r.props.get("cidrBlocks")) + listed(r.props.get("ipv6CidrBlocks"))) & (
            ANYWHERE
        ):
            yield str(r.props.get("type")), dict(r.props)
    elif r.type == SECURITY_GROUP:
        for direction in ("ingress", "egress"):
            for rule in listed(r.props.get(direction)):
                blocks = listed(rule.get("cidrBlocks")) + listed(rule.get("ipv6CidrBlocks"))
                if set(blocks) & ANYWHERE:
                    yield direction, rule


@resource_rule(
    "security-group-scope",
    "from anywhere only TCP 80 and 443 in, to anywhere only TCP 443 out; one port per rule",
)
def security_group_scope(r: Resource) -> Iterator[str]:
    for direction, rule in _open_rules(r):
        allowed = OPEN_INGRESS_PORTS if direction == "ingress" else OPEN_EGRESS_PORTS
        protocol = str(rule.get("ipProtocol") or rule.get("protocol") or "")
        low, high = number(rule.get("fromPort")), number(rule.get("toPort"))
        if protocol not in ("tcp", "6") or low != high or int(low) not in allowed:
            ports = "/".join(str(p) for p in sorted(allowed))
            yield (
                f"{r.name}: {direction} {protocol or '?'} {int(low)}-{int(high)} with the "
                f"whole internet; allowed: TCP {ports}, one port per rule"
            )
