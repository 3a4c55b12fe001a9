"""Breached passwords (ASVS 2.1.7) without a network: the bundled list of common ones, and
Have I Been Pwned's downloadable list searched in place (service/security/breached.py)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path

import pytest

from service.models import password_problem
from service.security.breached import BreachedPasswords, _bisect, common_passwords
from service.settings import SettingsError, load_settings
from tests.service.auth_flow import PASSWORD, bearer, new_email, register, signed_up
from tests.service.conftest import AppFactory, client_for
from tests.service.helpers import make_user
from tests.service.security_events import events, fields

LEAKED = "correct horse battery staple, leaked"


def sha1(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


def pwned_file(path: Path, passwords: list[str], others: int = 3000) -> Path:
    """A file in Pwned Passwords' downloadable form: `SHA1:count` lines sorted by hash."""
    hashes = {sha1(p) for p in passwords} | {secrets.token_hex(20).upper() for _ in range(others)}
    lines = [f"{h}:{len(h) % 97 + 1}" for h in sorted(hashes)]
    path.write_text("\r\n".join(lines) + "\r\n")  # as the downloader writes it
    return path


@pytest.mark.unit
def test_every_hash_in_the_file_is_found_and_no_other(tmp_path: Path) -> None:
    hashes = sorted(secrets.token_hex(20).upper() for _ in range(500))
    path = tmp_path / "pwned.txt"
    path.write_text("".join(f"{h}:{i + 1}\n" for i, h in enumerate(hashes)))
    found = BreachedPasswords(path)
    # seen() hashes a password; look the hashes up directly through the same bisection.

    with path.open("rb") as handle:
        import mmap

        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            assert all(_bisect(data, h.encode()) for h in hashes)  # first and last included
            absent = {secrets.token_hex(20).upper() for _ in range(500)} - set(hashes)
            assert not any(_bisect(data, h.encode()) for h in absent)
            assert not _bisect(data, b"0" * 40) and not _bisect(data, b"F" * 40)
    assert found.path == path


@pytest.mark.unit
def test_a_password_in_the_file_is_seen(tmp_path: Path) -> None:
    breached = BreachedPasswords(pwned_file(tmp_path / "pwned.txt", [LEAKED]))
    assert breached.seen(LEAKED)
    assert not breached.seen(LEAKED + "!")


@pytest.mark.unit
def test_the_bundled_list_refuses_common_passwords_whatever_their_case() -> None:
    assert "qwerty123456" in common_passwords()
    assert password_problem("QWERTY123456") == (
        "is one of the passwords most often found in breaches; choose another"
    )
    assert password_problem("a long passphrase nobody has used") is None
    assert all(len(p) >= 12 for p in common_passwords())  # shorter ones fail the length rule


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "BREACHED_PASSWORDS_FILE cannot be read"), ("password\n", "does not start with")],
    ids=["missing", "not-sha1"],
)
def test_a_bad_list_file_refuses_to_start_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    path = tmp_path / "pwned.txt"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("BREACHED_PASSWORDS_FILE", str(path))
    with pytest.raises(SettingsError, match=message):
        load_settings(env="development")


@pytest.mark.integration
async def test_registration_and_password_change_refuse_a_breached_password(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory(breached_passwords_file=str(pwned_file(tmp_path / "p.txt", [LEAKED])))
    async with client_for(app) as client:
        refused = await register(client, new_email(), LEAKED)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "password_breached"
        common = await register(client, new_email(), "qwerty123456")
        assert common.status_code == 422 and "breaches" in common.text
        pair = await signed_up(client)  # the usual test password is in no list
        changed = await client.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": LEAKED},
            headers=bearer(pair["access_token"]),
        )
        assert changed.status_code == 422 and changed.json()["error"]["code"] == "password_breached"


@pytest.mark.integration
async def test_logins_that_succeed_and_access_refused_are_security_events(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drydock.security")
    app = await app_factory()
    async with client_for(app) as client:
        email = new_email()
        assert (await register(client, email)).status_code == 201
        await signed_up(client, new_email())
        user = await make_user(app)
        denied = await client.delete(f"/api/admin/users/{user.user_id}", headers=user.headers)
        assert denied.status_code == 403
    succeeded = [fields(r) for r in events(caplog, "login_succeeded")]
    assert succeeded and all(isinstance(f["user_id"], int) for f in succeeded)
    assert all(email not in r.getMessage() for r in caplog.records)
    [refusal] = [fields(r) for r in events(caplog, "access_denied")]
    assert refusal["user_id"] == user.user_id and refusal["needed"] == "admin"
