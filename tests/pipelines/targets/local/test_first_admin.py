"""The first admin of a local environment: made by the pipeline before the release serves,
its password generated into the secret store, never reset by a later deploy, and never taken
from an account somebody registered under its address."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from pipelines.targets.base import TargetError
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.runtime import NAMES
from service.security.passwords import hash_password
from tests.conftest import LocalStack

pytestmark = pytest.mark.e2e

ANOTHER_PASSWORD = "an attacker's password, long enough"


def role_after_login(env: LocalEnvironment, email: str, password: str) -> str | None:
    with httpx.Client(base_url=env.url, timeout=10) as client:
        pair = client.post("/api/auth/login", json={"email": email, "password": password})
        if pair.status_code != 200:
            return None
        token = pair.json()["access_token"]
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        return str(me.json()["role"])


def sql(env: LocalEnvironment, statement: str, *args: object) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(env.database.url("app"))
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def set_password(env: LocalEnvironment, email: str, password: str) -> None:
    """What an admin changing their password leaves in the database."""
    sql(env, "UPDATE users SET password_hash = $2 WHERE email = $1", email, hash_password(password))


def artifact(env: LocalEnvironment) -> str:
    return str((env.desired() or {})["release"]["artifact"])


def test_up_made_the_first_admin_with_the_stored_password(local_staging: LocalStack) -> None:
    env = local_staging.environment
    password = env.secrets.get(NAMES.admin)
    assert role_after_login(env, env.spec.admin_email, password) == "admin"


def test_a_later_deploy_leaves_the_admin_and_its_password_alone(
    local_staging: LocalStack,
) -> None:
    env = local_staging.environment
    email, stored = env.spec.admin_email, env.secrets.get(NAMES.admin)
    changed = "changed by the operator after the first sign-in"
    set_password(env, email, changed)
    try:
        assert env.ensure_first_admin(artifact(env)) == (email, stored)
        assert role_after_login(env, email, changed) == "admin"
        assert role_after_login(env, email, stored) is None
    finally:
        sql(
            env,
            "UPDATE users SET password_hash = $2 WHERE email = $1",
            email,
            hash_password(stored),
        )


def test_an_address_registered_first_stops_the_pipeline_and_is_not_promoted(
    local_staging: LocalStack,
) -> None:
    env = local_staging.environment
    email = env.spec.admin_email
    sql(env, "DELETE FROM users WHERE email = $1", email)
    try:
        registered = httpx.post(
            f"{env.url}/api/auth/register",
            json={"email": email, "password": ANOTHER_PASSWORD},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        with pytest.raises(TargetError, match=f"refusing to make {email} an admin"):
            env.ensure_first_admin(artifact(env))
        assert role_after_login(env, email, ANOTHER_PASSWORD) == "user"
    finally:
        sql(env, "DELETE FROM users WHERE email = $1", email)
        env.ensure_first_admin(artifact(env))
    assert role_after_login(env, email, env.secrets.get(NAMES.admin)) == "admin"
