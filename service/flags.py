"""Feature flags: a registry in code, overridden by FLAG_<NAME>=true|false (runbook section 9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class FlagError(ValueError):
    """A FLAG_* variable holds something other than true or false."""


@dataclass(frozen=True)
class Flag:
    name: str
    default: bool
    description: str
    deprecated_since: str | None = None


REGISTRY: tuple[Flag, ...] = (
    Flag(
        "ORDERS_ENABLED",
        True,
        "Emergency disable for order creation: false turns POST /api/orders into 503.",
    ),
    Flag("REGISTRATION_OPEN", True, "Whether POST /api/auth/register accepts new accounts."),
    Flag(
        "ORDERS_FAULT_INJECTION",
        False,
        "Fails about 5 % of order creations with 500; exercises the deploy verify step.",
    ),
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve_flags(environ: Mapping[str, str]) -> dict[str, bool]:
    values: dict[str, bool] = {}
    for flag in REGISTRY:
        variable = f"FLAG_{flag.name}"
        raw = environ.get(variable)
        if raw is None:
            values[flag.name] = flag.default
            continue
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            values[flag.name] = True
        elif lowered in _FALSE:
            values[flag.name] = False
        else:
            raise FlagError(f"{variable}={raw!r} is not a boolean; use true or false")
    return values


def describe(values: Mapping[str, bool]) -> list[dict[str, object]]:
    return [
        {
            "name": flag.name,
            "enabled": values[flag.name],
            "default": flag.default,
            "overridden": values[flag.name] != flag.default,
            "description": flag.description,
            "deprecated_since": flag.deprecated_since,
        }
        for flag in REGISTRY
    ]
