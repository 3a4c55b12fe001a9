"""Failed logins per source address across accounts: one address cannot lock accounts at
scale, every other address logs in as before, and the metrics show it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.security.ratelimit import MemoryRateLimiter
from service.security.throttle import LoginThrottle
from tests.service.auth_flow import PASSWORD, login, new_email, register, use_fast_hashing
from tests.service.conftest import AppFactory, client_for
from tests.service.security_events import counted, event_counts, events, fields

WRONG = "definitely not the password"
ATTACKER, NEIGHBOUR = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    use_fast_hashing(monkeypatch)
    caplog.set_level(logging.INFO, logger="drydock.security")


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["memory", "postgres"])
async def test_one_address_cannot_lock_a_seventh_account_and_another_still_logs_in(
    app_factory: AppFactory, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Six accounts' worth of failures (five each lock one) per window, and no more.
    app = await app_factory(
        rate_limit_backend=backend, login_source_max_failures=30, login_source_window_s=600
    )
    emails = [new_email() for _ in range(7)]
    async with client_for(app, ATTACKER) as attacker, client_for(app, NEIGHBOUR) as neighbour:
        for email in emails:
            assert (await register(neighbour, email)).status_code == 201
        before = await event_counts(neighbour, app)
        for email in emails[:6]:
            statuses = [(await login(attacker, email, WRONG)).status_code for _ in range(5)]
            assert statuses == [401, 401, 401, 401, 429], email

        seventh = emails[6]
        for password in (WRONG, PASSWORD):
            refused = await login(attacker, seventh, password)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "login_throttled"
            assert 1 <= int(refused.headers["retry-after"]) <= 600
        untouched = await app.drydock.db.fetchval(
            "SELECT count(*) FROM login_failures WHERE email = $1", seventh
        )
        assert untouched == 0, "the seventh account was never even counted against"

        assert (await login(neighbour, seventh)).status_code == 200
        assert (await login(neighbour, seventh, WRONG)).status_code == 401, "not throttled"
        assert (await counted(neighbour, app, before)) == {
            "login_failed": 31,
            "account_locked": 6,
            "login_throttled": 2,
            "login_succeeded": 1,
        }
    throttled = events(caplog, "login_throttled")[0]
    assert throttled.levelno == logging.WARNING
    assert fields(throttled)["source"] == ATTACKER and fields(throttled)["user_id"] is None


@pytest.mark.integration
async def test_refusals_of_a_locked_account_count_and_successes_do_not(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(login_source_max_failures=8)
    locked, mine = new_email(), new_email()
    async with client_for(app, ATTACKER) as client:
        for email in (locked, mine):
            await register(client, email)
        # Five failures lock the account, two more attempts are refused: seven failures.
        statuses = [(await login(client, locked, WRONG)).status_code for _ in range(7)]
        assert statuses == [401, 401, 401, 401, 429, 429, 429]
        for _ in range(3):
            assert (await login(client, mine)).status_code == 200, "successes never count"
        assert (await login(client, mine, WRONG)).status_code == 401, "the eighth"
        refused = await login(client, mine)
        assert refused.json()["error"]["code"] == "login_throttled"


@pytest.mark.integration
async def test_the_budget_comes_back_with_the_next_window(app_factory: AppFactory) -> None:
    app = await app_factory(login_source_max_failures=2, login_source_window_s=1)
    email = new_email()
    async with client_for(app, ATTACKER) as client:
        await register(client, email)
        assert [(await login(client, email, WRONG)).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
        await asyncio.sleep(1.1)
        assert (await login(client, email)).status_code == 200


@pytest.mark.unit
async def test_a_peek_counts_nothing() -> None:
    limiter = MemoryRateLimiter()
    throttle = LoginThrottle(limiter, max_failures=2, window_s=60)
    for _ in range(5):
        assert await throttle.refused(ATTACKER) is None
    await throttle.failed(ATTACKER)
    assert await throttle.refused(ATTACKER) is None
    await throttle.failed(ATTACKER)
    assert await throttle.refused(ATTACKER) is not None
    assert await throttle.refused(NEIGHBOUR) is None


@pytest.mark.integration
async def test_openapi_names_the_throttle_on_login(app_factory: AppFactory) -> None:
    app = await app_factory()
    async with client_for(app) as client:
        spec = (await client.get("/openapi.json")).json()
    assert (
        "login_throttled"
        in spec["paths"]["/api/auth/login"]["post"]["responses"]["429"]["description"]
    )
