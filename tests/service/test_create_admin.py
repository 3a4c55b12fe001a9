"""`python -m service create-admin`: a new admin with the given password, and never an
account somebody else registered under that address first (open, unverified registration)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.__main__ import main
from service.app import DrydockAPI
from tests.service.auth_flow import (
    PASSWORD,
    bearer,
    login,
    new_email,
    refresh,
    signed_up,
    use_fast_hashing,
)

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "the operator's own admin password"


@pytest.fixture(autouse=True)
def _admin_command(
    monkeypatch: pytest.MonkeyPatch, fresh_database: str, client: httpx.AsyncClient
) -> None:
    """create-admin on the app's database, with the operator's password in ADMIN_PASSWORD."""
    use_fast_hashing(monkeypatch)
    monkeypatch.setenv("ENV", "test")
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)


async def create_admin(*args: str) -> int:
    # main() runs its own event loop, so it goes to a thread.
    return await asyncio.to_thread(main, ["create-admin", *args])


async def role_after_login(client: httpx.AsyncClient, email: str, password: str) -> str | None:
    """The role /api/auth/me reports after logging in with `password`; None if refused."""
    pair = await login(client, email, password)
    if pair.status_code != 200:
        return None
    me = await client.get("/api/auth/me", headers=bearer(pair.json()["access_token"]))
    return str(me.json()["role"])


async def test_creates_an_admin_with_the_given_password(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await create_admin(" Root@Example.COM ") == 0
    assert "root@example.com: created" in capsys.readouterr().out
    assert await role_after_login(client, "root@example.com", ADMIN_PASSWORD) == "admin"


async def test_an_address_registered_first_does_not_become_admin(
    app: DrydockAPI, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    intended = new_email("admin")
    attacker = await signed_up(client, intended)  # registered before the operator ran it

    assert await create_admin(intended) == 1
    refusal = capsys.readouterr().err
    assert f"refusing to make {intended} an admin" in refusal
    assert "--promote-existing" in refusal and "DELETE /api/admin/users/" in refusal

    assert await role_after_login(client, intended, PASSWORD) == "user"
    assert await role_after_login(client, intended, ADMIN_PASSWORD) is None
    rotated = await refresh(client, attacker["refresh_token"])
    assert rotated.status_code == 200
    me = await client.get("/api/auth/me", headers=bearer(rotated.json()["access_token"]))
    assert me.json()["role"] == "user"
    assert await app.drydock.db.fetchval("SELECT count(*) FROM users WHERE role = 'admin'") == 0


async def test_promote_existing_takes_the_account_over_and_ends_its_sessions(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    email = new_email("operator")
    earlier = await signed_up(client, email)

    assert await create_admin(email, "--promote-existing") == 0
    assert "promoted to admin" in capsys.readouterr().out
    assert await role_after_login(client, email, ADMIN_PASSWORD) == "admin"
    assert await role_after_login(client, email, PASSWORD) is None
    # A refresh reads the role afresh: a session from before must not turn into an admin one.
    stale = await refresh(client, earlier["refresh_token"])
    assert stale.status_code == 401, stale.text


async def test_running_it_again_leaves_the_admin_and_its_password_alone(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = new_email("admin")
    assert await create_admin(email) == 0
    monkeypatch.setenv("ADMIN_PASSWORD", "another password of decent length")
    assert await create_admin(email) == 0
    assert "already an admin; left as it is" in capsys.readouterr().out
    assert await role_after_login(client, email, ADMIN_PASSWORD) == "admin"


@pytest.mark.parametrize(
    ("email", "password", "expected"),
    [
        ("not-an-address", ADMIN_PASSWORD, "not a valid email address"),
        ("fine@example.com", "short", "password rejected"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    app: DrydockAPI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    email: str,
    password: str,
    expected: str,
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", password)
    assert await create_admin(email) == 2
    assert expected in capsys.readouterr().err
    assert await app.drydock.db.fetchval("SELECT count(*) FROM users") == 0
