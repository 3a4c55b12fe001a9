"""Bounded sessions: an absolute lifetime per login carried through refresh rotations."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import jwt
import pytest

from service.app import DrydockAPI
from tests.service.auth_flow import (
    bearer,
    login,
    refresh,
    signed_up,
    use_fast_hashing,
)

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a different and long passphrase"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    use_fast_hashing(monkeypatch)
    caplog.set_level(logging.INFO, logger="drydock.security")


def family_of(app: DrydockAPI, pair: dict[str, Any]) -> uuid.UUID:
    family = app.drydock.tokens.decode(pair["refresh_token"], "refresh").family_id
    assert family is not None
    return family


async def logins(client: httpx.AsyncClient, email: str, count: int) -> list[dict[str, Any]]:
    pairs = []
    for _ in range(count):
        response = await login(client, email)
        assert response.status_code == 200, response.text
        pairs.append(response.json())
    return pairs


async def sessions_of(client: httpx.AsyncClient, pair: dict[str, Any]) -> httpx.Response:
    return await client.get("/api/auth/sessions", headers=bearer(pair["access_token"]))


async def change_password(
    client: httpx.AsyncClient, pair: dict[str, Any], current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        "/api/auth/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(pair["access_token"]),
    )


async def test_a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    db = app.drydock.db
    pair = await signed_up(client)
    family = family_of(app, pair)
    for _ in range(3):
        pair = (await refresh(client, pair["refresh_token"])).json()
    starts = await db.fetchval(
        "SELECT count(DISTINCT session_started_at) FILTER (WHERE session_started_at IS NOT NULL)"
        " || '/' || count(*) FROM refresh_tokens WHERE family_id = $1",
        family,
    )
    assert starts == "1/4", "every token of the family carries the login's start"

    # The login was 30 days less an hour ago: a refresh still works, cut to the session's end.
    await db.execute(
        "UPDATE refresh_tokens SET session_started_at = session_started_at "
        "- interval '30 days' + interval '1 hour' WHERE family_id = $1",
        family,
    )
    near_end = await refresh(client, pair["refresh_token"])
    assert near_end.status_code == 200, near_end.text
    pair = near_end.json()
    beyond_end = await db.fetchval(
        "SELECT expires_at - (session_started_at + interval '30 days') FROM refresh_tokens "
        "WHERE family_id = $1 AND used_at IS NULL",
        family,
    )
    assert beyond_end.total_seconds() <= 0, "the new refresh token ends with the session"
    token = jwt.decode(pair["refresh_token"], options={"verify_signature": False})
    assert token["exp"] - token["iat"] <= 3600, "and says so itself"

    # Past the end, the refresh token is refused although its own expiry is days away.
    await db.execute(
        "UPDATE refresh_tokens SET session_started_at = session_started_at - interval '2 hours',"
        " expires_at = expires_at + interval '7 days' WHERE family_id = $1",
        family,
    )
    refused = await refresh(client, pair["refresh_token"])
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "session_expired"
    assert "maximum lifetime of 30 days" in refused.json()["error"]["message"]


async def test_rows_written_without_a_start_count_from_the_familys_oldest_token(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    """The release before writes no session_started_at: its families still end."""
    db = app.drydock.db
    young, old = await signed_up(client), await signed_up(client)
    for pair, age in ((young, "29 days"), (old, "31 days")):
        await db.execute(
            "UPDATE refresh_tokens SET session_started_at = NULL, "
            "issued_at = issued_at - $2::text::interval WHERE family_id = $1",
            family_of(app, pair),
            age,
        )
    assert (await refresh(client, young["refresh_token"])).status_code == 200
    carried = await db.fetchval(
        "SELECT bool_and(r.session_started_at = (SELECT min(issued_at) FROM refresh_tokens f "
        "WHERE f.family_id = r.family_id)) FROM refresh_tokens r "
        "WHERE family_id = $1 AND session_started_at IS NOT NULL",
        family_of(app, young),
    )
    assert carried is True, "the successor records the start it was measured from"
    refused = await refresh(client, old["refresh_token"])
    assert refused.json()["error"]["code"] == "session_expired"
