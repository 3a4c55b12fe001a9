"""Serve the app with uvicorn and drain gracefully on SIGTERM.

SIGTERM flips readiness to 503 at once, keeps serving for DRAIN_SECONDS so the load
balancer can notice, then stops accepting, finishes requests in flight, closes the pool
and exits 0. A second SIGTERM or SIGINT exits without waiting.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from types import FrameType

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings

KEEP_ALIVE_S = 65
log = logging.getLogger("service.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, settings: Settings, on_drain: object) -> None:
        super().__init__(config)
        self._settings = settings
        self._on_drain = on_drain
        self._drain_started = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_started or sig == signal.SIGINT or self._settings.drain_seconds == 0:
            super().handle_exit(sig, frame)
            return
        self._drain_started = True
        callable_drain = self._on_drain
        assert callable(callable_drain)
        callable_drain()
        log.info(
            "SIGTERM: readiness is now 503; draining",
            extra={"drain_seconds": self._settings.drain_seconds},
        )
        loop = asyncio.get_event_loop()
        loop.call_later(self._settings.drain_seconds, self._finish_drain)

    def _finish_drain(self) -> None:
        log.info("drain window over; finishing requests in flight and exiting")
        self.should_exit = True


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    configure_logging(settings.log_level, human=settings.is_development)
    app = create_app(settings)

    def start_draining() -> None:
        app.drydock.draining = True

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=max(30, int(settings.drain_seconds) + 30),
        # Longer than any proxy in front keeps an idle connection open (the ALB 60 s, Caddy
        # 30 s), so the proxy always closes it first: a proxy that sends a request on a
        # connection the service is closing gets a reset, and a POST cannot be retried.
        timeout_keep_alive=KEEP_ALIVE_S,
        proxy_headers=False,
        server_header=False,
    )
    server = DrainingServer(config, settings, start_draining)
    # Everything imported and built so far lives as long as the process: move it out of the
    # collector's reach, so full collections scan only per-request garbage (shorter pauses).
    gc.collect()
    gc.freeze()
    server.run()
