"""The drill against a whole running local environment: its live database, written to by
its replicas' heartbeats, restored into a scratch database beside it. The environment is
shared by the session, so the drill only reads it and must leave its replicas alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.backups import report as drill_report
from pipelines.targets.base import Health
from pipelines.targets.local.backups import drill as drills
from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.ledger import FileLedger
from tests.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def serving(stack: LocalStack) -> dict[int, int | None]:
    status = stack.environment.status()
    return {r.slot: r.pid for r in status.replicas if r.health is Health.READY}


def test_drill_of_the_live_environment(local_staging: LocalStack, tmp_path: Path) -> None:
    env = local_staging.environment
    # Other tests of the session kill replicas and the agent; start from a settled state.
    deadline = time.monotonic() + 30
    while len(before := serving(local_staging)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(before) == 2, env.status()
    ledger = FileLedger(local_staging.state_dir / "ledger.jsonl")
    lines: list[str] = []
    report = drills.run_drill(
        env, env, reports_dir=tmp_path, log=lines.append, ledger=ledger, ready_timeout_s=60
    )
    assert report.ok, drill_report.summary(report)
    # The heartbeat is written every few seconds, so the copy is only seconds old.
    assert report.rpo_s is not None and report.rpo_s < 30, report.rpo_basis
    assert report.rpo_basis.startswith("newest heartbeat")
    assert report.rto_s is not None and report.rto_s < 60
    assert any(line.startswith("drill [3/6] verify: done") for line in lines), lines
    snapshot = backups.find_snapshot(env, report.snapshot["id"])
    assert snapshot.kind == "weekly" and snapshot.environment == "staging"
    assert serving(local_staging) == before, "the drill touched the live replicas"
    assert ledger.entries(env="staging", kind="drill")[-1]["ok"] is True
