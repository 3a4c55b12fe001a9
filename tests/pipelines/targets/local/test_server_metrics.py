"""The service's own metrics as a deploy report draws them: the agent's monitor scrapes the
real service over HTTP, stores each scrape's request rate beside its p95 and error rate, and
`server_metrics` reads them back, one point per scrape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.targets.local.metrics_scrape import REQUEST_RATE
from pipelines.targets.local.monitor import Monitor
from pipelines.targets.local.server_metrics import read
from tests.pipelines.targets.local.test_security_alarms import monitor_of

from .served_app import ServedApp

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


@pytest.fixture
def served(fresh_database: str) -> Iterator[ServedApp]:
    with ServedApp(fresh_database) as app:
        yield app


def test_each_scrape_is_one_point_with_the_rate_over_its_interval(
    tmp_path: Path, served: ServedApp
) -> None:
    monitor: Monitor = monitor_of(tmp_path, served)
    store = monitor.layout.alarms / "datapoints.jsonl"
    monitor.tick(T0)  # the baseline: no interval before it, so no rate
    with httpx.Client(base_url=served.url) as client:
        for _ in range(30):
            client.get("/api/inventory")  # 401 without a token: counted, not an error
    monitor.tick(T0 + 10)
    monitor.tick(T0 + 15)  # nothing in between: a rate of 0, no p95, no error rate
    stored = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["t"] for r in stored if r["metric"] == REQUEST_RATE] == [T0 + 10, T0 + 15]

    first, idle = read(store, T0, T0 + 20)
    assert (first.at, first.period_s) == (T0 + 10, 0.0)  # nothing before T0 in the window
    assert first.requests_per_s == pytest.approx(3.0)  # 30 requests over 10 s
    assert first.error_rate == 0.0 and first.p95_s is not None and first.p95_s > 0
    assert (idle.at, idle.period_s, idle.requests_per_s) == (T0 + 15, 5.0, 0.0)
    assert idle.p95_s is None and idle.error_rate is None
    # A window that starts later knows the scrape before it: the first interval is whole.
    (only,) = read(store, T0 + 12, T0 + 20)
    assert (only.at, only.period_s) == (T0 + 15, 5.0)
    assert read(store, T0 + 16, T0 + 20) == []
    assert read(tmp_path / "missing.jsonl", T0, T0 + 20) == []
