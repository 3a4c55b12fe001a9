"""`invoke flags.*` (runbook section 9): the flags in force, and a change applied by a
health-gated rolling change and recorded in the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipelines.ledger import Ledger
from pipelines.operations.common import held, resolve_target
from pipelines.targets.base import Target, TargetError

FLAG_VALUES = {"true": True, "false": False}


def parse_flag_changes(assignments: Iterable[str]) -> dict[str, bool]:
    """NAME=true|false assignments checked against the registry, before anything changes."""
    from service.flags import REGISTRY

    known = {flag.name for flag in REGISTRY}
    changes: dict[str, bool] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        name = name.strip().upper().removeprefix("FLAG_")
        if name not in known:
            raise TargetError(f"unknown flag {name!r}; known: {', '.join(sorted(known))}")
        if value.strip().lower() not in FLAG_VALUES:
            raise TargetError(f"{assignment!r}: the value must be true or false")
        changes[name] = FLAG_VALUES[value.strip().lower()]
    if not changes:
        raise TargetError("no flag given; use NAME=true or NAME=false")
    return changes


def flag_text(changes: dict[str, bool]) -> str:
    return ", ".join(f"{k}={'true' if v else 'false'}" for k, v in changes.items())


def list_flags(env: str, target: str | Target = "local") -> list[dict[str, Any]]:
    """Every registered flag with its value in force, its default and its description."""
    from service.flags import describe

    return describe(resolve_target(target).environment(env).operations.flags())


def flags_table(env: str, target: str | Target = "local") -> str:
    lines = []
    for flag in list_flags(env, target):
        state = "on " if flag["enabled"] else "off"
        mark = " (overridden)" if flag["overridden"] else ""
        lines.append(f"{flag['name']:<28} {state}{mark:<13} {flag['description']}")
    return "\n".join(lines)


def set_flags(
    env: str,
    assignments: list[str],
    ledger: Ledger | None = None,
    target: str | Target = "local",
) -> str:
    """Checked first, then applied; a change that fails leaves the previous flags serving."""
    changes = parse_flag_changes(assignments)
    chosen = resolve_target(target)
    environment = chosen.environment(env)
    book = ledger or chosen.ledger()  # found before anything changes: the change is recorded
    operations = environment.operations
    with held(chosen, env, f"flags.set {env} {flag_text(changes)}"):
        in_force = operations.flags()
        if all(in_force.get(name) == value for name, value in changes.items()):
            return f"{env}: {flag_text(changes)} already in force; nothing was deployed"
        result = operations.set_flags(changes)
    book.append(
        "flag", env, changes=changes, ok=result.ok, release=result.release, reason=result.reason
    )
    if not result.ok:
        raise TargetError(
            f"flag change not applied: {result.reason}; the previous flags keep serving"
        )
    return (
        f"{env}: {flag_text(changes)} applied by {operations.flag_change} in "
        f"{result.duration_s:.1f} s"
    )
