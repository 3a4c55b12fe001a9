"""What the on-call operations share across targets: checking flag assignments, reading
`--since`, and the incident timeline's Markdown, so local and AWS answers look the same."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pipelines.ledger import Ledger
from pipelines.targets.base import MigrationStatus, TargetError

FLAG_VALUES = {"true": True, "false": False}
# (unix time, kind, detail): one row of the timeline.
Event = tuple[float, str, str]


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


def status_text(env: str, status: MigrationStatus) -> str:
    pending = ", ".join(status.pending) or "none"
    return (
        f"{env}: schema at {status.current or 'nothing'}, release head {status.head}, "
        f"pending: {pending}"
    )


def parse_since(since: str) -> float:
    units = {"m": 60, "h": 3600, "d": 86400}
    if since and since[-1] in units and since[:-1].isdigit():
        return time.time() - int(since[:-1]) * units[since[-1]]
    try:
        parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise TargetError(
            f"--since {since!r}: use an ISO time (2026-11-28T09:00) or an age like 30m, 6h, 2d"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def ledger_events(ledger: Ledger, env: str, start: float) -> list[Event]:
    return [
        (entry["at"], entry["kind"], describe_entry(entry))
        for entry in ledger.entries(env)
        if entry["at"] >= start
    ]


def alarm_event(at: float, alarm: str, old: str, new: str, reason: str) -> Event:
    return (at, "alarm", f"{alarm} {old} -> {new}: {reason[:160]}")


def render_timeline(env: str, start: float, events: Iterable[Event]) -> str:
    header = [
        f"## Timeline: {env} since {iso(start)}",
        "",
        "| time (UTC) | event | detail |",
        "|---|---|---|",
    ]
    rows = [
        f"| {iso(at)} | {kind} | {detail.replace('|', '/')} |"
        for at, kind, detail in sorted(events)
    ]
    return "\n".join(header + (rows or ["| | | nothing recorded in this window |"])) + "\n"


def describe_entry(entry: dict[str, Any]) -> str:
    kind = entry["kind"]
    outcome = "ok" if entry.get("ok", True) else "FAILED"
    if kind == "deploy":
        step = f" at step {entry['failed_step']}" if entry.get("failed_step") else ""
        return f"deploy {entry.get('release')} {outcome}{step} by {entry.get('who')}"
    if kind == "rollback":
        return f"rollback {entry.get('previous')} -> {entry.get('release')} {outcome}"
    if kind == "flag":
        return f"flags {entry.get('changes')} {outcome} by {entry.get('who')}"
    detail = {k: v for k, v in entry.items() if k not in {"at", "at_iso", "kind", "env"}}
    return f"{kind} {json.dumps(detail, default=str)[:200]}"


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
