"""The machinery behind `infra.spec`: one `Setting` per spec field, coercion and range checks.

Kept apart from `spec.py` so that the table there reads as a table. Pure Python.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import Field, dataclass, field
from typing import Any, Union, get_args, get_origin

SAME: Any = object()


class SpecError(ValueError):
    """A stack setting is unknown, mistyped or out of range. The message says which and why."""


@dataclass(frozen=True)
class Setting:
    """How one spec field is configured: its Pulumi key, per-stack defaults and allowed values."""

    key: str
    staging: Any
    production: Any
    bounds: tuple[float, float] | None = None
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None
    hint: str = ""
    secret: bool = False

    def default(self, stack: str) -> Any:
        return self.production if stack == "production" else self.staging

    def allowed(self) -> str:
        if self.bounds is not None:
            low, high = (_fmt(b) for b in self.bounds)
            return f"allowed range: {low}..{high}"
        if self.choices is not None:
            return "allowed values: " + ", ".join(_fmt(c) for c in self.choices)
        if self.hint:
            return f"allowed: {self.hint}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None. `value` is already of the field's type."""
        if value is None or value == "" or value == ():
            return None
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if self.bounds is not None and not self.bounds[0] <= item <= self.bounds[1]:
                return f"{self.key}={_fmt(item)} is out of range; {self.allowed()}"
            if self.choices is not None and item not in self.choices:
                return f"{self.key}={_fmt(item)} is not allowed; {self.allowed()}"
            if self.pattern is not None and not re.fullmatch(self.pattern, str(item)):
                return f"{self.key}={item!r} is not valid; {self.allowed()}"
        return None


def setting(
    key: str,
    staging: Any,
    production: Any = SAME,
    *,
    bounds: tuple[float, float] | None = None,
    choices: Sequence[Any] | None = None,
    pattern: str | None = None,
    hint: str = "",
    secret: bool = False,
) -> Any:
    """A dataclass field whose default is the staging value and whose metadata is its Setting."""
    full_key = key if ":" in key else f"drydock:{key}"
    spec = Setting(
        key=full_key,
        staging=staging,
        production=staging if production is SAME else production,
        bounds=bounds,
        choices=tuple(choices) if choices is not None else None,
        pattern=pattern,
        hint=hint,
        secret=secret,
    )
    return field(default=staging, metadata={"setting": spec}, repr=not secret)


def settings_of(fields: Iterable[Field[Any]]) -> dict[str, tuple[str, Setting]]:
    """Map each full config key to (field name, Setting)."""
    table: dict[str, tuple[str, Setting]] = {}
    for f in fields:
        spec = f.metadata.get("setting")
        if isinstance(spec, Setting):
            table[spec.key] = (f.name, spec)
    return table


def coerce(raw: Any, annotation: Any) -> Any:
    """Turn a YAML value or a Pulumi config string into `annotation`'s type, or raise ValueError.

    Pulumi hands the program every value as a string, structured values as JSON.
    """
    optional = _is_optional(annotation)
    base = _strip_optional(annotation)
    if raw is None or (optional and raw == ""):
        if optional:
            return None
        raise ValueError("has no value")
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {"true", "false"}:
            return raw.lower() == "true"
        raise ValueError("is not a boolean; allowed values: true, false")
    if base is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("is not an integer")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError("is not an integer") from None
    if base is float:
        if isinstance(raw, bool):
            raise ValueError("is not a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError("is not a number") from None
    if get_origin(base) is tuple:
        item_type = get_args(base)[0]
        kind = "integers" if item_type is int else "strings"
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip().startswith("[") else [raw]
            except json.JSONDecodeError:
                raise ValueError(f"is not a list of {kind}") from None
        if not isinstance(raw, list):
            raise ValueError(f"is not a list of {kind}")
        if item_type is int:
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
                raise ValueError("is not a list of integers")
        elif not all(isinstance(i, str) for i in raw):
            raise ValueError("is not a list of strings")
        return tuple(raw)
    if isinstance(raw, dict | list):
        raise ValueError("is not a string")
    return str(raw)


def unknown_key(key: str, valid: Iterable[str]) -> str:
    """The message for a key no setting has: the closest valid key, or all of them."""
    candidates = sorted(valid)
    by_name = {k.split(":", 1)[-1].lower(): k for k in candidates}
    close = difflib.get_close_matches(key.split(":", 1)[-1].lower(), by_name, n=1, cutoff=0.6)
    if close:
        return f"unknown setting {key!r}; did you mean {by_name[close[0]]!r}?"
    return f"unknown setting {key!r}; valid settings: " + ", ".join(candidates)


def is_encrypted(raw: Any) -> bool:
    """A `pulumi config set --secret` value as it sits in the stack file."""
    return isinstance(raw, Mapping) and set(raw) == {"secure"}


def _is_optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _strip_optional(annotation: Any) -> Any:
    if _is_optional(annotation):
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def windows_overlap(backup: str, maintenance: str) -> bool:
    """Whether a daily `hh:mm-hh:mm` window meets a weekly `ddd:hh:mm-ddd:hh:mm` one (UTC)."""
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    def minutes(hhmm: str) -> int:
        hours, mins = hhmm.split(":")
        return int(hours) * 60 + int(mins)

    try:
        b_start, b_end = (minutes(t) for t in backup.split("-"))
        (m_day, m_time), (e_day, e_time) = (p.split(":", 1) for p in maintenance.split("-"))
        m_start = days.index(m_day) * 1440 + minutes(m_time)
        m_end = days.index(e_day) * 1440 + minutes(e_time)
    except ValueError:
        return False  # the pattern check reports malformed windows
    m_end += 7 * 1440 if m_end <= m_start else 0
    b_end += 1440 if b_end <= b_start else 0
    return any(d * 1440 + b_start < m_end and m_start < d * 1440 + b_end for d in range(-1, 15))
