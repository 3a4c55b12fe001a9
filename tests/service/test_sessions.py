"""Bounded sessions: an absolute lifetime per login carried through refresh rotations, the
caller's own sessions listed and ended, a password change that ends the others, and an
admin ending every session of an account."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import jwt
import pytest

from service.app import DrydockAPI
from tests.service.auth_flow import (
    PASSWORD,
    bearer,
    login,
    new_email,
    refresh,
    register,
    signed_up,
    use_fast_hashing,
)
from tests.service.conftest import AppFactory, client_for
from tests.service.helpers import make_user
from tests.service.security_events import events, fields

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


async def test_twelve_hours_and_half_an_hour_idle_for_asvs_level_2(
    app_factory: AppFactory,
) -> None:
    """SESSION_MAX_DAYS=0.5 and REFRESH_TOKEN_TTL_S=1800: twelve hours, half an hour idle."""
    app = await app_factory(session_max_days=0.5, refresh_token_ttl_s=1800)
    async with client_for(app) as client:
        pair = await signed_up(client)
        token = jwt.decode(pair["refresh_token"], options={"verify_signature": False})
        assert token["exp"] - token["iat"] == 1800, "idle for half an hour, it lapses"
        await app.drydock.db.execute(
            "UPDATE refresh_tokens SET session_started_at = session_started_at "
            "- interval '12 hours' WHERE family_id = $1",
            family_of(app, pair),
        )
        refused = await refresh(client, pair["refresh_token"])
    assert refused.json()["error"]["code"] == "session_expired"
    assert "maximum lifetime of 12 hours" in refused.json()["error"]["message"]


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


async def test_the_caller_lists_its_own_live_sessions_and_which_is_current(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    email = new_email()
    await register(client, email)
    first, second, third = await logins(client, email, 3)
    stranger = await signed_up(client)
    first = (await refresh(client, first["refresh_token"])).json()
    await client.post("/api/auth/logout", json={"refresh_token": third["refresh_token"]})

    listed = await sessions_of(client, second)
    assert listed.status_code == 200, listed.text
    sessions = listed.json()["sessions"]
    assert [s["id"] for s in sessions] == [
        str(family_of(app, second)),
        str(family_of(app, first)),
    ], "newest first; the logged-out one and another user's are not listed"
    assert [s["current"] for s in sessions] == [True, False]
    for session in sessions:
        assert set(session) == {"id", "started_at", "last_used_at", "expires_at", "current"}
        assert session["started_at"] <= session["expires_at"]
    mine_from_first = (await sessions_of(client, first)).json()["sessions"]
    assert [s["current"] for s in mine_from_first] == [False, True]
    assert len((await sessions_of(client, stranger)).json()["sessions"]) == 1


async def test_ending_a_session_refuses_its_refresh_and_never_reveals_another_users(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    email = new_email()
    user_id = (await register(client, email)).json()["id"]
    first, second = await logins(client, email, 2)
    stranger = await signed_up(client)

    async def end(pair: dict[str, Any], session_id: object) -> httpx.Response:
        return await client.delete(
            f"/api/auth/sessions/{session_id}", headers=bearer(pair["access_token"])
        )

    theirs = await end(second, family_of(app, stranger))
    unknown = await end(second, uuid.uuid4())
    for response in (theirs, unknown):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "session_not_found"
    assert theirs.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert (await refresh(client, stranger["refresh_token"])).status_code == 200, "untouched"
    assert (await end(second, "not-a-uuid")).status_code == 422

    ended = await end(second, family_of(app, first))
    assert ended.status_code == 204 and ended.content == b""
    refused = await refresh(client, first["refresh_token"])
    assert refused.json()["error"]["code"] == "token_revoked"
    assert (await end(second, family_of(app, first))).status_code == 404, "already ended"
    [event] = events(caplog, "session_ended")
    assert fields(event) == {
        "security_event": "session_ended",
        "user_id": user_id,
        "session_id": str(family_of(app, first)),
        "how": "ended",
    }

    # The ended session's access token lives out its lifetime (it is not stored), but it can
    # no longer manage sessions.
    assert (await client.get("/api/auth/me", headers=bearer(first["access_token"]))).is_success
    listed = await sessions_of(client, first)
    assert listed.status_code == 401 and listed.json()["error"]["code"] == "session_ended"
    assert (await end(first, family_of(app, second))).status_code == 401
    assert (await refresh(client, second["refresh_token"])).status_code == 200


async def test_a_password_change_needs_the_current_password_and_ends_the_other_sessions(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    email = new_email()
    user_id = (await register(client, email)).json()["id"]
    mine, other, another = await logins(client, email, 3)

    wrong = await change_password(client, mine, "not the current password")
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert fields(events(caplog, "login_failed")[0])["via"] == "password_change"
    for new in ("too short", "x" * 129, "control\x07character"):  # the registration policy
        refused = await change_password(client, mine, PASSWORD, new)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"][0]["field"] == "new_password"
        assert PASSWORD not in refused.text

    changed = await change_password(client, mine, PASSWORD)
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"sessions_ended": 2, "current_session_kept": True}
    for pair in (other, another):
        assert (await refresh(client, pair["refresh_token"])).json()["error"]["code"] == (
            "token_revoked"
        )
    assert (await refresh(client, mine["refresh_token"])).status_code == 200, "kept"
    assert (await login(client, email)).status_code == 401
    assert (await login(client, email, NEW_PASSWORD)).status_code == 200
    [event] = events(caplog, "password_changed")
    assert fields(event) == {
        "security_event": "password_changed",
        "user_id": user_id,
        "sessions_ended": 2,
    }


async def test_wrong_current_passwords_lock_the_account_like_failed_logins(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await register(client, email)
    [pair] = await logins(client, email, 1)
    statuses = [
        (await change_password(client, pair, f"wrong guess {i}")).status_code for i in range(5)
    ]
    assert statuses == [403, 403, 403, 403, 429]
    locked = await change_password(client, pair, PASSWORD)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "account_locked"
    assert int(locked.headers["retry-after"]) >= 1
    assert (await login(client, email)).json()["error"]["code"] == "account_locked"


async def test_a_token_without_a_session_keeps_none_on_password_change(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    email = new_email()
    user_id = (await register(client, email)).json()["id"]
    [pair] = await logins(client, email, 1)
    no_sid = {"access_token": app.drydock.tokens.issue_access(user_id, "user")}
    changed = await change_password(client, no_sid, PASSWORD)
    assert changed.json() == {"sessions_ended": 1, "current_session_kept": False}
    assert (await refresh(client, pair["refresh_token"])).status_code == 401


async def test_an_admin_ends_every_session_of_an_account(
    app: DrydockAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await make_user(app, "admin")
    email = new_email()
    user_id = (await register(client, email)).json()["id"]
    pairs = await logins(client, email, 2)
    bystander = await signed_up(client)
    path = f"/api/admin/users/{user_id}/sessions"

    as_user = await client.delete(path, headers=bearer(pairs[0]["access_token"]))
    assert as_user.status_code == 403
    ended = await client.delete(path, headers=admin.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"sessions_ended": 2}
    for pair in pairs:
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
    assert (await refresh(client, bystander["refresh_token"])).status_code == 200
    assert (await client.delete(path, headers=admin.headers)).json() == {"sessions_ended": 0}
    missing = await client.delete("/api/admin/users/999999/sessions", headers=admin.headers)
    assert missing.status_code == 404
    first = events(caplog, "sessions_revoked")[0]
    assert first.levelno == logging.INFO
    assert fields(first) == {
        "security_event": "sessions_revoked",
        "user_id": user_id,
        "admin_id": admin.user_id,
        "sessions_ended": 2,
    }


async def test_openapi_documents_the_session_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        ("/api/auth/sessions", "get"): {"200", "401", "429"},
        ("/api/auth/sessions/{session_id}", "delete"): {"204", "401", "404", "422", "429"},
        ("/api/auth/password", "post"): {"200", "401", "403", "422", "429"},
        ("/api/admin/users/{user_id}/sessions", "delete"): {"200", "401", "403", "404"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, set(responses))
        for status in statuses - {"200", "204"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorResponse"), (path, status)
        if "200" in responses:
            assert "$ref" in responses["200"]["content"]["application/json"]["schema"]
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"]
