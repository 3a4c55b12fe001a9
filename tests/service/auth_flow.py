"""Helpers for auth tests: accounts made through the real HTTP endpoints."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from service.security import passwords

PASSWORD = "correct horse battery staple"


_FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def use_fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest, so tests that log in many times stay fast; the production
    parameters have their own test."""
    monkeypatch.setattr(passwords, "_hasher", _FAST_HASHER)


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(4)}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/auth/register", json={"email": email, "password": password})


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


async def signed_up(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    """Register and log in; the login response body (access_token, refresh_token, ...)."""
    email = email or new_email()
    registered = await register(client, email)
    assert registered.status_code == 201, registered.text
    response = await login(client, email)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
