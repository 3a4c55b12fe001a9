"""The ledger and the deploy lock on AWS, in the stack's backups bucket.

Ledger: one object per entry, `ledger/<env>/<time>-<uuid>.json`, written with
`If-None-Match: *` so an entry is never overwritten; entries are immutable, so a reader
fetches each one once. Lock: `locks/<env>.json`, taken with `If-None-Match: *` (S3 answers
412 PreconditionFailed while someone holds it). The body says who holds it and until when;
an expired lock, or one whose process on this very host is gone, is stale and is taken over
with `If-Match: <its ETag>`, so of two processes breaking it at once exactly one wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pipelines.host.procs import process_start
from pipelines.ledger import actor, entry
from pipelines.lock import LockHeld, describe, holder_is_alive
from pipelines.targets.aws.common import aws_errors, client_error, error_code

LEDGER_PREFIX = "ledger"
LOCK_PREFIX = "locks"
LOCK_TTL_S = 2 * 3600.0  # longer than any deploy: two watched rollouts and the bake window
# S3 answers 412 when a condition fails, and 409 when a concurrent conditional write won.
LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}


def _stamp(at: float) -> str:
    """A key-friendly ISO 8601 time that sorts as text."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%S.%fZ")


class S3Ledger:
    """The append-only history (see pipelines/ledger.py), one S3 object per entry."""

    def __init__(self, bucket: str, prefix: str = LEDGER_PREFIX, *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.s3 = client
        self._cache: dict[str, dict[str, Any]] = {}
        self.name = f"s3://{bucket}/{self.prefix}"  # how aws_errors names it

    @aws_errors("writing the ledger")
    def append(self, kind: str, env: str, **fields: Any) -> dict[str, Any]:
        record = entry(kind, env, **fields)
        key = f"{self.prefix}/{env}/{_stamp(record['at'])}-{uuid.uuid4().hex}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(record, default=str, sort_keys=True).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        self._cache[key] = record
        return record

    def _keys(self, env: str | None) -> list[str]:
        prefix = f"{self.prefix}/{env}/" if env else f"{self.prefix}/"
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
        return keys

    def _read(self, key: str) -> dict[str, Any] | None:
        if key not in self._cache:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            try:
                self._cache[key] = json.loads(body)
            except ValueError:
                return None  # not ours to interpret; the ledger never writes one
        return self._cache[key]

    @aws_errors("reading the ledger")
    def entries(self, env: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Oldest first, across environments when `env` is None."""
        found = [(key, self._read(key)) for key in self._keys(env)]
        ordered = sorted(
            ((float(record.get("at", 0)), key, record) for key, record in found if record),
            key=lambda item: (item[0], item[1]),
        )
        return [r for _, _, r in ordered if kind is None or r.get("kind") == kind]


class S3Lock:
    """One deploy at a time per environment, across machines."""

    def __init__(
        self,
        bucket: str,
        env: str,
        *,
        client: Any,
        prefix: str = LOCK_PREFIX,
        ttl_s: float = LOCK_TTL_S,
        clock: Callable[[], float] = time.time,
        on_break: Callable[[str], object] = print,
    ) -> None:
        self.bucket = bucket
        self.key = f"{prefix.strip('/')}/{env}.json"
        self.s3 = client
        self.ttl_s = ttl_s
        self.clock = clock
        self.on_break = on_break
        self.etag: str | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _record(self, purpose: str) -> dict[str, Any]:
        now = self.clock()
        return {
            "pid": os.getpid(),
            "start": process_start(os.getpid()),  # with pid and host: is the holder alive
            "host": socket.gethostname(),
            "who": actor(),
            "at": now,
            "expires_at": now + self.ttl_s,
            "command": purpose or " ".join(sys.argv),
        }

    def _put(self, record: dict[str, Any], **condition: str) -> str:
        response = self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(record).encode(),
            ContentType="application/json",
            **condition,
        )
        return str(response["ETag"])

    def holder(self) -> tuple[dict[str, Any], str] | None:
        """Who holds the lock and the ETag of that holding; None when it is free."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except client_error() as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return None
            raise
        try:
            body = json.loads(response["Body"].read())
        except ValueError:
            body = {}
        return (body if isinstance(body, dict) else {}), str(response["ETag"])

    def stale(self, holder: dict[str, Any]) -> bool:
        expires = holder.get("expires_at")
        expired = not isinstance(expires, int | float) or expires <= self.clock()
        return expired or not holder_is_alive(holder)

    def acquire(self, purpose: str) -> dict[str, Any]:
        for _ in range(3):
            record = self._record(purpose)
            try:
                self.etag = self._put(record, IfNoneMatch="*")
                return record
            except client_error() as exc:
                if error_code(exc) not in LOST_RACE:
                    raise
            held = self.holder()
            if held is None:
                continue  # released between our write and our read
            holder, etag = held
            if not self.stale(holder):
                until = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("expires_at", 0)))
                )
                raise LockHeld(f"{self.where} is held by {describe(holder)} (expires {until})")
            self.on_break(
                f"breaking a stale lock {self.where}: {describe(holder) if holder else 'empty'}"
                " (expired, or its process on this host is gone)"
            )
            try:
                self.etag = self._put(record, IfMatch=etag)
                return record
            except client_error() as exc:
                if error_code(exc) not in LOST_RACE:
                    raise  # another process broke it first: look again
        raise LockHeld(f"could not take {self.where}: other processes keep taking it")

    def refresh(self) -> None:
        """Push the expiry forward, for work that may outlast the TTL."""
        held = self.holder()
        if self.etag is None or held is None or held[1] != self.etag:
            raise LockHeld(f"{self.where} is no longer ours")
        record = {**held[0], "expires_at": self.clock() + self.ttl_s}
        self.etag = self._put(record, IfMatch=self.etag)

    def release(self) -> None:
        if self.etag is None:
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except client_error() as exc:
            if error_code(exc) not in LOST_RACE:
                raise
            self.on_break(f"{self.where} was taken over by another process before release")
        finally:
            self.etag = None

    @contextlib.contextmanager
    def held(self, purpose: str) -> Iterator[dict[str, Any]]:
        record = self.acquire(purpose)
        try:
            yield record
        finally:
            self.release()
