"""The local secret store: encryption at rest, versions, permissions and faults."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipelines.targets.local import secrets as secrets_mod
from pipelines.targets.local.secrets import SecretStore, SecretStoreError

pytestmark = pytest.mark.unit

VALUE = "s3cr3t-Value-that-must-never-leak"
OTHER = "an0ther-Value-that-must-never-leak"


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path / "secrets")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def all_bytes(*roots: Path) -> bytes:
    return b"".join(p.read_bytes() for r in roots for p in r.rglob("*") if p.is_file())


def assert_clean(exc: pytest.ExceptionInfo[SecretStoreError]) -> None:
    text = f"{exc.value}{exc.value!r}{exc.value.__cause__!r}{exc.value.__context__!r}"
    assert VALUE not in text
    assert OTHER not in text


def test_put_get_layout_and_modes(store: SecretStore, tmp_path: Path) -> None:
    version = store.put("db-password", VALUE)
    assert store.get("db-password") == VALUE
    assert version.number == 1
    assert store.names() == ["db-password"]
    assert store.key_path == tmp_path / "secrets.key"
    assert mode(store.root) == 0o700
    assert mode(store.root / "db-password.json") == 0o600
    assert mode(store.key_path) == 0o600
    assert store.key_path.parent != store.root
    assert VALUE.encode() not in all_bytes(tmp_path)


def test_describe_and_repr_never_show_values(store: SecretStore) -> None:
    store.put("jwt", VALUE)
    store.rotate("jwt", OTHER)
    desc = store.describe("jwt")
    assert [v.stage for v in desc.versions] == ["current", "previous"]
    assert desc.current.number == 2
    assert desc.previous is not None
    assert desc.previous.number == 1
    assert desc.current.id != desc.previous.id
    for text in (repr(desc), repr(store), str(store)):
        assert VALUE not in text
        assert OTHER not in text


def test_rotate_keeps_previous_until_retired(store: SecretStore) -> None:
    store.put("jwt", VALUE)
    new = store.rotate("jwt", lambda: OTHER)
    assert new.number == 2
    assert store.get("jwt") == OTHER
    assert store.get("jwt", "previous") == VALUE
    with pytest.raises(
        SecretStoreError, match=r"still has a previous version.*retire\('jwt'\)"
    ) as e:
        store.rotate("jwt", "third-value")
    assert_clean(e)
    dropped = store.retire("jwt")
    assert dropped is not None
    assert dropped.number == 1
    assert store.retire("jwt") is None
    with pytest.raises(SecretStoreError, match="no 'previous' version"):
        store.get("jwt", "previous")
    assert store.rotate("jwt", VALUE).number == 3


def test_rotate_records_the_previous_cutoff(store: SecretStore) -> None:
    store.put("jwt", VALUE)
    cutoff = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    store.rotate("jwt", OTHER, previous_not_after=cutoff)
    described = store.describe("jwt")
    assert described.previous is not None
    assert described.previous.not_after == "2030-01-01T12:15:00+00:00"
    assert described.current.not_after is None
    assert store.get("jwt", "previous") == VALUE
    with pytest.raises(SecretStoreError, match=r"usable until 2030-01-01T12:15:00\+00:00") as e:
        store.rotate("jwt", "third-value")
    assert_clean(e)


def test_rotate_dropping_the_previous_keeps_no_older_value(store: SecretStore) -> None:
    store.put("jwt", VALUE)
    store.rotate("jwt", OTHER)
    third = store.rotate("jwt", "third-value", drop_previous=True)  # even with a previous
    assert third.number == 3
    assert store.describe("jwt").previous is None
    assert store.get("jwt") == "third-value"
    stored = (store.root / "jwt.json").read_text()
    assert len(json.loads(stored)["versions"]) == 1, "neither older value is in the file"


def test_put_is_idempotent_and_refuses_silent_overwrite(store: SecretStore) -> None:
    first = store.put("api", VALUE)
    assert store.put("api", VALUE) == first
    with pytest.raises(SecretStoreError, match=r"different value; use rotate") as e:
        store.put("api", OTHER)
    assert_clean(e)
    assert store.get("api") == VALUE


def test_ensure_creates_once(store: SecretStore) -> None:
    calls: list[int] = []

    def gen() -> str:
        calls.append(1)
        return VALUE

    assert store.ensure("pg", gen) == VALUE
    assert store.ensure("pg", gen) == VALUE
    assert calls == [1]


def test_concurrent_ensure_agrees_on_one_value(tmp_path: Path) -> None:
    stores = [SecretStore(tmp_path / "secrets") for _ in range(4)]
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda s=s, i=i: results.append(s.ensure("x", lambda: f"v{i}")))
        for i, s in enumerate(stores)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 4
    assert len(set(results)) == 1


def test_missing_secret_names_it_the_store_and_the_fix(store: SecretStore) -> None:
    with pytest.raises(SecretStoreError) as e:
        store.get("nope")
    msg = str(e.value)
    assert "'nope'" in msg
    assert str(store.root) in msg
    assert ".put('nope', value)" in msg


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "", "x" * 200])
def test_invalid_names_are_refused(store: SecretStore, name: str) -> None:
    with pytest.raises(SecretStoreError, match="invalid secret name"):
        store.put(name, VALUE)


def test_missing_key_with_existing_secrets_is_not_regenerated(store: SecretStore) -> None:
    store.put("a", VALUE)
    before = (store.root / "a.json").read_bytes()
    store.key_path.unlink()
    fresh = SecretStore(store.root)
    with pytest.raises(SecretStoreError, match=r"key file .* is missing, but 1 secret") as e:
        fresh.get("a")
    assert_clean(e)
    with pytest.raises(SecretStoreError, match="Restore"):
        fresh.put("b", OTHER)
    assert not store.key_path.exists()
    assert (store.root / "a.json").read_bytes() == before
    assert fresh.names() == ["a"]
    assert fresh.describe("a").current.number == 1  # metadata stays readable without the key


def test_corrupt_key_file(store: SecretStore) -> None:
    store.put("a", VALUE)
    store.key_path.write_bytes(b"not a fernet key\n")
    with pytest.raises(SecretStoreError, match=r"corrupt \(not a Fernet key\).*untouched") as e:
        SecretStore(store.root).get("a")
    assert_clean(e)


def test_replaced_key_is_detected_and_nothing_is_written(store: SecretStore) -> None:
    store.put("a", VALUE)
    before = (store.root / "a.json").read_bytes()
    store.key_path.write_bytes(Fernet.generate_key())
    fresh = SecretStore(store.root)
    with pytest.raises(SecretStoreError, match="the key file was replaced") as e:
        fresh.get("a")
    assert_clean(e)
    with pytest.raises(SecretStoreError, match="the key file was replaced"):
        fresh.rotate("a", OTHER)
    assert (store.root / "a.json").read_bytes() == before


def test_tampered_token_fails_authentication(store: SecretStore) -> None:
    store.put("a", VALUE)
    path = store.root / "a.json"
    doc = json.loads(path.read_text())
    token = doc["versions"]["current"]["token"]
    doc["versions"]["current"]["token"] = (
        token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    )
    path.write_text(json.dumps(doc))
    with pytest.raises(SecretStoreError, match="does not decrypt") as e:
        store.get("a")
    assert_clean(e)


def test_damaged_document(store: SecretStore) -> None:
    store.put("a", VALUE)
    (store.root / "a.json").write_text("{not json")
    with pytest.raises(SecretStoreError, match="damaged"):
        store.get("a")


def test_file_copied_under_another_name_is_refused(store: SecretStore) -> None:
    store.put("a", VALUE)
    doc = json.loads((store.root / "a.json").read_text())
    doc["name"] = "b"
    (store.root / "b.json").write_text(json.dumps(doc))
    os.chmod(store.root / "b.json", 0o600)
    with pytest.raises(SecretStoreError, match="sealed for another secret name") as e:
        store.get("b")
    assert_clean(e)


def test_open_directory_is_refused(store: SecretStore) -> None:
    store.put("a", VALUE)
    os.chmod(store.root, 0o755)  # noqa: S103 - the fault under test
    with pytest.raises(SecretStoreError, match=rf"mode 0755.*Fix: chmod 700 {store.root}"):
        store.get("a")
    with pytest.raises(SecretStoreError, match="chmod 700"):
        SecretStore(store.root)


def test_open_secret_file_is_refused(store: SecretStore) -> None:
    store.put("a", VALUE)
    os.chmod(store.root / "a.json", 0o644)
    path = store.root / "a.json"
    with pytest.raises(SecretStoreError, match=rf"{path} has mode 0644.*chmod 600 {path}"):
        store.get("a")


def test_open_key_file_is_refused(store: SecretStore) -> None:
    store.put("a", VALUE)
    os.chmod(store.key_path, 0o640)
    with pytest.raises(SecretStoreError, match=rf"key file {store.key_path} has mode 0640"):
        SecretStore(store.root).get("a")


def test_symlinked_secret_file_is_refused(store: SecretStore, tmp_path: Path) -> None:
    store.put("a", VALUE)
    shutil.copy(store.root / "a.json", tmp_path / "elsewhere.json")
    (store.root / "b.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(SecretStoreError, match="cannot open secret file"):
        store.get("b")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_file_owned_by_another_user_is_refused(store: SecretStore) -> None:
    store.put("a", VALUE)
    os.chown(store.root / "a.json", 65534, -1)
    with pytest.raises(SecretStoreError, match="owned by uid 65534"):
        store.get("a")


def test_full_disk_keeps_the_old_value(store: SecretStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("jwt", VALUE)
    before = (store.root / "jwt.json").read_bytes()

    def no_space(fd: int, data: bytes) -> None:
        os.write(fd, bytes(data)[:10])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(secrets_mod, "_write_all", no_space)
    with pytest.raises(SecretStoreError, match=r"no space left.*'jwt'.*nothing was changed") as e:
        store.rotate("jwt", OTHER)
    assert_clean(e)
    with pytest.raises(SecretStoreError, match="no space left"):
        store.put("new", OTHER)
    monkeypatch.undo()
    assert (store.root / "jwt.json").read_bytes() == before
    assert store.get("jwt") == VALUE
    assert store.names() == ["jwt"]
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", "jwt.json"]
    assert store.rotate("jwt", OTHER).number == 2  # and it works once space is back


def test_full_disk_on_fsync(store: SecretStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("a", VALUE)

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(secrets_mod.os, "fsync", fsync)
    with pytest.raises(SecretStoreError, match="no space left"):
        store.rotate("a", OTHER)
    monkeypatch.undo()
    assert store.get("a") == VALUE
    assert store.describe("a").previous is None


def test_logs_never_contain_values(store: SecretStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pipelines.targets.local.secrets")
    store.put("a", VALUE)
    store.rotate("a", OTHER)
    store.retire("a")
    assert "rotated to version 2" in caplog.text
    assert VALUE not in caplog.text
    assert OTHER not in caplog.text


def test_check_verifies_every_version(store: SecretStore) -> None:
    store.put("a", VALUE)
    store.rotate("a", OTHER)
    store.check()
    store.key_path.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretStoreError):
        SecretStore(store.root).check()
