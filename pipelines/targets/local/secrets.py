"""The local counterpart of Secrets Manager: versioned secrets, encrypted at rest.

Layout for a store at ``<state>/<env>/secrets``: ``secrets/`` (0700) holds one
``<name>.json`` (0600; metadata in clear, each version's value a Fernet token) per secret and
a ``.lock`` for writers; the Fernet key is the sibling ``secrets.key`` (0600), outside the
directory so that copying the secret files never carries the key along. After a rotation the
``previous`` version stays readable until ``retire()`` drops it (AWSCURRENT/AWSPREVIOUS),
with the instant it may be used until (``not_after``) when the rotation gave one; a rotation
with ``drop_previous`` keeps no previous version at all. Values never appear in exceptions,
reprs or logs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

STAGES = ("current", "previous")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SUFFIX = ".json"
_FIELDS = {"id", "number", "created_at", "token"}


class SecretStoreError(Exception):
    """A secret-store operation failed; the message says what, where, and what to do."""


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret, without its value."""

    id: str
    number: int
    stage: str
    created_at: str
    not_after: str | None = None  # ISO instant: the previous version is usable until then


@dataclass(frozen=True)
class SecretDescription:
    """A secret's versions, without values."""

    name: str
    versions: tuple[SecretVersion, ...]

    @property
    def current(self) -> SecretVersion:
        return next(v for v in self.versions if v.stage == "current")

    @property
    def previous(self) -> SecretVersion | None:
        return next((v for v in self.versions if v.stage == "previous"), None)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _durable_tmp(directory: Path, data: bytes) -> str:
    """Write ``data`` to a new 0600 temp file in ``directory``, fsynced; return its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _publish(tmp: str, path: Path, replace: bool) -> None:
    """Move a durable temp file into place: os.replace (atomic), or os.link (never clobbers)."""
    try:
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:  # the rename itself must survive a crash
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_private(path: Path, st: os.stat_result, kind: str) -> None:
    """Refuse a path that others can read or that another user owns."""
    fix = "chmod 700" if kind == "directory" else "chmod 600"
    if st.st_uid != os.geteuid():
        raise SecretStoreError(
            f"secret store {kind} {path} is owned by uid {st.st_uid}, but this process runs as "
            f"uid {os.geteuid()}; run as the owner, or fix: chown {os.geteuid()} {path}"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SecretStoreError(
            f"secret store {kind} {path} has mode {stat.S_IMODE(st.st_mode):04o}, which lets "
            f"other users in; refusing to use it. Fix: {fix} {path}"
        )


class SecretStore:
    """Versioned secrets under ``root``, encrypted with the Fernet key at ``key_path``."""

    def __init__(self, root: Path, key_path: Path | None = None) -> None:
        self.root = Path(root).absolute()
        self.key_path = Path(key_path or f"{self.root}.key").absolute()
        self._fernet_cache: tuple[Fernet, str] | None = None
        self._thread_lock = threading.Lock()
        if not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                self.root.mkdir(mode=0o700)
            os.chmod(self.root, 0o700)  # mkdir's mode is filtered by the umask
        self._check_root()

    def __repr__(self) -> str:  # never anything read from the store
        return f"SecretStore(root={str(self.root)!r}, key_path={str(self.key_path)!r})"

    def names(self) -> list[str]:
        """The names of every secret in the store."""
        self._check_root()
        stems = (p.name.removesuffix(_SUFFIX) for p in self.root.glob("*" + _SUFFIX))
        return sorted(n for n in stems if _NAME.match(n))

    def put(self, name: str, value: str) -> SecretVersion:
        """Create a secret. Putting the same value again is a no-op; a different one is refused
        (changing a value is ``rotate()``, which keeps the old one readable)."""
        _check_value(value)
        with self._locked():
            doc = self._maybe_doc(name)
            if doc is None:
                return self._create(name, value)
            if self._decrypt(name, doc, "current") == value:
                return self._version(doc, "current")
            raise SecretStoreError(
                f"secret {name!r} already exists in {self.root} with a different value; "
                f"use rotate({name!r}, ...) to change it (the old value stays as 'previous')"
            )

    def ensure(self, name: str, generator: Callable[[], str]) -> str:
        """Return the current value, creating the secret from ``generator()`` if it is missing."""
        with self._locked():
            if self._maybe_doc(name) is None:
                self._create(name, generator())
        return self.get(name)

    def get(self, name: str, stage: str = "current") -> str:
        """The value of ``name`` at ``stage`` (``current`` or ``previous``)."""
        doc = self._doc(name)
        if stage not in doc["versions"]:
            raise SecretStoreError(
                f"secret {name!r} in {self.root} has no {stage!r} version (stages are {STAGES}; "
                "'previous' exists from rotate() until retire())"
            )
        return self._decrypt(name, doc, stage)

    def describe(self, name: str) -> SecretDescription:
        """Versions of ``name`` (ids, numbers, creation times), never values."""
        doc = self._doc(name)
        versions = tuple(self._version(doc, s) for s in STAGES if s in doc["versions"])
        return SecretDescription(name=name, versions=versions)

    def rotate(
        self,
        name: str,
        new_value: str | Callable[[], str],
        *,
        previous_not_after: datetime | None = None,
        drop_previous: bool = False,
    ) -> SecretVersion:
        """Make ``new_value`` (or ``new_value()``) current and keep the old value as previous,
        recording ``previous_not_after`` with it; with ``drop_previous``, keep neither the old
        value nor an older previous one (one write: no moment where a dropped value lingers).

        Without ``drop_previous``, refused while a previous version exists: it may still be in
        use, and dropping it is an explicit ``retire()``."""
        with self._locked():
            doc = self._doc(name)
            if "previous" in doc["versions"] and not drop_previous:
                prev = self._version(doc, "previous")
                until = f", usable until {prev.not_after}" if prev.not_after else ""
                raise SecretStoreError(
                    f"secret {name!r} in {self.root} still has a previous version "
                    f"(v{prev.number}, {prev.id}, created {prev.created_at}{until}); once "
                    f"nothing uses it, call retire({name!r}), then rotate again"
                )
            value = new_value() if callable(new_value) else new_value
            fernet, key_id = self._fernet()
            self._decrypt(name, doc, "current")  # a wrong key must fail before we write
            old = dict(doc["versions"]["current"])
            entry = self._entry(fernet, name, value, number=int(old["number"]) + 1)
            versions = {"current": entry}
            if not drop_previous:
                if previous_not_after is not None:
                    old["not_after"] = previous_not_after.astimezone(UTC).isoformat()
                versions["previous"] = old
            doc = {"name": name, "key_id": key_id, "versions": versions}
            self._write_doc(name, doc)
            log.info(
                "secret %s: rotated to version %d (%s)%s",
                name,
                entry["number"],
                entry["id"],
                "; no previous version kept" if drop_previous else "",
            )
            return self._version(doc, "current")

    def retire(self, name: str) -> SecretVersion | None:
        """Drop the previous version of ``name``; returns it, or None if there was none."""
        with self._locked():
            doc = self._doc(name)
            if "previous" not in doc["versions"]:
                return None
            dropped = self._version(doc, "previous")
            del doc["versions"]["previous"]
            self._write_doc(name, doc)
            log.info("secret %s: retired version %d (%s)", name, dropped.number, dropped.id)
            return dropped

    def check(self) -> None:
        """Verify permissions, the key, and that every version of every secret decrypts."""
        for name in self.names():
            doc = self._doc(name)
            for stage in doc["versions"]:
                self._decrypt(name, doc, stage)

    def _check_root(self) -> None:
        try:
            st = os.lstat(self.root)
        except FileNotFoundError:
            msg = f"secret store directory {self.root} is gone; restore it from backup"
            raise SecretStoreError(msg) from None
        if not stat.S_ISDIR(st.st_mode):
            raise SecretStoreError(f"secret store path {self.root} is not a directory (symlink?)")
        _check_private(self.root, st, "directory")

    def _path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            msg = f"invalid secret name {name!r}: use [A-Za-z0-9_.-], max 128, no leading dot"
            raise SecretStoreError(msg)
        return self.root / f"{name}{_SUFFIX}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock excludes other processes (and other stores on this root), the mutex other threads
        with self._thread_lock:
            self._check_root()
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _create(self, name: str, value: str) -> SecretVersion:
        fernet, key_id = self._fernet(create=True)
        entry = self._entry(fernet, name, value, number=1)
        self._write_doc(name, {"name": name, "key_id": key_id, "versions": {"current": entry}})
        log.info("secret %s: created version 1 (%s) in %s", name, entry["id"], self.root)
        return SecretVersion(entry["id"], 1, "current", entry["created_at"])

    def _doc(self, name: str) -> dict[str, Any]:
        doc = self._maybe_doc(name)
        if doc is None:
            raise SecretStoreError(
                f"no secret named {name!r} in {self.root}; create it with "
                f"SecretStore({str(self.root)!r}).put({name!r}, value)"
            )
        return doc

    def _maybe_doc(self, name: str) -> dict[str, Any] | None:
        path = self._path(name)
        self._check_root()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretStoreError(f"cannot open secret file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            _check_private(path, os.fstat(fh.fileno()), "file")
            raw = fh.read()
        try:
            doc = json.loads(raw)
            entries = [doc["versions"]["current"], *doc["versions"].values()]
            if doc["name"] != name or any(not e.keys() >= _FIELDS for e in entries):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SecretStoreError(
                f"secret file {path} is damaged (not a valid secret document); restore it from "
                "backup. Other secrets are not affected."
            ) from None
        return dict(doc)

    def _write_doc(self, name: str, doc: dict[str, Any]) -> None:
        path = self._path(name)
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        try:
            _publish(_durable_tmp(path.parent, data), path, replace=True)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SecretStoreError(
                    f"no space left on the device holding {self.root} while writing secret "
                    f"{name!r}; nothing was changed (stored versions intact). Free space, retry."
                ) from None
            raise SecretStoreError(
                f"could not write secret {name!r} to {path}: {exc.strerror}; nothing was changed"
            ) from None

    def _fernet(self, create: bool = False) -> tuple[Fernet, str]:
        """The store's cipher and key id; ``create`` makes a key only if no secret exists yet."""
        if self._fernet_cache is not None:
            return self._fernet_cache
        from cryptography.fernet import Fernet

        try:
            fd = os.open(self.key_path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            existing = self.names()
            if existing or not create:
                raise SecretStoreError(
                    f"key file {self.key_path} is missing, but {len(existing)} secret(s) exist "
                    f"in {self.root}; they can only be decrypted with the key that wrote them. "
                    f"Restore {self.key_path} from backup (mode 0600). No new key was generated, "
                    "so nothing was lost."
                ) from None
            self._create_key(Fernet.generate_key())
            return self._fernet()
        with os.fdopen(fd, "rb") as fh:
            _check_private(self.key_path, os.fstat(fh.fileno()), "key file")
            key = fh.read().strip()
        try:
            fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretStoreError(
                f"key file {self.key_path} is corrupt (not a Fernet key); restore it from "
                f"backup. The secrets in {self.root} are untouched."
            ) from None
        self._fernet_cache = (fernet, hashlib.sha256(key).hexdigest()[:16])
        return self._fernet_cache

    def _create_key(self, key: bytes) -> None:
        try:  # if another process won the race to create it, its key stays
            _publish(_durable_tmp(self.key_path.parent, key + b"\n"), self.key_path, False)
        except OSError as exc:
            raise SecretStoreError(
                f"could not create key file {self.key_path}: {exc.strerror}; nothing was written"
            ) from None
        log.info("secret store %s: generated a new key in %s", self.root, self.key_path)

    def _entry(self, fernet: Fernet, name: str, value: str, number: int) -> dict[str, Any]:
        _check_value(value)
        payload = json.dumps({"name": name, "value": value}).encode()
        return {
            "id": uuid.uuid4().hex,
            "number": number,
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "token": fernet.encrypt(payload).decode(),
        }

    def _decrypt(self, name: str, doc: dict[str, Any], stage: str) -> str:
        from cryptography.fernet import InvalidToken

        fernet, key_id = self._fernet()
        path = self._path(name)
        if doc.get("key_id") not in (None, key_id):
            raise SecretStoreError(
                f"secret {name!r} ({path}) was encrypted with key {doc['key_id']}, but "
                f"{self.key_path} holds key {key_id}: the key file was replaced. Restore the "
                "original key file; the secret files are intact."
            )
        try:
            payload = json.loads(fernet.decrypt(doc["versions"][stage]["token"].encode()))
        except (InvalidToken, ValueError, TypeError):
            raise SecretStoreError(
                f"the {stage} version of secret {name!r} ({path}) does not decrypt with "
                f"{self.key_path}: the file or the key was altered. Restore the one that changed "
                "from backup."
            ) from None
        if not isinstance(payload, dict) or payload.get("name") != name:
            raise SecretStoreError(
                f"secret file {path} holds a value sealed for another secret name (copied or "
                "renamed?); restore the right file from backup"
            )
        return str(payload["value"])

    @staticmethod
    def _version(doc: dict[str, Any], stage: str) -> SecretVersion:
        e = doc["versions"][stage]
        return SecretVersion(e["id"], int(e["number"]), stage, e["created_at"], e.get("not_after"))


def _check_value(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise SecretStoreError(f"secret values must be non-empty str, not {type(value).__name__}")
