"""JWT forgeries, signing-key rotation, and refresh-token rotation, reuse and revocation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest

from service.app import DrydockAPI
from service.security import tokens as tokens_module
from tests.service.auth_flow import (
    bearer,
    login,
    new_email,
    refresh,
    signed_up,
    use_fast_hashing,
)
from tests.service.conftest import TEST_SECRET, AppFactory, client_for
from tests.service.helpers import make_user

pytestmark = [
    pytest.mark.integration,
    # Forging HS512 with the HS256-sized test key is the point of one case.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

NEW_SECRET = "rotated-signing-key-fedcba9876543210-fedcba98"
REQUIRED = ("exp", "nbf", "iat", "iss", "aud", "sub", "typ", "jti")
TEN_YEARS = 10 * 365 * 24 * 3600


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def rotated_settings(cutoff: datetime) -> dict[str, Any]:
    """An app after a routine rotation: k2 signs, k1 verifies access tokens until `cutoff`."""
    return {
        "jwt_secret": NEW_SECRET,
        "jwt_kid": "k2",
        "jwt_previous_secret": TEST_SECRET,
        "jwt_previous_kid": "k1",
        "jwt_previous_not_after": cutoff,
    }


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user_id: int, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": str(user_id),
        "role": "admin",
        "typ": "access",
        "iss": "drydock",
        "aud": "drydock-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def sign(payload: dict[str, Any], key: str = TEST_SECRET, alg: str = "HS256", **header: Any) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": "k1", **header})


def unsigned(payload: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(payload)}."


def tampered(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    return f"{header}.{_b64(body)}.{signature}"


async def _user(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    pair = await signed_up(client)
    me = await client.get("/api/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, "the genuine token is accepted"
    return int(me.json()["id"]), pair


def access_forgeries(uid: int, pair: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    forged = {
        "alg none": unsigned(claims(uid)),
        "HS256 with a wrong key": sign(claims(uid), key="an-attacker-key-" + "x" * 32),
        "unknown kid": sign(claims(uid), kid="k9"),
        "no kid": jwt.encode(claims(uid), TEST_SECRET, algorithm="HS256"),
        "HS512 where HS256 is configured": sign(claims(uid), alg="HS512"),
        "expired": sign(claims(uid, iat=now - 900, nbf=now - 900, exp=now - 60)),
        "nbf in the future": sign(claims(uid, nbf=now + 120)),
        "wrong audience": sign(claims(uid, aud="another-api")),
        "wrong issuer": sign(claims(uid, iss="someone-else")),
        "refresh token as access token": pair["refresh_token"],
        "payload tampered after signing": tampered(pair["access_token"], role="admin"),
        "non-numeric subject": sign(claims(uid, sub="admin")),
        "malformed": "not-a-jwt",
        "lifetime above the access-token lifetime": sign(claims(uid, exp=now + 15 * 60 + 6)),
        "ten-year lifetime": sign(claims(uid, exp=now + TEN_YEARS)),
        "ten-year lifetime issued in the past": sign(
            claims(uid, iat=now - TEN_YEARS, nbf=now - TEN_YEARS, exp=now + 60)
        ),
    }
    for claim in REQUIRED:
        forged[f"missing {claim}"] = sign(claims(uid, **{claim: None}))
    return forged


async def test_forged_access_tokens_are_rejected(client: httpx.AsyncClient) -> None:
    uid, pair = await _user(client)
    accepted = []
    for name, token in access_forgeries(uid, pair).items():
        response = await client.get("/api/auth/me", headers=bearer(token))
        if response.status_code != 401 or response.json()["error"]["code"] != "invalid_token":
            accepted.append((name, response.status_code))
    assert accepted == []


async def test_forged_refresh_tokens_are_rejected(client: httpx.AsyncClient) -> None:
    _, pair = await _user(client)
    genuine = jwt.decode(pair["refresh_token"], options={"verify_signature": False})
    now = int(time.time())
    forged = {
        "access token as refresh token": pair["access_token"],
        "alg none": unsigned(genuine),
        "HS256 with a wrong key": sign(genuine, key="an-attacker-key-" + "x" * 32),
        "HS512 where HS256 is configured": sign(genuine, alg="HS512"),
        "expired": sign({**genuine, "exp": now - 60}),
        "wrong audience": sign({**genuine, "aud": "another-api"}),
        "validly signed but never issued": sign({**genuine, "jti": str(uuid.uuid4())}),
    }
    accepted = []
    for name, token in forged.items():
        response = await refresh(client, token)
        if response.status_code != 401:
            accepted.append((name, response.status_code))
    assert accepted == []
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_key_rotation_keeps_access_tokens_and_ends_refresh_tokens(
    app_factory: AppFactory,
) -> None:
    old_app = await app_factory()
    async with client_for(old_app) as c:
        email = new_email()
        old = await signed_up(c, email)

    rotated = await app_factory(**rotated_settings(in_seconds(600)))
    async with client_for(rotated) as c:
        me = await c.get("/api/auth/me", headers=bearer(old["access_token"]))
        assert me.status_code == 200, "sessions survive the rotation until access expiry"
        refused = await refresh(c, old["refresh_token"])
        assert refused.status_code == 401
        assert "retired key" in refused.json()["error"]["message"]
        new = (await login(c, email)).json()
        assert jwt.get_unverified_header(new["access_token"])["kid"] == "k2"
        assert (await refresh(c, new["refresh_token"])).status_code == 200

    retired = await app_factory(jwt_secret=NEW_SECRET, jwt_kid="k2")
    async with client_for(retired) as c:
        response = await c.get("/api/auth/me", headers=bearer(old["access_token"]))
        assert response.status_code == 401, "once the previous key is dropped, so are its tokens"


async def test_an_admin_token_signed_with_the_previous_key_and_a_ten_year_expiry_is_refused(
    app_factory: AppFactory,
) -> None:
    """Whoever holds a rotated-out key must not mint long-lived admin tokens with it."""
    app = await app_factory(**rotated_settings(in_seconds(600)))
    admin = await make_user(app, "admin")
    victim = await make_user(app)
    now = int(time.time())
    forever = sign(claims(admin.user_id, exp=now + TEN_YEARS))
    with_the_current_key = sign(
        claims(admin.user_id, exp=now + TEN_YEARS), key=NEW_SECRET, kid="k2"
    )
    async with client_for(app) as c:
        for token in (forever, with_the_current_key):
            response = await c.delete(f"/api/admin/users/{victim.user_id}", headers=bearer(token))
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_token"
        assert await app.drydock.db.fetchval(
            "SELECT count(*) FROM users WHERE id = $1", victim.user_id
        ), "the admin action did not happen"
        ordinary = sign(claims(admin.user_id, exp=now + 600))
        allowed = await c.delete(f"/api/admin/users/{victim.user_id}", headers=bearer(ordinary))
        assert allowed.status_code == 204, "a previous-key token of an access lifetime still works"


async def test_previous_key_tokens_are_refused_after_the_cutoff_even_unexpired(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await app_factory(**rotated_settings(in_seconds(60)))
    uid = (await make_user(app)).user_id
    old = sign(claims(uid, role="user", exp=int(time.time()) + 600))
    current = app.drydock.tokens.issue_access(uid, "user")
    async with client_for(app) as c:
        assert (await c.get("/api/auth/me", headers=bearer(old))).status_code == 200
        # The token is now in the verified-token cache; move this process's token clock past
        # the cutoff (well before the token's own expiry).
        later = time.time() + 120
        monkeypatch.setattr(tokens_module, "time", SimpleNamespace(time=lambda: later))
        refused = await c.get("/api/auth/me", headers=bearer(old))
        assert refused.status_code == 401
        assert "retired key" in refused.json()["error"]["message"]
        assert (await c.get("/api/auth/me", headers=bearer(current))).status_code == 200

    started_after_cutoff = await app_factory(**rotated_settings(in_seconds(-1)))
    async with client_for(started_after_cutoff) as c:
        response = await c.get("/api/auth/me", headers=bearer(old))
        assert response.status_code == 401, "a replica started after the cutoff never loads it"


async def test_a_compromise_rotation_refuses_previous_key_tokens_at_once(
    app_factory: AppFactory,
) -> None:
    """`--compromised` keeps no previous key: a replica on the new keys refuses its tokens."""
    old_app = await app_factory()
    async with client_for(old_app) as c:
        session = await signed_up(c, new_email())
    new_app = await app_factory(jwt_secret=NEW_SECRET, jwt_kid="k2")
    async with client_for(new_app) as c:
        me = await c.get("/api/auth/me", headers=bearer(session["access_token"]))
        assert me.status_code == 401
        assert (await refresh(c, session["refresh_token"])).status_code == 401


async def test_refresh_tokens_are_stored_hashed(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    pair = await signed_up(client)
    jti = uuid.UUID(jwt.decode(pair["refresh_token"], options={"verify_signature": False})["jti"])
    row = await app.drydock.db.fetchrow("SELECT * FROM refresh_tokens WHERE id = $1", jti)
    assert row is not None
    assert bytes(row["token_hash"]) == hashlib.sha256(pair["refresh_token"].encode()).digest()
    assert row["kid"] == "k1"
    assert row["used_at"] is None
    assert row["revoked_at"] is None
    stored = " ".join(str(value) for value in row.values())
    assert pair["refresh_token"] not in stored


async def test_reusing_a_rotated_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    email = new_email()
    first = await signed_up(client, email)
    other_session = await login(client, email)
    second = (await refresh(client, first["refresh_token"])).json()

    replay = await refresh(client, first["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "token_reused"
    successor = await refresh(client, second["refresh_token"])
    assert successor.status_code == 401, "the whole family is revoked, successor included"
    assert successor.json()["error"]["code"] == "token_revoked"
    unrelated = await refresh(client, other_session.json()["refresh_token"])
    assert unrelated.status_code == 200, "another login's family is untouched"


async def test_concurrent_refresh_of_one_token_succeeds_once(client: httpx.AsyncClient) -> None:
    pair = await signed_up(client)
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401, 401, 401, 401]
    winner = next(r for r in responses if r.status_code == 200).json()
    # The losers presented a used token: reuse, so the family (winner included) is revoked.
    assert (await refresh(client, winner["refresh_token"])).status_code == 401


async def test_refresh_expired_in_the_database_is_refused(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    pair = await signed_up(client)
    await app.drydock.db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 s'")
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


async def test_refresh_picks_up_the_current_role(
    app: DrydockAPI, client: httpx.AsyncClient
) -> None:
    uid, pair = await _user(client)
    await app.drydock.db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uid)
    new = (await refresh(client, pair["refresh_token"])).json()
    assert app.drydock.tokens.decode(new["access_token"], "access").role == "admin"


async def test_logout_revokes_the_family_and_is_idempotent(client: httpx.AsyncClient) -> None:
    first = await signed_up(client)
    second = (await refresh(client, first["refresh_token"])).json()

    async def logout(token: str) -> httpx.Response:
        return await client.post("/api/auth/logout", json={"refresh_token": token})

    assert (await logout(first["refresh_token"])).status_code == 204, "any token of the family"
    assert (await refresh(client, second["refresh_token"])).status_code == 401
    assert (await logout(second["refresh_token"])).status_code == 204
    assert (await logout("forged.token.value")).status_code == 401
    assert (await logout(first["access_token"])).status_code == 401
