"""The deploy lock on AWS: a lease in the stack's backups bucket, kept alive by its holder.

`locks/<env>.json` names its holder (pid, process start, host, user, command) and when its
lease ends. Taking it is a PutObject with `If-None-Match: *`: S3 answers 412 while the
object exists. While the lock is held, a thread renews the lease every third of its length
with `If-Match: <our ETag>`, so a renewal never overwrites someone else's holding.

A holder that dies stops renewing. Once its lease has ended, the next run takes the lock
over with `If-Match: <that holding's ETag>`, so of two takers exactly one wins. A lock whose
holder is on this very host and whose process is gone is taken over at once.

A holder can lose the lock in two ways. A renewal may be answered 412 because someone took
the lock over. Or it may fail to renew before its lease ends, after which anyone may take
it. Either way it says so at once, and `check()` raises `LeaseLost`: the run stops before
its next change.

The lease ends on the holder's clock and a waiter reads it on its own. While renewals
succeed, the end is always at least two thirds of a lease ahead (80 s), so clocks that
disagree by less than that never break a live lock. NTP keeps CI runners within a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pipelines.host.procs import process_start
from pipelines.ledger import actor
from pipelines.lock import LeaseLost, LockHeld, describe, holder_is_alive
from pipelines.targets.aws.common import client_error, error_code

LOCK_PREFIX = "locks"
# A killed holder frees the lock within this; renewed every third of it, a lease survives
# two failed renewals in a row (throttling, a network blip) before it is lost.
LEASE_S = 120.0
RENEWALS_PER_LEASE = 3
# S3 answers 412 when a condition fails, 409 when a concurrent conditional write won, and
# 404 to `If-Match` on an object that is gone.
LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}


def lease_end(holder: dict[str, Any], now: float) -> str:
    """When the holder's lease ends, in UTC and relative to `now`."""
    expires = holder.get("expires_at")
    if not isinstance(expires, int | float):
        return "its lease has no end recorded"
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
    if expires > now:
        return f"its lease ends {at} (in {expires - now:.0f} s)"
    return f"its lease ended {at} ({now - expires:.0f} s ago)"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class S3Lock:
    """One deploy at a time per environment, across machines."""

    def __init__(
        self,
        bucket: str,
        env: str,
        *,
        client: Any,
        prefix: str = LOCK_PREFIX,
        lease_s: float = LEASE_S,
        renew_every_s: float | None = None,
        clock: Callable[[], float] = time.time,
        on_break: Callable[[str], object] = print,
        on_lost: Callable[[str], object] = _stderr,
    ) -> None:
        self.bucket = bucket
        self.env = env
        self.key = f"{prefix.strip('/')}/{env}.json"
        self.s3 = client
        self.lease_s = lease_s
        self.renew_every_s = renew_every_s or lease_s / RENEWALS_PER_LEASE
        self.clock = clock
        self.on_break = on_break
        self.on_lost = on_lost
        self.etag: str | None = None
        self.record: dict[str, Any] | None = None
        self.lost: str | None = None
        self._mutex = threading.Lock()  # the renewer thread and check() both renew
        self._renewer: _Renewer | None = None

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
            "lease_s": self.lease_s,
            "expires_at": now + self.lease_s,
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

    def describe_holder(self, holder: dict[str, Any]) -> str:
        return f"{describe(holder)}; {lease_end(holder, self.clock())}"

    def stale(self, holder: dict[str, Any]) -> bool:
        expires = holder.get("expires_at")
        expired = not isinstance(expires, int | float) or expires <= self.clock()
        return expired or not holder_is_alive(holder)

    # -- taking and giving back ------------------------------------------------------

    def acquire(self, purpose: str) -> dict[str, Any]:
        for _ in range(3):
            record = self._record(purpose)
            try:
                return self._took(record, self._put(record, IfNoneMatch="*"))
            except client_error() as exc:
                if error_code(exc) not in LOST_RACE:
                    raise
            held = self.holder()
            if held is None:
                continue  # released between our write and our read
            holder, etag = held
            if not self.stale(holder):
                raise LockHeld(
                    f"{self.where} is held by {self.describe_holder(holder)}, renewed by its "
                    "holder while it runs; if that process is gone, the lock frees itself then"
                )
            self.on_break(
                f"breaking a stale lock {self.where}: "
                f"{self.describe_holder(holder) if holder else 'empty'}"
                " (not renewed in time, or its process on this host is gone)"
            )
            try:
                return self._took(record, self._put(record, IfMatch=etag))
            except client_error() as exc:
                if error_code(exc) not in LOST_RACE:
                    raise  # another process broke it first: look again
        raise LockHeld(f"could not take {self.where}: other processes keep taking it")

    def _took(self, record: dict[str, Any], etag: str) -> dict[str, Any]:
        self.record, self.etag, self.lost = record, etag, None
        return record

    def release(self) -> None:
        self._stop_renewing()
        if self.etag is None:
            return
        try:
            if self.lost is None:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except client_error() as exc:
            if error_code(exc) not in LOST_RACE:
                raise
            self.on_break(f"{self.where} was taken over by another process before release")
        finally:
            self.etag, self.record = None, None

    @contextlib.contextmanager
    def held(self, purpose: str) -> Iterator[S3Lock]:
        """The lock, its lease renewed in the background until the block ends."""
        self.acquire(purpose)
        self._renewer = _Renewer(self)
        self._renewer.start()
        try:
            yield self
        finally:
            self.release()

    # -- keeping it --------------------------------------------------------------------

    def renew(self) -> bool:
        """Push our lease's end forward. False once the lock is no longer ours; `lost` and
        the `on_lost` message then say who has it and why."""
        from botocore.exceptions import BotoCoreError

        with self._mutex:
            if self.lost is not None or self.etag is None or self.record is None:
                return False
            now = self.clock()
            record = {**self.record, "expires_at": now + self.lease_s, "renewed_at": now}
            try:
                self.etag = self._put(record, IfMatch=self.etag)
            except (client_error(), BotoCoreError) as exc:
                if error_code(exc) in LOST_RACE:
                    return self._lose(f"it was taken over by {self._current_holder()}")
                if now >= float(self.record["expires_at"]):
                    return self._lose(f"it could not be renewed before its lease ended ({exc})")
                return True  # the lease still runs: the next renewal tries again
            self.record = record
            return True

    def _current_holder(self) -> str:
        try:
            held = self.holder()
        except client_error() as exc:
            return f"someone unknown (reading the lock failed: {exc})"
        return self.describe_holder(held[0]) if held else "nobody (the lock object is gone)"

    def _lose(self, why: str) -> bool:
        ours = self.record or {}
        self.lost = (
            f"lost the lock {self.where} held for {ours.get('command')!r}: {why}. Another run "
            f"may be changing {self.env} now; this one stops before its next change"
        )
        self.on_lost(self.lost)
        return False

    def check(self) -> None:
        """Raise LeaseLost when the lock is no longer ours. Past our own lease's end (the
        renewals have been failing), renew first: never go on under a lease that may have
        been taken over."""
        ours = self.record
        if self.lost is None and ours is not None and self.clock() >= float(ours["expires_at"]):
            self.renew()
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None


class _Renewer(threading.Thread):
    """Renews the lease every `renew_every_s` until stopped or the lock is lost."""

    def __init__(self, lock: S3Lock) -> None:
        super().__init__(name=f"lease {lock.key}", daemon=True)
        self.lock = lock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lock.renew_every_s):
            if not self.lock.renew():
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join()
