"""The signing key's rotation rules (routine, compromise, the cutoff), and what a local
replica is handed from the store, read back by the service's own settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.spec import defaults
from pipelines.targets.base import TargetError
from pipelines.targets.local.layout import EnvLayout
from pipelines.targets.local.runtime import NAMES, ensure_secrets, open_store, replica_env
from pipelines.targets.signing_keys import Keyring, access_lifetime_s
from service.settings import load_settings

pytestmark = pytest.mark.unit

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(seconds=15 * 60)


def test_the_cutoff_is_the_services_access_token_lifetime() -> None:
    assert access_lifetime_s() == load_settings(env="test").access_token_ttl_s == 15 * 60


def test_routine_keeps_the_old_key_for_one_access_lifetime() -> None:
    ring, dropped = Keyring("k1", "s1").rotated("staging", "k2", "s2", False, T0)
    assert ring == Keyring("k2", "s2", "k1", "s1", "2030-01-01T12:15:00Z")
    assert dropped == ()
    assert ring.cutoff == T0 + LIFETIME
    assert Keyring.parse(ring.to_json(), "here") == ring


def test_a_second_routine_rotation_inside_the_cutoff_is_refused() -> None:
    ring, _ = Keyring("k1", "s1").rotated("staging", "k2", "s2", False, T0)
    with pytest.raises(TargetError) as excinfo:
        ring.rotated("staging", "k3", "s3", False, T0 + LIFETIME - timedelta(seconds=10))
    message = str(excinfo.value)
    assert "the previous signing key (k1) still verifies access tokens until" in message
    assert "2030-01-01T12:15:00Z (10 s from now)" in message
    assert "--compromised" in message and "nothing was changed" in message
    assert "s1" not in message and "s2" not in message


def test_a_routine_rotation_after_the_cutoff_drops_the_old_previous_key() -> None:
    ring, _ = Keyring("k1", "s1").rotated("staging", "k2", "s2", False, T0)
    later = T0 + LIFETIME + timedelta(seconds=1)
    again, dropped = ring.rotated("staging", "k3", "s3", False, later)
    assert dropped == ("k1",)
    assert (again.kid, again.previous_kid, again.previous_secret) == ("k3", "k2", "s2")


def test_compromise_keeps_no_previous_key_even_inside_the_cutoff() -> None:
    ring, _ = Keyring("k1", "s1").rotated("staging", "k2", "s2", False, T0)
    fresh, dropped = ring.rotated("staging", "k3", "s3", True, T0 + timedelta(seconds=1))
    assert fresh == Keyring("k3", "s3")
    assert dropped == ("k1", "k2")
    assert json.loads(fresh.to_json())["previous_secret"] == ""


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"kid": "k1"}', '{"kid": "k1", "secret": "s", "x": 1}']
)
def test_a_damaged_keyring_is_named_and_never_echoed(text: str) -> None:
    with pytest.raises(TargetError, match=r"secret drydock/staging/jwt .*restore"):
        Keyring.parse(text, "secret drydock/staging/jwt")


# -- what a local replica is handed -------------------------------------------------------


def replica_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    layout = EnvLayout("staging", tmp_path / "staging")
    env = replica_env(layout, defaults("staging"), open_store(layout), {})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    layout = EnvLayout("staging", tmp_path / "staging")
    layout.root.mkdir(parents=True, mode=0o700)
    ensure_secrets(open_store(layout))
    return tmp_path


def test_a_replica_gets_the_previous_key_with_its_cutoff_until_then(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(EnvLayout("staging", store_dir / "staging"))
    old = store.describe(NAMES.jwt).current.id
    cutoff = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=300)
    store.rotate(NAMES.jwt, "n" * 64, previous_not_after=cutoff)
    env = replica_settings(store_dir, monkeypatch)
    assert env["JWT_PREVIOUS_KID"] == f"staging-{old}"
    assert env["JWT_PREVIOUS_NOT_AFTER"] == cutoff.isoformat().replace("+00:00", "Z")
    settings = load_settings()  # the service accepts what the agent hands a replica
    assert settings.jwt_previous_not_after == cutoff
    assert settings.jwt_previous_secret == store.get(NAMES.jwt, "previous")


def test_past_its_cutoff_a_replica_is_not_handed_the_previous_key(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(EnvLayout("staging", store_dir / "staging"))
    store.rotate(NAMES.jwt, "n" * 64, previous_not_after=datetime.now(UTC) - timedelta(seconds=1))
    env = replica_settings(store_dir, monkeypatch)
    assert not [name for name in env if name.startswith("JWT_PREVIOUS")]
    assert load_settings().jwt_previous_secret == ""


def test_a_previous_key_from_before_cutoffs_were_recorded_gets_one_lifetime(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(EnvLayout("staging", store_dir / "staging"))
    store.rotate(NAMES.jwt, "n" * 64)  # as every rotation did before the cutoff existed
    rotated_at = datetime.fromisoformat(store.describe(NAMES.jwt).current.created_at)
    env = replica_settings(store_dir, monkeypatch)
    cutoff = datetime.fromisoformat(env["JWT_PREVIOUS_NOT_AFTER"].replace("Z", "+00:00"))
    assert cutoff == (rotated_at + LIFETIME).replace(microsecond=0)


def test_a_keyring_with_a_bad_cutoff_is_refused_before_anything_changes() -> None:
    text = Keyring("k2", "s2", "k1", "s1", "next tuesday").to_json()
    with pytest.raises(TargetError, match="previous_not_after is not an ISO instant"):
        Keyring.parse(text, "secret drydock/staging/jwt")
