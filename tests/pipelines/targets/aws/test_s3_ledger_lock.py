"""The ledger and the deploy lock in S3, against moto (which models If-None-Match and
If-Match on PutObject and DeleteObject, 412 PreconditionFailed included)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from pipelines.lock import LockHeld
from pipelines.targets.aws.s3 import S3Ledger, S3Lock
from pipelines.targets.aws.target import AwsTarget
from tests.pipelines.targets.aws.conftest import BUCKET, REGION, client, outputs

pytestmark = pytest.mark.unit


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3


def test_ledger_keeps_one_object_per_entry_and_reads_them_in_order(s3: Any) -> None:
    ledger = S3Ledger(BUCKET, client=s3)
    first = ledger.append("deploy", "staging", release="r1", p95_s=0.1)
    ledger.append("snapshot", "production", id="s1")
    ledger.append("deploy", "production", release="r1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 3 and all(k.startswith("ledger/") and k.endswith(".json") for k in keys)
    assert any(k.startswith("ledger/staging/") for k in keys)

    fresh = S3Ledger(BUCKET, client=s3)  # another process: nothing cached
    assert [e["kind"] for e in fresh.entries()] == ["deploy", "snapshot", "deploy"]
    assert [e["release"] for e in fresh.entries("production", "deploy")] == ["r1"]
    assert fresh.entries("staging")[0] == first


def test_ledger_entries_are_never_overwritten(s3: Any) -> None:
    from botocore.exceptions import ClientError

    ledger = S3Ledger(BUCKET, client=s3)
    ledger.append("deploy", "staging")
    key = s3.list_objects_v2(Bucket=BUCKET)["Contents"][0]["Key"]
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}", IfNoneMatch="*")


def test_lock_is_exclusive_says_who_holds_it_and_is_released(s3: Any) -> None:
    mine = S3Lock(BUCKET, "production", client=s3)
    with mine.held("deploy 42"):
        holder = json.loads(
            s3.get_object(Bucket=BUCKET, Key="locks/production.json")["Body"].read()
        )
        assert holder["command"] == "deploy 42" and holder["expires_at"] > time.time()
        with pytest.raises(LockHeld, match=r"held by pid \d+ .*deploy 42"):
            S3Lock(BUCKET, "production", client=s3).acquire("deploy 43")
        # Another environment has its own lock.
        with S3Lock(BUCKET, "staging", client=s3).held("deploy 43"):
            pass
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="locks/")
    S3Lock(BUCKET, "production", client=s3).acquire("deploy 44")


def write_holder(s3: Any, **fields: Any) -> None:
    holder = {"pid": 4242, "host": "ci-runner-7", "who": "ci", "at": 1.0, "command": "deploy 1"}
    s3.put_object(Bucket=BUCKET, Key="locks/production.json", Body=json.dumps({**holder, **fields}))


def test_a_live_holder_on_another_host_is_respected_until_it_expires(s3: Any) -> None:
    write_holder(s3, expires_at=time.time() + 60)
    with pytest.raises(LockHeld, match="ci-runner-7 as ci"):
        S3Lock(BUCKET, "production", client=s3).acquire("deploy 2")


def test_an_expired_lock_is_broken_and_the_break_reported(s3: Any) -> None:
    write_holder(s3, expires_at=time.time() - 1)
    said: list[str] = []
    lock = S3Lock(BUCKET, "production", client=s3, on_break=said.append)
    record = lock.acquire("deploy 2")
    assert said and "breaking a stale lock" in said[0] and "ci-runner-7" in said[0]
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="locks/production.json")["Body"].read())
    assert body == record


def test_a_dead_process_on_this_host_leaves_a_stale_lock(s3: Any) -> None:
    import socket

    write_holder(s3, host=socket.gethostname(), pid=2**22 + 1, expires_at=time.time() + 600)
    said: list[str] = []
    S3Lock(BUCKET, "production", client=s3, on_break=said.append).acquire("deploy 2")
    assert said


def test_of_two_breakers_only_one_wins(s3: Any) -> None:
    """The break is a put conditional on the stale lock's ETag: the loser sees 412."""
    write_holder(s3, expires_at=time.time() - 1)
    first = S3Lock(BUCKET, "production", client=s3, on_break=lambda _: None)
    _, etag = first.holder() or ({}, "")
    first.acquire("breaker 1")
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key="locks/production.json", Body=b"{}", IfMatch=etag)
    with pytest.raises(LockHeld, match="breaker 1"):
        S3Lock(BUCKET, "production", client=s3).acquire("breaker 2")


def test_release_never_deletes_a_lock_someone_else_took_over(s3: Any) -> None:
    said: list[str] = []
    lock = S3Lock(BUCKET, "production", client=s3, on_break=said.append)
    lock.acquire("deploy 1")
    write_holder(s3, expires_at=time.time() + 600)  # taken over after ours expired
    lock.release()
    assert "taken over" in said[0]
    assert s3.get_object(Bucket=BUCKET, Key="locks/production.json")


def test_refresh_moves_the_expiry(s3: Any) -> None:
    now = [1000.0]
    lock = S3Lock(BUCKET, "production", client=s3, ttl_s=60, clock=lambda: now[0])
    lock.acquire("deploy 1")
    now[0] = 1050.0
    lock.refresh()
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="locks/production.json")["Body"].read())
    assert body["expires_at"] == 1110.0


def test_target_ledger_and_lock_use_the_backups_bucket(s3: Any) -> None:
    target = AwsTarget({"production": outputs(), "staging": outputs()}, clients={"s3": s3})
    target.ledger().append("deploy", "production", release="r9")
    with target.lock("staging", "deploy 9") as record:
        assert record["command"] == "deploy 9"
    assert [e["release"] for e in target.ledger().entries()] == ["r9"]
