"""The per-environment deploy lock, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.deploy.runner import execute
from pipelines.deploy.steps import EXIT_LOCKED, StepContext, StepPlan, StepResult
from pipelines.lock import LockHeld, environment_lock
from pipelines.targets.base import Release
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget

pytestmark = pytest.mark.integration

HOLDER = """
import sys, time
from pathlib import Path
from pipelines.lock import environment_lock
with environment_lock(Path(sys.argv[1]), "deploy 20261128-holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def hold(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_refuses_and_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "production.lock"
    proc = hold(path)
    try:
        with pytest.raises(LockHeld) as excinfo, environment_lock(path, "second deploy"):
            pass
        message = str(excinfo.value)
        assert f"pid {proc.pid}" in message
        assert "deploy 20261128-holder" in message
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_kill_9_is_broken_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "production.lock"
    proc = hold(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path.exists(), "kill -9 leaves the lock file behind"
    notices: list[str] = []
    with environment_lock(path, "next deploy", on_break=notices.append):
        assert path.exists()
    assert notices
    assert "stale lock" in notices[0]
    assert f"pid {proc.pid}" in notices[0]
    assert not path.exists(), "released on exit"


class _Touches:
    number, name, title, env_name = 5, "deploy.staging", "touches staging", "staging"
    exit_code = 15
    ran = False

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("nothing")

    def run(self, ctx: StepContext) -> StepResult:
        self.ran = True
        return StepResult(True, "ran")


def test_a_second_deploy_is_refused_while_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path))
    proc = hold(tmp_path / "locks" / "staging.lock")
    release = Release("1+abc", "1", "abc", str(tmp_path), "now")
    step = _Touches()
    ctx = StepContext(
        target=LocalTarget(),  # its lock files live under DRYDOCK_STATE_DIR
        sha="abc",
        root=tmp_path,  # type: ignore[arg-type]
        reports=tmp_path / "reports",
        release=release,
        deploy_id="second",
    )
    try:
        assert execute(ctx, FileLedger(tmp_path / "ledger.jsonl"), [step]) == EXIT_LOCKED
        assert not step.ran
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.1)
    assert execute(ctx, FileLedger(tmp_path / "ledger.jsonl"), [step]) == 0
    assert step.ran


def test_a_rollback_or_a_flag_change_during_a_deploy_is_refused_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import operations
    from pipelines.targets.base import TargetError

    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path))
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    proc = hold(tmp_path / "locks" / "staging.lock")  # a deploy in progress
    try:
        with pytest.raises(TargetError, match=r"staging is busy: .*deploy 20261128-holder"):
            operations.set_flags("staging", ["ORDERS_ENABLED=false"], ledger)
        with pytest.raises(TargetError, match="staging is busy") as refused:
            operations.rollback("staging", None, ledger=ledger)
        assert "nothing was changed" in str(refused.value)
    finally:
        proc.kill()
        proc.wait()
    assert ledger.entries() == []


def test_the_holding_says_when_the_lock_file_is_no_longer_ours(tmp_path: Path) -> None:
    from pipelines.lock import LeaseLost

    path = tmp_path / "production.lock"
    with environment_lock(path, "deploy 1") as holding:
        holding.check()  # ours
        path.write_text('{"pid": 1, "host": "elsewhere", "who": "x", "at": 1, "command": "c"}')
        with pytest.raises(LeaseLost, match="is no longer ours: it names pid 1 on elsewhere"):
            holding.check()
        path.unlink()
        with pytest.raises(LeaseLost, match="nobody"):
            holding.check()
