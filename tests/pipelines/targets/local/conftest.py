"""Shared helpers for the local-target building blocks: small real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipelines.host.ports import free_port


class Replica:
    """A stand-in for a service replica: ``/ready`` answers 200 or 503, other GETs 200 with
    the replica's name, POSTs are recorded. ``stop()`` closes the listener, as a replica
    does on SIGTERM; in-flight requests still complete."""

    def __init__(self, name: str, port: int | None = None, ready: bool = True) -> None:
        self.name = name
        self.port = port or free_port()
        self.ready = ready
        self.hits = 0
        self.received: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.probe_headers: list[dict[str, str]] = []
        self.traffic_headers: list[dict[str, str]] = []
        self.status = 200
        self.metrics_body: Callable[[], bytes] = lambda: b""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/ready":
                    replica.probe_headers.append(dict(self.headers))
                    self._reply(200 if replica.ready else 503, b"ready" if replica.ready else b"")
                    return
                if self.path == "/api/_internal/metrics":
                    replica.headers.append(dict(self.headers))
                    self._reply(200, replica.metrics_body())
                    return
                with replica._lock:
                    replica.hits += 1
                    replica.traffic_headers.append(dict(self.headers))
                self._reply(replica.status, replica.name.encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with replica._lock:
                    replica.received.append(json.loads(body) if body else None)
                self._reply(replica.status, b"{}")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def replicas() -> Iterator[Callable[..., Replica]]:
    """Start replicas on demand; all of them are stopped at the end of the test."""
    started: list[Replica] = []

    def make(name: str, port: int | None = None, ready: bool = True) -> Replica:
        replica = Replica(name, port, ready).start()
        started.append(replica)
        return replica

    yield make
    for replica in started:
        replica.stop()
