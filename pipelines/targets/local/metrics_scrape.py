"""Metrics for the local alarms: scrape replicas' Prometheus metrics into SLO datapoints.

Each replica exposes ``http_requests_total{method,route,status}``,
``http_request_duration_seconds_bucket{route,le}`` and ``http_requests_in_flight`` at
``/api/_internal/metrics``. Counters are cumulative since the replica started, so every SLO
datapoint is computed from the *increase* between two scrapes of the same replica (a counter
that went down means the replica restarted: the new value is the increase, as Prometheus'
``increase()`` does), summed over replicas:

* p95 latency: linear interpolation inside the histogram bucket holding the 95th percentile
  (Prometheus' ``histogram_quantile``) over the increase of the buckets;
* error rate: increase of 5xx responses / increase of all responses;
* availability: healthy replicas / desired replicas, as counted by the caller.

Requests to internal routes (probes, metrics) are left out. A window without requests gives no
latency or error-rate datapoint: a missing datapoint, which the alarm rules then treat.

``drydock_security_events_total{event}`` is read the same way: the increase of each event over
the window, summed over replicas, for the security alarms (``SECURITY_EVENT_METRIC`` names
the datapoints of one event).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import httpx

P95_LATENCY = "p95_latency_seconds"
ERROR_RATE = "error_rate"
AVAILABILITY = "availability"
# Requests per second between two scrapes: no alarm reads it; reports draw it beside p95 and
# the error rate (`targets/local/server_metrics.py`).
REQUEST_RATE = "requests_per_second"
METRICS_PATH = "/api/_internal/metrics"
SECURITY_EVENTS_SERIES = "drydock_security_events_total"  # service/security/events.py
INTERNAL_ROUTES = ("/api/_internal",)

STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "Average": lambda v: sum(v) / len(v),
    "Sum": sum,
    "Minimum": min,
    "Maximum": max,
    "SampleCount": lambda v: float(len(v)),
}

RequestKey = tuple[str, str, str]  # method, route, status
BucketKey = tuple[str, float]  # route, upper bound
K = TypeVar("K")


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters from one scrape (or their increase between two scrapes)."""

    requests: dict[RequestKey, float] = field(default_factory=dict)
    buckets: dict[BucketKey, float] = field(default_factory=dict)
    in_flight: float = 0.0
    taken_at: float = 0.0
    started_at: float | None = None  # process_start_time_seconds, when exposed
    events: dict[str, float] = field(default_factory=dict)  # security events by name


def security_event_metric(event: str) -> str:
    """The name under which the datapoints of one security event are stored."""
    return f"security_events:{event}"


def parse(text: str, taken_at: float | None = None) -> Snapshot:
    """Read the service's metrics from Prometheus text exposition format."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[RequestKey, float] = {}
    buckets: dict[BucketKey, float] = {}
    events: dict[str, float] = {}
    in_flight, started_at = 0.0, None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == SECURITY_EVENTS_SERIES:
                events[s.labels["event"]] = events.get(s.labels["event"], 0.0) + s.value
            elif s.name == "http_requests_total":
                key = (s.labels["method"], s.labels["route"], s.labels["status"])
                requests[key] = requests.get(key, 0.0) + s.value
            elif s.name == "http_request_duration_seconds_bucket":
                bucket = (s.labels["route"], float(s.labels["le"]))
                buckets[bucket] = buckets.get(bucket, 0.0) + s.value
            elif s.name == "http_requests_in_flight":
                in_flight += s.value
            elif s.name == "process_start_time_seconds":
                started_at = s.value
    taken = time.time() if taken_at is None else taken_at
    return Snapshot(requests, buckets, in_flight, taken, started_at, events)


def scrape(
    base_url: str,
    token: str | None = None,
    timeout: float = 2.0,
    client: httpx.Client | None = None,
) -> Snapshot:
    """GET ``base_url`` + the metrics path (with the service's METRICS_TOKEN as a bearer
    token when it has one) and parse it; raises httpx.HTTPError on failure. A caller that
    scrapes in a loop passes its `client`: building one loads the CA bundle each time, which
    cost an idle agent a quarter of a core."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = base_url.rstrip("/") + METRICS_PATH
    getter = client.get if client is not None else httpx.get
    response = getter(url, headers=headers, timeout=timeout)
    response.raise_for_status()
    return parse(response.text)


def _increase(prev: Mapping[K, float], cur: Mapping[K, float]) -> dict[K, float]:
    return {key: value - prev.get(key, 0.0) for key, value in cur.items()}


def delta(prev: Snapshot | None, cur: Snapshot) -> Snapshot:
    """The increase from ``prev`` to ``cur`` of one replica; a restart resets the baseline."""
    if prev is None:
        return Snapshot(in_flight=cur.in_flight, taken_at=cur.taken_at, started_at=cur.started_at)
    restarted = (
        cur.started_at != prev.started_at
        or any(v < prev.requests.get(k, 0.0) for k, v in cur.requests.items())
        or any(v < prev.buckets.get(k, 0.0) for k, v in cur.buckets.items())
        or any(v < prev.events.get(k, 0.0) for k, v in cur.events.items())
    )
    if restarted:  # every counter started again from zero since the previous scrape
        return cur
    return Snapshot(
        _increase(prev.requests, cur.requests),
        _increase(prev.buckets, cur.buckets),
        cur.in_flight,
        cur.taken_at,
        cur.started_at,
        _increase(prev.events, cur.events),
    )


def combine(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Sum snapshots of several replicas."""
    requests: dict[RequestKey, float] = defaultdict(float)
    buckets: dict[BucketKey, float] = defaultdict(float)
    events: dict[str, float] = defaultdict(float)
    in_flight, taken_at = 0.0, 0.0
    for snap in snapshots:
        for rkey, value in snap.requests.items():
            requests[rkey] += value
        for bkey, value in snap.buckets.items():
            buckets[bkey] += value
        for event, value in snap.events.items():
            events[event] += value
        in_flight += snap.in_flight
        taken_at = max(taken_at, snap.taken_at)
    return Snapshot(dict(requests), dict(buckets), in_flight, taken_at, events=dict(events))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper_bound, count)`` buckets."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == math.inf:  # the quantile is above the largest finite bound
                return lower
            in_bucket = count - below
            return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket else 1.0)
        lower, below = upper, count
    return None


@dataclass(frozen=True)
class SloSample:
    """The three SLO metrics for one window, and the security events counted in it."""

    p95_seconds: float | None
    error_rate: float | None
    availability: float | None
    requests: float
    errors: float
    security_events: dict[str, float] = field(default_factory=dict)


def slo_sample(
    window: Snapshot,
    healthy: int,
    desired: int,
    exclude_prefixes: Sequence[str] = INTERNAL_ROUTES,
) -> SloSample:
    """SLO metrics from the increase of the counters over one window."""

    def counted(route: str) -> bool:
        return not route.startswith(tuple(exclude_prefixes))

    total = sum(v for (_, route, _), v in window.requests.items() if counted(route))
    errors = sum(
        v
        for (_, route, status), v in window.requests.items()
        if counted(route) and status[0] == "5"
    )
    by_bound: dict[float, float] = defaultdict(float)
    for (route, bound), value in window.buckets.items():
        if counted(route):
            by_bound[bound] += value
    return SloSample(
        p95_seconds=histogram_quantile(0.95, list(by_bound.items())),
        error_rate=errors / total if total > 0 else None,
        availability=healthy / desired if desired > 0 else None,
        requests=total,
        errors=errors,
        security_events=dict(window.events),
    )


class SloScraper:
    """Turns successive scrapes of the replicas into SLO samples.

    A replica seen for the first time only sets its baseline, like Prometheus' ``increase()``
    ignoring a series' first sample; a replica that disappears is forgotten."""

    def __init__(self, exclude_prefixes: Sequence[str] = INTERNAL_ROUTES) -> None:
        self.exclude_prefixes = tuple(exclude_prefixes)
        self._last: dict[str, Snapshot] = {}

    def observe(self, snapshots: Mapping[str, Snapshot], healthy: int, desired: int) -> SloSample:
        window = combine(delta(self._last.get(rid), snap) for rid, snap in snapshots.items())
        self._last = dict(snapshots)
        return slo_sample(window, healthy, desired, self.exclude_prefixes)


@dataclass(frozen=True)
class Datapoint:
    timestamp: float
    value: float


class MetricStore:
    """Samples per metric, kept for ``retention`` seconds and aggregated per period on read.

    With ``path``, samples are also appended to that JSONL file and read back on start, so
    another process (``env.status``) sees the same datapoints."""

    def __init__(self, path: Path | None = None, retention: float = 86400.0) -> None:
        self.path = path
        self.retention = retention
        self._samples: dict[str, list[Datapoint]] = defaultdict(list)
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self._samples[record["metric"]].append(Datapoint(record["t"], record["v"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash
            newest = max((d.timestamp for s in self._samples.values() for d in s), default=0.0)
            self._prune(newest)

    def put(self, metric: str, value: float, timestamp: float) -> None:
        if math.isnan(value):
            return
        self._samples[metric].append(Datapoint(timestamp, value))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"metric": metric, "t": timestamp, "v": value}) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        # prune with 10 % slack, so the file is rewritten now and then, not on every put
        if self._samples[metric][0].timestamp < timestamp - 1.1 * self.retention:
            self._prune(timestamp)

    def record(self, sample: SloSample, timestamp: float) -> None:
        """Store the SLO metrics of one window; None (no data) stays a missing datapoint."""
        for metric, value in (
            (P95_LATENCY, sample.p95_seconds),
            (ERROR_RATE, sample.error_rate),
            (AVAILABILITY, sample.availability),
        ):
            if value is not None:
                self.put(metric, value, timestamp)

    def datapoints(
        self, metric: str, period: int, statistic: str, start: float, end: float
    ) -> dict[float, float]:
        """One aggregated value per period-aligned bucket in ``[start, end)``."""
        buckets: dict[float, list[float]] = defaultdict(list)
        for d in self._samples.get(metric, ()):
            if start <= d.timestamp < end:
                buckets[math.floor(d.timestamp / period) * period].append(d.value)
        return {ts: STATISTICS[statistic](values) for ts, values in sorted(buckets.items())}

    def _prune(self, now: float) -> None:
        horizon = now - self.retention
        for metric, samples in self._samples.items():
            self._samples[metric] = [d for d in samples if d.timestamp >= horizon]
        if self.path is not None and self.path.exists():
            lines = [
                json.dumps({"metric": m, "t": d.timestamp, "v": d.value})
                for m, samples in self._samples.items()
                for d in samples
            ]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in lines))
            os.replace(tmp, self.path)
