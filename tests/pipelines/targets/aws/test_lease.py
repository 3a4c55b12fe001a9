"""The deploy lock's lease in S3, against moto (which models If-None-Match and If-Match on
PutObject and DeleteObject, 412 PreconditionFailed included), with an injected clock: no
test waits for a lease to run out. A renewal that fails without a 412 (throttling, a
network fault) is what moto cannot produce, so that sequence is botocore's Stubber."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from infra.spec import defaults
from pipelines.deploy.runner import execute
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.lock import LeaseLost, LockHeld
from pipelines.targets.aws.lease import LEASE_S, S3Lock
from pipelines.targets.aws.target import AwsTarget
from pipelines.targets.base import Release
from pipelines.targets.local.ledger import FileLedger
from tests.pipelines.targets.aws.conftest import BUCKET, REGION, FakeTime, client, outputs

pytestmark = pytest.mark.unit

KEY = "locks/production.json"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3


def body(s3: Any, key: str = KEY) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def lock(s3: Any, ticks: FakeTime, **options: Any) -> S3Lock:
    return S3Lock(BUCKET, "production", client=s3, clock=ticks.clock, **options)


def on_host(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setattr("pipelines.targets.aws.lease.socket.gethostname", lambda: host)


def test_the_lock_is_exclusive_names_its_holder_and_when_its_lease_ends(s3: Any) -> None:
    ticks = FakeTime(now=1_750_000_000.0)  # 2025-06-15 15:06:40 UTC
    with lock(s3, ticks).held("deploy 42"):
        holder = body(s3)
        assert holder["command"] == "deploy 42" and holder["host"] == socket.gethostname()
        assert holder["expires_at"] == ticks.now + LEASE_S and holder["lease_s"] == LEASE_S
        ticks.now += 30
        with pytest.raises(LockHeld) as refused:
            lock(s3, ticks).acquire("deploy 43")
        message = str(refused.value)
        assert f"held by pid {holder['pid']} on {socket.gethostname()}" in message
        assert "deploy 42" in message
        assert "its lease ends 2025-06-15 15:08:40 UTC (in 90 s)" in message
        # Another environment has its own lock.
        with S3Lock(BUCKET, "staging", client=s3, clock=ticks.clock).held("deploy 43"):
            pass
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="locks/")
    lock(s3, ticks).acquire("deploy 44")


def test_a_lease_of_another_host_that_is_not_renewed_is_taken_over_once_it_ends(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job killed while it held the lock: its host cannot be asked whether the process
    lives, so only the lease frees the lock, within LEASE_S, not hours."""
    ticks = FakeTime(now=1_750_000_000.0)
    on_host(monkeypatch, "ci-runner-7")
    lock(s3, ticks).acquire("deploy 1")  # and then the job is killed: nobody renews
    monkeypatch.undo()

    ticks.now += LEASE_S - 1
    with pytest.raises(LockHeld, match=r"on ci-runner-7 .*its lease ends .*\(in 1 s\)"):
        lock(s3, ticks).acquire("deploy 2")

    ticks.now += 2
    said: list[str] = []
    record = lock(s3, ticks, on_break=said.append).acquire("deploy 2")
    assert len(said) == 1 and "breaking a stale lock" in said[0]
    assert "on ci-runner-7" in said[0] and "deploy 1" in said[0]
    assert "its lease ended 2025-06-15 15:08:40 UTC (1 s ago)" in said[0]
    assert body(s3) == record and record["host"] == socket.gethostname()


def test_a_renewed_lease_is_not_taken_over(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = FakeTime()
    on_host(monkeypatch, "ci-runner-7")
    holder = lock(s3, ticks)
    holder.acquire("deploy 1")
    monkeypatch.undo()
    first_end = body(s3)["expires_at"]
    ticks.now += LEASE_S / 3
    assert holder.renew() is True
    assert body(s3)["expires_at"] == ticks.now + LEASE_S
    ticks.now = first_end + 1  # the first lease is over; the renewed one runs
    with pytest.raises(LockHeld, match="ci-runner-7"):
        lock(s3, ticks).acquire("deploy 2")
    holder.check()  # still ours


def test_the_holder_renews_in_the_background_and_stops_on_release(s3: Any) -> None:
    ticks = FakeTime()
    renewed = threading.Event()
    holder = lock(s3, ticks, renew_every_s=0.01)
    renew = holder.renew

    def observed() -> bool:
        ok = renew()
        if body(s3)["expires_at"] > 1000.0 + LEASE_S:
            renewed.set()
        return ok

    holder.renew = observed  # type: ignore[method-assign]
    with holder.held("deploy 1"):
        renewer = holder._renewer
        assert renewer is not None and renewer.is_alive()
        ticks.now += LEASE_S - 1
        assert renewed.wait(timeout=30), "the renewer never renewed"
        ticks.now += 2  # past the first lease's end, not the renewed one's
        with pytest.raises(LockHeld):
            lock(s3, ticks).acquire("deploy 2")
    assert not renewer.is_alive()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="locks/")


def test_a_holder_whose_lease_was_taken_over_says_so_and_stops(s3: Any) -> None:
    ticks = FakeTime(now=1_750_000_000.0)
    lost: list[str] = []
    holder = lock(s3, ticks, on_lost=lost.append)
    holder.acquire("deploy 1")
    ticks.now += LEASE_S + 5  # suspended, or cut off: no renewal landed in time
    lock(s3, ticks, on_break=lambda _: None).acquire("deploy 2")
    rival = body(s3)

    with pytest.raises(LeaseLost) as stopped:
        holder.check()  # past its own lease's end, it tries to renew first
    message = str(stopped.value)
    assert lost == [message]
    assert f"lost the lock s3://{BUCKET}/{KEY} held for 'deploy 1'" in message
    assert f"taken over by pid {rival['pid']} on {rival['host']}" in message
    assert "deploy 2" in message and "its lease ends 2025-06-15 15:10:45 UTC" in message
    assert "stops before its next change" in message
    assert holder.renew() is False
    holder.release()
    assert body(s3) == rival, "the loser never deletes the new holder's lock"


def test_a_lease_that_cannot_be_renewed_before_it_ends_is_lost() -> None:
    """Renewals failing without a 412 (S3 throttling, a network fault): the holder keeps
    trying while its lease runs, and gives the lock up as lost once it has ended."""
    ticks = FakeTime(now=1_750_000_000.0)
    s3 = client("s3")
    lost: list[str] = []
    holder = S3Lock(BUCKET, "production", client=s3, clock=ticks.clock, on_lost=lost.append)
    put = {"Bucket": BUCKET, "Key": KEY, "Body": ANY, "ContentType": "application/json"}
    with Stubber(s3) as stub:
        stub.add_response("put_object", {"ETag": '"e1"'}, {**put, "IfNoneMatch": "*"})
        for _ in range(2):
            stub.add_client_error(
                "put_object", "SlowDown", "Please reduce your request rate.", 503,
                expected_params={**put, "IfMatch": '"e1"'},
            )  # fmt: skip
        holder.acquire("deploy 1")
        ticks.now += LEASE_S / 3
        assert holder.renew() is True and not lost, "a failed renewal inside the lease"
        holder.check()
        ticks.now += LEASE_S
        with pytest.raises(LeaseLost, match="could not be renewed before its lease ended"):
            holder.check()
        stub.assert_no_pending_responses()
    assert "SlowDown" in lost[0] and "deploy 1" in lost[0]


def test_a_dead_process_on_this_host_leaves_a_stale_lock(s3: Any) -> None:
    ticks = FakeTime()
    holder = {"pid": 2**22 + 1, "host": socket.gethostname(), "who": "ci", "at": 1.0}
    record = {**holder, "expires_at": ticks.now + 60, "command": "deploy 1"}
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(record))
    said: list[str] = []
    lock(s3, ticks, on_break=said.append).acquire("deploy 2")
    assert said and "deploy 1" in said[0]


def test_of_two_takers_only_one_wins(s3: Any) -> None:
    """The take-over is a put conditional on the stale holding's ETag: the loser sees 412."""
    from botocore.exceptions import ClientError

    ticks = FakeTime()
    lock(s3, ticks).acquire("deploy 1")
    ticks.now += LEASE_S + 1
    first = lock(s3, ticks, on_break=lambda _: None)
    _, etag = first.holder() or ({}, "")
    first.acquire("taker 1")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"{}", IfMatch=etag)
    with pytest.raises(LockHeld, match="taker 1"):
        lock(s3, ticks).acquire("taker 2")


class _Step:
    reads_commit_only = False

    def __init__(self, number: int, env_name: str, run: Any = None) -> None:
        self.number, self.env_name = number, env_name
        self.name = f"deploy.{env_name}"
        self.title = f"step {number}"
        self.exit_code = exit_code_for(number)
        self.during = run
        self.ran = False

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("change nothing")

    def run(self, ctx: StepContext) -> StepResult:
        self.ran = True
        if self.during:
            self.during()
        return StepResult(True, "ran")


def test_a_deploy_that_lost_its_lock_stops_before_its_next_change(s3: Any, tmp_path: Path) -> None:
    ticks = FakeTime(now=1_750_000_000.0)
    target = AwsTarget(
        {"staging": outputs(), "production": outputs()},
        spec=defaults("staging"),
        clients={"s3": s3},
        wall_clock=ticks.clock,
    )

    def suspended_and_taken_over() -> None:
        ticks.now += LEASE_S + 1
        rival = S3Lock(BUCKET, "staging", client=s3, clock=ticks.clock, on_break=lambda _: None)
        rival.acquire("deploy rival")

    staging = _Step(5, "staging", suspended_and_taken_over)
    production = _Step(6, "production")
    ctx = StepContext(
        target=target,
        sha="abc",
        root=tmp_path,
        reports=tmp_path / "reports",
        release=Release("r1", "", "abc", "r1", "now"),
        deploy_id="d1",
    )
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    assert execute(ctx, ledger, [staging, production]) == exit_code_for(6)
    assert staging.ran and not production.ran
    [entry] = ledger.entries("production", "deploy")
    assert entry["failed_step"] == 6
    summary = entry["steps"]["6"]["summary"]  # JSON keys are text
    assert summary.startswith("step 6: stopped: lost the lock")
    assert "locks/staging.json" in summary and "deploy rival" in summary
    assert body(s3, "locks/staging.json")["command"] == "deploy rival"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="locks/production")


def test_an_operation_that_lost_its_lock_says_so(s3: Any) -> None:
    from pipelines.operations.common import held
    from pipelines.targets.base import TargetError

    ticks = FakeTime()
    target = AwsTarget(
        {"staging": outputs()}, spec=defaults("staging"), clients={"s3": s3}, wall_clock=ticks.clock
    )
    rival = S3Lock(BUCKET, "staging", client=s3, clock=ticks.clock, on_break=lambda _: None)

    def rollback_while_suspended() -> None:
        with held(target, "staging", "rollback staging"):
            ticks.now += LEASE_S + 1
            rival.acquire("deploy rival")

    with pytest.raises(TargetError) as refused:
        rollback_while_suspended()
    message = str(refused.value)
    assert message.startswith("staging: lost the lock") and "deploy rival" in message
    assert "The operation itself ran" in message
