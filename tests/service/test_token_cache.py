from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from service.security.tokens import InvalidToken, TokenService
from service.settings import Settings

pytestmark = pytest.mark.unit


def service() -> TokenService:
    return TokenService(Settings(jwt_secret="k" * 40, access_token_ttl_s=60))


def test_verified_access_token_is_served_from_cache_until_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = service()
    token = tokens.issue_access(7, "user")
    full_checks: list[str] = []
    real_decode = tokens._decode

    def spy(token: str, expected: str) -> object:
        full_checks.append(expected)
        return real_decode(token, expected)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens, "_decode", spy)
    first = tokens.decode(token, "access")
    assert tokens.decode(token, "access") is first
    assert full_checks == ["access"], "second use is a cache hit"
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    tokens.decode(token, "access")
    assert full_checks == ["access", "access"], "an expired cache entry is verified again"


def test_cache_never_admits_a_refresh_token_as_access() -> None:
    tokens = service()
    import uuid

    refresh = tokens.issue_refresh(7, "user", uuid.uuid4(), uuid.uuid4())
    with pytest.raises(InvalidToken):
        tokens.decode(refresh, "access")
    with pytest.raises(InvalidToken):
        tokens.decode(refresh, "access")


def test_cache_stops_honouring_a_previous_key_token_at_its_cutoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_key, new_key = "o" * 40, "n" * 40
    before = TokenService(Settings(jwt_secret=old_key, jwt_kid="k1", access_token_ttl_s=600))
    token = before.issue_access(7, "admin")
    cutoff = datetime.now(UTC) + timedelta(seconds=60)
    after = TokenService(
        Settings(
            jwt_secret=new_key,
            jwt_kid="k2",
            jwt_previous_secret=old_key,
            jwt_previous_kid="k1",
            jwt_previous_not_after=cutoff,
            access_token_ttl_s=600,
        )
    )
    assert after.decode(token, "access").kid == "k1"
    assert after.decode(token, "access").kid == "k1", "served from the cache"
    past_cutoff = cutoff.timestamp() + 1  # the token itself is good for ten minutes
    monkeypatch.setattr(time, "time", lambda: past_cutoff)
    with pytest.raises(InvalidToken, match="retired key"):
        after.decode(token, "access")
