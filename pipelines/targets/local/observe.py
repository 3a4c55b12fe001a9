"""What the environment looked like over a recent window, read the way an ALB reports it:
from the load balancer's own access log (status and duration of every proxied request),
plus the alarm states and the error lines the replicas logged."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.targets.base import Observation
from pipelines.targets.local.layout import EnvLayout, read_json

INTERNAL_PREFIX = "/api/_internal/"


def _lines_since(path: Path, since: float) -> Iterator[dict[str, object]]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by rotation
        stamp = entry.get("ts", entry.get("time"))
        if (isinstance(stamp, int | float) and stamp >= since) or (
            isinstance(stamp, str) and _epoch(stamp) >= since
        ):
            yield entry


def _epoch(stamp: str) -> float:
    try:
        whole, _, millis = stamp.rstrip("Z").partition(".")
        return (
            time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
            - time.timezone
            + (float(f"0.{millis}") if millis else 0.0)
        )
    except ValueError:
        return 0.0


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def observe(
    layout: EnvLayout, access_log: Path, window_s: float, end: float | None = None
) -> Observation:
    until = end if end is not None else time.time()
    since = until - window_s
    durations: list[float] = []
    errors = 0
    for entry in _lines_since(access_log, since):
        request = entry.get("request")
        uri = request.get("uri", "") if isinstance(request, dict) else ""
        if str(uri).startswith(INTERNAL_PREFIX) or float(str(entry.get("ts", 0))) > until:
            continue
        durations.append(float(str(entry.get("duration", 0.0))))
        status = int(str(entry.get("status", 0)))
        errors += status >= 500 or status == 0
    error_lines = sum(
        1
        for log in layout.logs.glob("replica-*.log")
        for entry in _lines_since(log, since)
        if entry.get("level") == "error"
    )
    states = (read_json(layout.alarms / "state.json") or {}).get("states", {})
    return Observation(
        window_s=window_s,
        requests=len(durations),
        errors_5xx=errors,
        p95_s=p95(durations),
        alarms_in_alarm=tuple(sorted(k for k, v in states.items() if v == "ALARM")),
        error_log_lines=error_lines,
    )
