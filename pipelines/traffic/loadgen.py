"""A bounded HTTP load generator: a few threads, a request cap and a time cap.

Used by the deploy's verify step (synthetic traffic during the bake window) and by tests that
prove zero failed requests during rollouts. It only ever targets the URL it is given, which
the callers keep on 127.0.0.1 for the local target.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx

Request = Callable[[httpx.Client, int], httpx.Response]


class Sample(NamedTuple):
    """One request as the client saw it. `at` is wall-clock (epoch seconds) so samples line
    up with events recorded by other processes (alarms, rollouts) on the same machine."""

    at: float
    latency_s: float
    status: int  # 0 for a transport error
    route: str  # "POST /api/orders": method and path, without the query
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status >= 500


@dataclass
class LoadReport:
    requests: int = 0
    failures: int = 0  # transport errors and 5xx
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [sample.latency_s for sample in self.samples]

    @property
    def p95_ms(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, int(0.95 * len(ordered)) - 1)]

    @property
    def rps(self) -> float:
        elapsed = self.finished - self.started
        return self.requests / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        p95 = f"{self.p95_ms:.1f} ms" if self.p95_ms is not None else "-"
        return (
            f"{self.requests} requests, {self.failures} failed, p95 {p95}, "
            f"{self.rps:.0f} req/s, statuses {dict(sorted(self.statuses.items()))}"
        )


def get(path: str, headers: dict[str, str] | None = None) -> Request:
    return lambda client, _: client.get(path, headers=headers)


class Load:
    """Run `request` from `workers` threads until stop(), `max_requests` or `max_seconds`."""

    def __init__(
        self,
        base_url: str,
        request: Request,
        *,
        workers: int = 4,
        max_requests: int = 100_000,
        max_seconds: float = 120.0,
        pause_s: float = 0.0,
    ) -> None:
        self.base_url = base_url
        self.request = request
        self.workers = workers
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.pause_s = pause_s
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.report.started = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self, timeout: float) -> LoadReport:
        """Let the load run to its own limits, then stop it."""
        for thread in self._threads:
            thread.join(timeout=timeout)
        return self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.report.finished = time.monotonic()
        return self.report

    def _run(self, worker: int) -> None:
        deadline = self.report.started + self.max_seconds
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            sequence = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.report.requests >= self.max_requests:
                        return
                    self.report.requests += 1
                at, began = time.time(), time.monotonic()
                route = "?"
                try:
                    response = self.request(client, worker * 1_000_000 + sequence)
                    status, error = response.status_code, None
                    route = _route(response.request)
                except httpx.HTTPError as exc:
                    status, error = 0, type(exc).__name__
                    with contextlib.suppress(RuntimeError):  # raised before a request existed
                        route = _route(exc.request)
                elapsed = time.monotonic() - began
                with self._lock:
                    self.report.statuses[status] += 1
                    self.report.samples.append(Sample(at, elapsed, status, route, error))
                    if error or status >= 500:
                        self.report.failures += 1
                        self.report.errors[error or str(status)] += 1
                sequence += 1
                if self.pause_s:
                    time.sleep(self.pause_s)


def _route(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"
