"""Reading security events back: the structured records on `drydock.security` and the
counter in the metrics text served at /api/_internal/metrics."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import DrydockAPI

LOGGER = "drydock.security"


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == LOGGER and getattr(r, "security_event", "") == name
    ]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the record adds beyond a plain LogRecord (its `extra=`)."""
    plain = vars(logging.LogRecord("", 0, "", 0, "", None, None))
    return {k: v for k, v in vars(record).items() if k not in plain and k != "message"}


async def event_counts(client: httpx.AsyncClient, app: DrydockAPI) -> dict[str, float]:
    """drydock_security_events_total by event, as the metrics endpoint serves it."""
    token = app.drydock.settings.metrics_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get("/api/_internal/metrics", headers=headers)
    assert response.status_code == 200, response.text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "drydock_security_events_total":
                counts[sample.labels["event"]] = sample.value
    return counts


async def counted(
    client: httpx.AsyncClient, app: DrydockAPI, before: dict[str, float]
) -> dict[str, float]:
    """How many of each event since `before` (the counter is per process, not per app)."""
    after = await event_counts(client, app)
    return {name: n - before.get(name, 0.0) for name, n in after.items() if n != before.get(name)}
