"""Brute-force lockout: per account, in PostgreSQL, shared by every app instance."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.app import DrydockAPI
from service.security import passwords
from tests.service.auth_flow import PASSWORD, login, new_email, register, use_fast_hashing
from tests.service.conftest import AppFactory, client_for

pytestmark = pytest.mark.integration

WRONG = "definitely not the password"
MAX_FAILURES = 5


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def assert_locked(response: httpx.Response, lockout_s: int = 15 * 60) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "account_locked"
    assert 1 <= int(response.headers["retry-after"]) <= lockout_s


def metric(app: DrydockAPI, name: str) -> float:
    return app.drydock.metrics.registry.get_sample_value(name) or 0.0


async def fail(client: httpx.AsyncClient, email: str, times: int) -> list[int]:
    return [(await login(client, email, WRONG)).status_code for _ in range(times)]


async def test_five_failures_lock_the_account(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    assert await fail(client, email, MAX_FAILURES - 1) == [401] * (MAX_FAILURES - 1)
    # The failure that spends the budget already answers with the lock.
    assert_locked(await login(client, email, WRONG))
    assert_locked(await login(client, email))
    assert metric(app, "auth_login_failures_total") == MAX_FAILURES
    assert metric(app, "auth_lockouts_total") == 1
    locked_until = await app.drydock.db.fetchval(
        "SELECT locked_until > now() + interval '14 min' FROM login_failures WHERE email = $1",
        email,
    )
    assert locked_until is True


async def test_unknown_email_locks_alike(client: httpx.AsyncClient) -> None:
    known, unknown = new_email(), new_email()
    await register(client, known)
    for email in (known, unknown):
        assert await fail(client, email, MAX_FAILURES - 1) == [401] * (MAX_FAILURES - 1)
    last = [await login(client, email, WRONG) for email in (known, unknown)]
    for response in last:
        assert_locked(response)
    assert last[0].json()["error"]["message"] == last[1].json()["error"]["message"]


async def test_success_resets_the_counter(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    for _ in range(3):
        assert await fail(client, email, MAX_FAILURES - 1) == [401] * (MAX_FAILURES - 1)
        assert (await login(client, email)).status_code == 200


async def test_lock_is_per_account_and_email_normalised(client: httpx.AsyncClient) -> None:
    email, bystander = new_email(), new_email()
    await register(client, email)
    await register(client, bystander)
    variants = [email.upper(), f"  {email}", email.title(), email]
    for variant in variants:
        assert (await login(client, variant, WRONG)).status_code == 401
    assert_locked(await login(client, email.capitalize(), WRONG))
    assert (await login(client, bystander)).status_code == 200


async def test_lockout_is_shared_by_two_instances(app_factory: AppFactory) -> None:
    first, second = await app_factory(), await app_factory()
    email = new_email()
    async with client_for(first) as a, client_for(second) as b:
        await register(a, email)
        statuses = [(await login((a, b)[i % 2], email, WRONG)).status_code for i in range(4)]
        assert statuses == [401] * 4
        assert_locked(await login(b, email, WRONG))
        assert_locked(await login(a, email))
        assert_locked(await login(b, email))


async def test_lock_expires_and_the_count_starts_over(app_factory: AppFactory) -> None:
    app = await app_factory(login_lockout_s=1)
    email = new_email()
    async with client_for(app) as c:
        await register(c, email)
        await fail(c, email, MAX_FAILURES - 1)
        locked = await login(c, email, WRONG)
        assert_locked(locked, lockout_s=1)
        await asyncio.sleep(1.1)
        assert (await login(c, email, WRONG)).status_code == 401, "one failure after expiry"
        assert (await login(c, email)).status_code == 200


async def test_idle_failures_are_forgotten(app: DrydockAPI, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    await fail(client, email, MAX_FAILURES - 1)
    await app.drydock.db.execute(
        "UPDATE login_failures SET updated_at = now() - interval '16 min' WHERE email = $1", email
    )
    assert await fail(client, email, MAX_FAILURES - 1) == [401] * (MAX_FAILURES - 1)


async def test_parallel_guesses_check_at_most_the_budget(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = new_email()
    await register(client, email)
    checked: list[str] = []
    real_verify = passwords.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    guesses = [f"guess number {i:02d}" for i in range(20)]
    responses = await asyncio.gather(*(login(client, email, guess) for guess in guesses))
    assert len(checked) <= MAX_FAILURES
    assert {r.status_code for r in responses} == {401, 429}
    assert sum(r.status_code == 401 for r in responses) <= MAX_FAILURES
    assert_locked(await login(client, email, PASSWORD))
