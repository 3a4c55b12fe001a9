"""The real service app served over HTTP on 127.0.0.1 from a thread of the test process, so a
test can drive what only the process itself can (its security-event counter) and read it
back through a real scrape."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from pipelines.host.ports import free_port
from service.app import DrydockAPI, create_app
from tests.service.conftest import make_settings


class ServedApp:
    def __init__(self, database_url: str, **settings: Any) -> None:
        self.port = free_port()
        self.app: DrydockAPI = create_app(make_settings(database_url, **settings), heartbeat=False)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            lifespan="on",
            access_log=False,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # a deadline against a hang, not a measure
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
