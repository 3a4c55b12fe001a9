"""The ledger in S3, against moto (which models If-None-Match on PutObject, 412
PreconditionFailed included), and the target's ledger and lock in the backups bucket. The
lock's lease is tested in test_lease.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from pipelines.targets.aws.s3 import S3Ledger
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


def test_target_ledger_and_lock_use_the_backups_bucket(s3: Any) -> None:
    target = AwsTarget({"production": outputs(), "staging": outputs()}, clients={"s3": s3})
    target.ledger().append("deploy", "production", release="r9")
    with target.lock("staging", "deploy 9") as held:
        assert held.record is not None and held.record["command"] == "deploy 9"
        assert held.key == "locks/staging.json"
    assert [e["release"] for e in target.ledger().entries()] == ["r9"]
