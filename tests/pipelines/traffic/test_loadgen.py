"""The load generator against a real HTTP server: every request becomes a sample with its
route, status and wall-clock start, and the per-second timeline is built from those."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pipelines.host.ports import free_port
from pipelines.traffic.loadgen import Load, Sample
from pipelines.traffic.timeline import per_second, percentile

pytestmark = pytest.mark.unit


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if self.path.startswith("/broken") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads samples, not the server's log."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_request_is_a_sample_with_route_status_and_wall_clock_start(server: str) -> None:
    def request(client: httpx.Client, n: int) -> httpx.Response:
        return client.get("/broken" if n % 3 == 0 else "/fine", params={"n": n})

    before = time.time()
    load = Load(server, request, workers=2, max_requests=30, max_seconds=30)
    load.start()
    report = load.wait(timeout=30)
    after = time.time()

    assert report.requests == len(report.samples) == 30
    assert {s.route for s in report.samples} == {"GET /broken", "GET /fine"}
    broken = [s for s in report.samples if s.route == "GET /broken"]
    assert all(s.status == 503 and s.failed for s in broken)
    assert report.failures == len(broken)
    assert all(before <= s.at <= after for s in report.samples)
    assert report.latencies == [s.latency_s for s in report.samples]


def test_a_refused_connection_is_a_failed_sample_that_still_names_its_route() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    load = Load(closed, lambda client, _: client.post("/api/orders"), workers=1, max_requests=2)
    load.start()
    report = load.wait(timeout=30)
    assert [s.route for s in report.samples] == ["POST /api/orders"] * 2
    assert all(s.status == 0 and s.error == "ConnectError" and s.failed for s in report.samples)


def test_the_timeline_buckets_by_start_second_and_skips_silent_seconds() -> None:
    samples = [Sample(100.1, 0.010, 200, "GET /a"), Sample(100.9, 0.030, 500, "GET /a")]
    samples += [Sample(102.5, latency / 1000, 200, "GET /a") for latency in range(1, 21)]
    first, second = per_second(samples)
    assert (first.t, first.requests, first.failed, first.error_rate) == (100, 2, 1, 0.5)
    assert (first.p50_ms, first.p95_ms) == (10.0, 30.0)
    assert (second.t, second.requests, second.failed) == (102, 20, 0)
    assert (second.p50_ms, second.p95_ms) == (10.0, 19.0)


def test_percentile_is_nearest_rank_and_refuses_no_values() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
