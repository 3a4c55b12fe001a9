"""Scraping the service's Prometheus metrics into SLO datapoints: deltas, p95, error rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipelines.targets.local.alarms import AlarmEvaluator, slo_rules
from pipelines.targets.local.metrics_scrape import (
    AVAILABILITY,
    ERROR_RATE,
    P95_LATENCY,
    MetricStore,
    SloScraper,
    Snapshot,
    combine,
    delta,
    histogram_quantile,
    parse,
    scrape,
    slo_sample,
)

from .conftest import Replica

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.8, 1.6)


class Service:
    """The service's metrics, in a real prometheus_client registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "", ["route"], buckets=BUCKETS, registry=self.registry
        )
        self.in_flight = Gauge("http_requests_in_flight", "", registry=self.registry)

    def serve(self, n: int, seconds: float, status: int = 200, route: str = "/api/orders") -> None:
        for _ in range(n):
            self.requests.labels("GET", route, str(status)).inc()
            self.latency.labels(route).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def snapshot(self, at: float = 0.0) -> Snapshot:
        return parse(self.text(), taken_at=at)


pytestmark = pytest.mark.unit


def test_parse_reads_counters_buckets_and_gauge() -> None:
    svc = Service()
    svc.serve(3, 0.03)
    svc.serve(1, 0.5, status=503)
    svc.in_flight.set(2)
    snap = svc.snapshot(at=10.0)
    assert snap.requests == {("GET", "/api/orders", "200"): 3.0, ("GET", "/api/orders", "503"): 1.0}
    assert snap.buckets[("/api/orders", 0.05)] == 3.0
    assert snap.buckets[("/api/orders", 0.4)] == 3.0
    assert snap.buckets[("/api/orders", 0.8)] == 4.0
    assert snap.buckets[("/api/orders", math.inf)] == 4.0
    assert snap.in_flight == 2.0
    assert snap.taken_at == 10.0


def test_p95_is_interpolated_over_the_delta_not_the_totals() -> None:
    svc = Service()
    svc.serve(10_000, 0.003)  # a long, fast history
    before = svc.snapshot()
    svc.serve(90, 0.03)  # this window: 90 fast, 10 slow
    svc.serve(10, 0.5)
    after = svc.snapshot()
    window = slo_sample(delta(before, after), healthy=2, desired=2)
    # rank 95 of 100 lies in (0.4, 0.8], which holds requests 91..100: 0.4 + 0.4 * 5/10
    assert window.p95_seconds == pytest.approx(0.6)
    assert window.requests == 100
    cumulative = slo_sample(after, healthy=2, desired=2)
    assert cumulative.p95_seconds is not None
    assert cumulative.p95_seconds < 0.005  # what the cumulative totals would wrongly say


def test_error_rate_counts_5xx_of_the_window_and_skips_internal_routes() -> None:
    svc = Service()
    svc.serve(50, 0.01, status=500)  # old errors, before the window
    before = svc.snapshot()
    svc.serve(196, 0.01)
    svc.serve(2, 0.01, status=404)
    svc.serve(2, 0.01, status=503)
    svc.serve(500, 0.001, status=503, route="/api/_internal/ready")  # probes are not traffic
    sample = slo_sample(delta(before, svc.snapshot()), healthy=3, desired=4)
    assert sample.requests == 200
    assert sample.errors == 2
    assert sample.error_rate == pytest.approx(0.01)
    assert sample.availability == pytest.approx(0.75)


def test_no_traffic_gives_missing_datapoints() -> None:
    svc = Service()
    svc.serve(5, 0.01)
    snap = svc.snapshot()
    sample = slo_sample(delta(snap, svc.snapshot()), healthy=0, desired=0)
    assert (sample.p95_seconds, sample.error_rate, sample.availability) == (None, None, None)


def test_a_restarted_replica_counts_from_zero() -> None:
    old = Service()
    old.serve(1000, 0.01)
    new = Service()  # same replica, restarted: counters start again
    new.serve(20, 0.5, status=500)
    window = delta(old.snapshot(), new.snapshot())
    assert sum(window.requests.values()) == 20
    assert slo_sample(window, 1, 1).error_rate == 1.0


def test_restart_detected_by_process_start_time() -> None:
    prev = Snapshot(requests={("GET", "/", "200"): 5.0}, started_at=100.0)
    cur = Snapshot(requests={("GET", "/", "200"): 7.0}, started_at=200.0)
    assert delta(prev, cur).requests == {("GET", "/", "200"): 7.0}
    same = Snapshot(requests={("GET", "/", "200"): 7.0}, started_at=100.0)
    assert delta(prev, same).requests == {("GET", "/", "200"): 2.0}


def test_scraper_sums_replicas_and_uses_first_scrape_as_baseline() -> None:
    a, b = Service(), Service()
    a.serve(500, 0.01)
    b.serve(500, 0.01, status=500)
    scraper = SloScraper()
    first = scraper.observe({"a": a.snapshot(), "b": b.snapshot()}, healthy=2, desired=2)
    assert first.requests == 0  # lifetime totals are not this window's traffic
    a.serve(60, 0.02)
    b.serve(40, 0.02)
    b.serve(0, 0.02, status=500)
    second = scraper.observe({"a": a.snapshot(), "b": b.snapshot()}, healthy=2, desired=2)
    assert second.requests == 100
    assert second.error_rate == 0.0
    assert second.p95_seconds is not None
    assert 0.01 < second.p95_seconds <= 0.025
    assert combine([a.snapshot(), b.snapshot()]).requests[("GET", "/api/orders", "200")] == 600


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ([], None),
        ([(0.1, 0.0), (math.inf, 0.0)], None),
        ([(0.1, 10.0), (math.inf, 10.0)], 0.095),  # first bucket interpolates from zero
        ([(0.1, 0.0), (0.4, 0.0), (math.inf, 10.0)], 0.4),  # above every finite bound
        ([(0.1, 5.0), (0.2, 5.0)], None),  # no +Inf bucket: not a valid histogram
    ],
)
def test_histogram_quantile_edges(
    buckets: list[tuple[float, float]], expected: float | None
) -> None:
    result = histogram_quantile(0.95, buckets)
    assert result == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.integration
def test_scrape_over_http(replicas: Callable[..., Replica]) -> None:
    svc = Service()
    svc.serve(7, 0.02)
    replica = replicas("r1")
    replica.metrics_body = lambda: generate_latest(svc.registry)
    snap = scrape(replica.url, token="t0ken")
    assert snap.requests == {("GET", "/api/orders", "200"): 7.0}
    assert replica.headers[-1]["Authorization"] == "Bearer t0ken"


def test_metric_store_persists_and_prunes(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    store = MetricStore(path, retention=600)
    for i in range(10):
        store.put(P95_LATENCY, 0.1 * i, 1020.0 + 60 * i)
    store.put(ERROR_RATE, float("nan"), 1000.0)  # not a datapoint
    reloaded = MetricStore(path, retention=600)
    points = reloaded.datapoints(P95_LATENCY, 60, "Maximum", 0, 10_000)
    assert sorted(points) == [1020.0 + 60 * i for i in range(10)]
    assert reloaded.datapoints(ERROR_RATE, 60, "Maximum", 0, 10_000) == {}
    path.write_text(path.read_text() + '{"metric": "p95_lat')  # torn by a crash
    for i in range(10, 30):
        reloaded.put(P95_LATENCY, 0.1, 1020.0 + 60 * i)
    kept = MetricStore(path, retention=600).datapoints(P95_LATENCY, 60, "SampleCount", 0, 1e9)
    assert min(kept) >= 1020.0 + 60 * 29 - 1.1 * 600 - 60
    assert len(path.read_text().splitlines()) < 30


def test_slo_alarms_end_to_end(tmp_path: Path) -> None:
    """Scrapes every period feed the store; a slow window trips only the p95 alarm."""
    rules = slo_rules(
        p95_threshold_seconds=0.4,
        error_rate_threshold=0.01,
        availability_target=0.995,
        period_seconds=60,
        evaluation_periods=2,
        datapoints_to_alarm=2,
    )
    store = MetricStore()
    evaluator = AlarmEvaluator(rules, store, tmp_path / "history.jsonl")
    svc, scraper, t = Service(), SloScraper(), 1_800_000_000.0
    scraper.observe({"r": svc.snapshot(t)}, 2, 2)
    for slow in (False, False, True, True):
        svc.serve(100, 0.9 if slow else 0.02)
        t += 60
        store.record(scraper.observe({"r": svc.snapshot(t)}, 2, 2), t - 1)
        evaluator.evaluate(t)
    assert evaluator.states == {"p95-latency": "ALARM", "error-rate": "OK", "availability": "OK"}
    assert store.datapoints(AVAILABILITY, 60, "Minimum", 0, t)


def test_security_events_are_counted_per_window_summed_over_replicas() -> None:
    registries = {name: CollectorRegistry() for name in ("a", "b")}
    events = {
        name: Counter("drydock_security_events", "", ["event"], registry=registry)
        for name, registry in registries.items()
    }

    def scrape_all(at: float) -> dict[str, Snapshot]:
        return {n: parse(generate_latest(r).decode(), taken_at=at) for n, r in registries.items()}

    events["a"].labels("refresh_reused").inc(4)  # before the first scrape: the baseline
    scraper = SloScraper()
    assert scraper.observe(scrape_all(0.0), 2, 2).security_events == {}
    events["a"].labels("refresh_reused").inc(2)
    events["b"].labels("refresh_reused").inc(3)
    events["b"].labels("account_locked").inc()
    window = scraper.observe(scrape_all(10.0), 2, 2)
    assert window.security_events == {"refresh_reused": 5.0, "account_locked": 1.0}
    # Replica b restarts: its counters begin again, and what it counted since is the increase.
    registries["b"] = CollectorRegistry()
    events["b"] = Counter("drydock_security_events", "", ["event"], registry=registries["b"])
    events["b"].labels("refresh_reused").inc()
    window = scraper.observe(scrape_all(20.0), 2, 2)
    assert window.security_events == {"refresh_reused": 1.0}
