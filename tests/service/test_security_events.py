"""Security events: failed logins, lockouts and refresh-token reuse are logged as structured
records (a user id, never the email in clear) and counted in the served metrics."""

from __future__ import annotations

import logging

import httpx
import pytest

from service.app import DrydockAPI
from service.security.events import email_hash, security_event
from tests.service.auth_flow import (
    login,
    new_email,
    refresh,
    register,
    signed_up,
    use_fast_hashing,
)
from tests.service.security_events import counted, event_counts, events, fields

WRONG = "definitely not the password"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drydock.security")


@pytest.mark.unit
def test_an_unknown_event_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown security event 'login_fialed'.*login_failed"):
        security_event("login_fialed", user_id=None)


@pytest.mark.unit
def test_the_email_hash_is_16_hex_of_the_normalised_address() -> None:
    digest = email_hash("Someone@Example.com ")
    assert digest == email_hash("someone@example.com")
    assert len(digest) == 16 and int(digest, 16) >= 0


@pytest.mark.integration
async def test_failed_logins_name_the_account_by_id_or_by_email_hash(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    before = await event_counts(client, app)
    known, unknown = new_email(), new_email()
    user_id = (await register(client, known)).json()["id"]
    assert (await login(client, known, WRONG)).status_code == 401
    assert (await login(client, unknown, WRONG)).status_code == 401

    first, second = events(caplog, "login_failed")
    assert first.levelno == logging.INFO
    assert fields(first) == {"security_event": "login_failed", "user_id": user_id}
    assert fields(second) == {
        "security_event": "login_failed",
        "user_id": None,
        "email_hash": email_hash(unknown),
    }
    assert known not in caplog.text and unknown not in caplog.text, "no email in clear"
    assert (await counted(client, app, before)) == {"login_failed": 2}


@pytest.mark.integration
async def test_a_lockout_is_a_warning_and_counted_once(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    before = await event_counts(client, app)
    email = new_email()
    user_id = (await register(client, email)).json()["id"]
    statuses = [(await login(client, email, WRONG)).status_code for _ in range(6)]
    assert statuses == [401, 401, 401, 401, 429, 429]

    [locked] = events(caplog, "account_locked")
    assert locked.levelno == logging.WARNING
    assert fields(locked) == {"security_event": "account_locked", "user_id": user_id}
    assert (await counted(client, app, before)) == {"login_failed": 5, "account_locked": 1}


@pytest.mark.integration
async def test_refresh_token_reuse_is_a_warning_naming_the_user_and_the_session(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    pair = await signed_up(client)
    user_id = app.drydock.tokens.decode(pair["access_token"], "access").subject
    assert (await refresh(client, pair["refresh_token"])).status_code == 200
    before = await event_counts(client, app)
    replay = await refresh(client, pair["refresh_token"])
    assert replay.json()["error"]["code"] == "token_reused"

    [reused] = events(caplog, "refresh_reused")
    assert reused.levelno == logging.WARNING
    family = app.drydock.tokens.decode(pair["refresh_token"], "refresh").family_id
    assert fields(reused) == {
        "security_event": "refresh_reused",
        "user_id": user_id,
        "session_id": str(family),
    }
    assert (await counted(client, app, before)) == {"refresh_reused": 1}


@pytest.mark.integration
async def test_a_logout_is_a_session_ended_event_once(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    pair = await signed_up(client)
    user_id = app.drydock.tokens.decode(pair["access_token"], "access").subject
    family = app.drydock.tokens.decode(pair["refresh_token"], "refresh").family_id
    for _ in range(2):  # the second logout ends nothing
        out = await client.post("/api/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
    [ended] = events(caplog, "session_ended")
    assert fields(ended) == {
        "security_event": "session_ended",
        "user_id": user_id,
        "session_id": str(family),
        "how": "logout",
    }
