"""Auth endpoints over HTTP on a real database: the flow, the wire contract, validation,
registration control and password storage (create-admin: test_create_admin.py)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from service.app import DrydockAPI
from service.security import passwords
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

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

PAIR_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


async def test_register_login_refresh_logout_flow(client: httpx.AsyncClient) -> None:
    email = new_email()
    registered = await register(client, email)
    assert registered.status_code == 201, registered.text
    user = registered.json()
    assert set(user) == {"id", "email", "role"}
    assert (user["email"], user["role"]) == (email, "user")

    logged_in = await login(client, email)
    assert logged_in.status_code == 200, logged_in.text
    pair = logged_in.json()
    assert set(pair) == PAIR_KEYS
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 15 * 60

    me = await client.get("/api/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == user

    rotated = await refresh(client, pair["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new_pair = rotated.json()
    assert set(new_pair) == PAIR_KEYS
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert new_pair["access_token"] != pair["access_token"]
    me = await client.get("/api/auth/me", headers=bearer(new_pair["access_token"]))
    assert me.json() == user

    out = await client.post("/api/auth/logout", json={"refresh_token": new_pair["refresh_token"]})
    assert out.status_code == 204
    assert out.content == b""
    after = await refresh(client, new_pair["refresh_token"])
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "token_revoked"


async def test_register_normalises_email_and_refuses_duplicates(
    client: httpx.AsyncClient,
) -> None:
    local = new_email().split("@")[0]
    first = await register(client, f"  {local.upper()}@Example.COM ")
    assert first.status_code == 201, first.text
    assert first.json()["email"] == f"{local}@example.com"

    again = await register(client, f"{local}@example.com", "another good password")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "email_taken"
    assert set(error) >= {"code", "message", "requestId"}
    assert (await login(client, f"{local.title()}@EXAMPLE.com")).status_code == 200


async def test_registration_closed_by_flag(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_app = await app_factory()
    email = new_email()
    async with client_for(open_app) as c:
        assert (await register(c, email)).status_code == 201

    monkeypatch.setenv("FLAG_REGISTRATION_OPEN", "false")
    closed_app = await app_factory()
    async with client_for(closed_app) as c:
        refused = await register(c, new_email())
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "registration_closed"
        assert "closed" in refused.json()["error"]["message"]
        assert (await login(c, email)).status_code == 200, "existing accounts still log in"


async def test_wrong_password_and_unknown_email_answer_alike(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    wrong = await login(client, email, "not the right password")
    unknown = await login(client, new_email(), "not the right password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


SECRET = "Sup3r-secret-marker-"


INVALID_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/api/auth/register", {"email": "a@example.com", "password": SECRET[:8]}),
    ("/api/auth/register", {"email": "a@example.com", "password": SECRET * 10}),
    ("/api/auth/register", {"email": "a@example.com", "password": SECRET + "\x07bell"}),
    ("/api/auth/register", {"email": "not-an-email", "password": SECRET + "valid"}),
    ("/api/auth/register", {"email": "a@example.com", "password": SECRET, "role": "admin"}),
    ("/api/auth/login", {"email": "a@example.com", "password": SECRET * 10}),
    ("/api/auth/login", {"email": "a@example.com", "password": SECRET, "extra": 1}),
    ("/api/auth/login", {"password": SECRET}),
]


async def test_422_never_echoes_the_password(client: httpx.AsyncClient) -> None:
    for path, body in INVALID_BODIES:
        response = await client.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert error["fields"], "field errors are reported"
        assert SECRET[:8] not in response.text, body


async def test_password_is_not_trimmed(client: httpx.AsyncClient) -> None:
    email, padded = new_email(), "  padded with spaces  "
    assert (await register(client, email, padded)).status_code == 201
    assert (await login(client, email, padded.strip())).status_code == 401
    assert (await login(client, email, padded)).status_code == 200


async def test_auth_responses_are_not_cacheable(client: httpx.AsyncClient) -> None:
    email = new_email()
    responses = [
        await register(client, email),
        await login(client, email),
        await login(client, email, "wrong password here"),
        await client.post("/api/auth/login", json={}),
        await client.get("/api/auth/me"),
    ]
    pair = responses[1].json()
    responses.append(await refresh(client, pair["refresh_token"]))
    for response in responses:
        assert response.headers["cache-control"] == "no-store", response.request.url


async def test_me_requires_a_bearer_access_token(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, bearer("not.a.jwt")):
        response = await client.get("/api/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_me_for_a_deleted_account_is_401(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    email = new_email()
    pair = await signed_up(client, email)
    await app.drydock.db.execute("DELETE FROM users WHERE email = $1", email)
    response = await client.get("/api/auth/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 401


async def test_openapi_documents_auth_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        ("/api/auth/register", "post"): {"201", "403", "409", "422", "429"},
        ("/api/auth/login", "post"): {"200", "401", "422", "429"},
        ("/api/auth/refresh", "post"): {"200", "401", "422", "429"},
        ("/api/auth/logout", "post"): {"204", "401", "422", "429"},
        ("/api/auth/me", "get"): {"200", "401", "429"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, set(responses))
        error_schema = responses["401" if "401" in responses else "403"]["content"]
        assert error_schema["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
        if "422" in responses:
            ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), "not FastAPI's default HTTPValidationError"
        assert "Retry-After" in responses["429"]["headers"]
    login_schema = paths["/api/auth/login"]["post"]["responses"]["200"]["content"]
    pair_ref = login_schema["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(spec["components"]["schemas"][pair_ref]["properties"]) == PAIR_KEYS


async def test_passwords_stored_as_argon2id(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    stored = await app.drydock.db.fetchval(
        "SELECT password_hash FROM users WHERE email = $1", email
    )
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert hashlib.sha256(PASSWORD.encode()).hexdigest() not in stored


def test_the_unknown_account_hash_is_made_on_first_use_with_the_production_parameters() -> None:
    """Importing the service hashes nothing (each replica and one-off imports it); the first
    login for an unknown email makes the dummy hash it verifies against, once, with the
    parameters a real account's hash has, so both cost the same."""
    probe = (
        "import argon2\n"
        "made = []\n"
        "real = argon2.PasswordHasher.hash\n"
        "argon2.PasswordHasher.hash = lambda self, *a, **k: made.append(1) or real(self, *a, **k)\n"
        "from service.security import passwords\n"
        "assert made == [], 'hashed at import'\n"
        "assert passwords.verify_password(None, 'any password') is False\n"
        "assert passwords.verify_password(None, 'another') is False\n"
        "assert made == [1], made\n"
        "assert not passwords.needs_rehash(passwords._dummy_hash(passwords._hasher))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr


async def test_weak_hash_is_upgraded_on_login(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    email = new_email()
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    await app.drydock.db.execute(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2)", email, weak
    )
    assert passwords.needs_rehash(weak)
    assert (await login(client, email)).status_code == 200
    stored = await app.drydock.db.fetchval(
        "SELECT password_hash FROM users WHERE email = $1", email
    )
    assert stored != weak
    assert not passwords.needs_rehash(stored)
    assert (await login(client, email)).status_code == 200


async def test_password_hashing_runs_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[bool] = []

    def running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    real_hash, real_verify = passwords.hash_password, passwords.verify_password

    def spy_hash(password: str) -> str:
        on_loop.append(running_loop())
        return real_hash(password)

    def spy_verify(password_hash: str | None, password: str) -> bool:
        on_loop.append(running_loop())
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "hash_password", spy_hash)
    monkeypatch.setattr(passwords, "verify_password", spy_verify)
    email = new_email()
    await signed_up(client, email)
    await login(client, new_email())
    assert on_loop == [False, False, False], "hash, verify, unknown-email verify"
