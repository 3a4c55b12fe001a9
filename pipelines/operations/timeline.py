"""`invoke incident.timeline` (runbook section 8's postmortem): the ledger's deploys,
rollbacks, flags, secret rotations and snapshots, and the alarms' transitions, in time order
as Markdown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pipelines.ledger import Ledger
from pipelines.operations.common import resolve_target
from pipelines.targets.base import AlarmTransition, Target, TargetError

# (unix time, kind, detail): one row of the timeline.
Event = tuple[float, str, str]


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


def alarm_event(transition: AlarmTransition) -> Event:
    t = transition
    return (t.at, "alarm", f"{t.alarm} {t.old} -> {t.new}: {t.reason[:160]}")


def timeline(
    env: str, since: str, ledger: Ledger | None = None, target: str | Target = "local"
) -> str:
    start = parse_since(since)
    chosen = resolve_target(target)
    environment = chosen.environment(env)
    events = ledger_events(ledger or chosen.ledger(), env, start)
    events += [alarm_event(t) for t in environment.operations.alarm_transitions(start)]
    return render_timeline(env, start, events)


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
    if kind == "secret-rotated":
        key = f", {entry['kid']} signs" if entry.get("kid") else ""
        dropped = f", dropped {', '.join(entry['dropped'])}" if entry.get("dropped") else ""
        return (
            f"{entry.get('secret')} rotated ({entry.get('mode')}){key}{dropped} {outcome} by "
            f"{entry.get('who')}"
        )
    if kind == "checks":
        sha = str(entry.get("sha", ""))[:12]
        return f"step {entry.get('step')} ({entry.get('name')}) {outcome} for {sha}"
    detail = {k: v for k, v in entry.items() if k not in {"at", "at_iso", "kind", "env"}}
    return f"{kind} {json.dumps(detail, default=str)[:200]}"


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
