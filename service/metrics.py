"""Prometheus series for the service (runbook section 3). Labels are route templates,
never raw paths, so cardinality stays bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service import __version__
from service.security.events import SECURITY_EVENTS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "db_pool_connections", "Database pool connections by state", labels=["state"]
        )
        for state, value in self._stats().items():
            family.add_metric([state], value)
        yield family


class Metrics:
    """One registry per app instance, so several apps can live in one process (tests)."""

    def __init__(self, pool_stats: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("http_requests_in_flight", "Requests being served", registry=r)
        self.timeouts = Counter(
            "http_request_timeouts", "Requests over REQUEST_TIMEOUT_MS", ["route"], registry=r
        )
        self.login_failures = Counter("auth_login_failures", "Failed logins", registry=r)
        self.lockouts = Counter("auth_lockouts", "Accounts locked after failed logins", registry=r)
        self.rate_limited = Counter(
            "http_rate_limited", "Requests refused by rate limiting", ["route_class"], registry=r
        )
        self.orders = Counter("orders_created", "Orders placed", registry=r)
        info = Gauge("app_info", "Build information", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        r.register(_PoolCollector(pool_stats))
        # Counted where they happen (security/events.py), not per app: one series per process.
        r.register(SECURITY_EVENTS)
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Hot path: label lookups are cached per label set."""
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)
