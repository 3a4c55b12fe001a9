"""Security events: one JSON log record with `security_event` and `user_id` at the top level
(what the CloudWatch metric filters match), and one count in the app's metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from service.app import DrydockAPI
from service.logs import JsonFormatter
from service.security.events import EVENTS, email_hash, security_event
from tests.service.conftest import INTERNAL

pytestmark = pytest.mark.integration


@pytest.fixture
def security_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("drydock.security")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as configure_logging sets it in a replica
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def count(app: DrydockAPI, event: str) -> float:
    value = app.drydock.metrics.registry.get_sample_value(
        "drydock_security_events_total", {"event": event}
    )
    return value or 0.0


async def test_an_event_is_one_json_record_and_one_count(
    app: DrydockAPI, client: httpx.AsyncClient, security_log: io.StringIO
) -> None:
    before = count(app, "refresh_reused")
    security_event("refresh_reused", user_id=42, session_id="f-1")
    [line] = security_log.getvalue().splitlines()
    record = json.loads(line)
    assert record["security_event"] == "refresh_reused"
    assert (record["user_id"], record["session_id"]) == (42, "f-1")
    assert (record["level"], record["logger"]) == ("warning", "drydock.security")
    assert count(app, "refresh_reused") == before + 1
    scraped = (await client.get("/api/_internal/metrics", headers=INTERNAL)).text
    assert f'drydock_security_events_total{{event="refresh_reused"}} {before + 1}' in scraped
    for name in EVENTS:  # every series is there from the start, so a scrape has a baseline
        assert f'drydock_security_events_total{{event="{name}"}}' in scraped


def test_an_account_without_a_user_id_is_named_by_a_hash(security_log: io.StringIO) -> None:
    security_event("login_failed", user_id=None, email_hash=email_hash(" Who@Example.com"))
    record = json.loads(security_log.getvalue())
    assert record["user_id"] is None
    assert record["email_hash"] == email_hash("who@example.com") and len(record["email_hash"]) == 16
    assert "example.com" not in security_log.getvalue()
    assert record["level"] == "info"


def test_an_unknown_name_is_refused_and_nothing_is_counted() -> None:
    with pytest.raises(ValueError, match="unknown security event 'refresh_reuse'; known: "):
        security_event("refresh_reuse", user_id=1)
