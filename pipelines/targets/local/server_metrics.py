"""The service's own view over a window, from the agent's monitor: each scrape of the
replicas' counters (`metrics_scrape.py`) left its p95, error rate and request rate in
`alarms/datapoints.jsonl`, stamped with the scrape's time. Read back here, one point per
scrape, for a report to draw beside the client's traffic."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from pipelines.targets.base import ServerMetrics
from pipelines.targets.local.metrics_scrape import ERROR_RATE, P95_LATENCY, REQUEST_RATE

WANTED = (REQUEST_RATE, ERROR_RATE, P95_LATENCY)


def read(path: Path, start: float, end: float) -> list[ServerMetrics]:
    """One point per scrape in [start, end], oldest first. `period_s` is the time since the
    scrape before it, the interval its counters' increase covers."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    scrapes: dict[float, dict[str, float]] = defaultdict(dict)
    before = None  # the newest scrape before `start`: the first point's interval starts there
    for line in text.splitlines():
        try:
            record = json.loads(line)
            metric, at, value = record["metric"], float(record["t"]), float(record["v"])
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash
        if metric not in WANTED:
            continue
        if at < start:
            before = at if before is None else max(before, at)
        elif at <= end:
            scrapes[at][metric] = value
    points = []
    for at in sorted(scrapes):
        values = scrapes[at]
        points.append(
            ServerMetrics(
                at=at,
                period_s=round(at - before, 3) if before is not None else 0.0,
                requests_per_s=values.get(REQUEST_RATE),
                error_rate=values.get(ERROR_RATE),
                p95_s=values.get(P95_LATENCY),
            )
        )
        before = at
    return points
