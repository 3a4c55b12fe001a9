"""On-call operations on the local target: rollback, flags, db.reset, incident timeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from pipelines import operations
from pipelines.gameday.bad_release import KINDS
from pipelines.targets.base import TargetError
from pipelines.targets.local.ledger import FileLedger
from pipelines.traffic.loadgen import Load, get
from service.migrate import expected_head
from tests.conftest import LocalStack
from tests.e2e.test_deploy import build_release, bump_version

pytestmark = pytest.mark.e2e


def test_rollback_returns_to_the_previous_release_health_gated(
    local_staging: LocalStack, tmp_path: Path
) -> None:
    env = local_staging.environment
    before = env.current_release()
    newer = build_release(tmp_path, "feat: newer", {"service/__init__.py": bump_version})
    env.database.migrate(newer.artifact)
    assert env.rollout(newer).ok
    assert env.current_release() == newer.id
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    with Load(env.url, get("/api/_internal/health"), workers=3, max_seconds=60) as load:
        message = operations.rollback("staging", None, ledger=ledger)
    assert load.report.failures == 0, load.report.summary()
    assert env.current_release() == before
    assert f"to {before}" in message
    entry = ledger.entries("staging", "rollback")[-1]
    assert (entry["release"], entry["previous"], entry["ok"]) == (before, newer.id, True)
    with pytest.raises(TargetError, match="not in this environment's history"):
        operations.rollback("staging", "9.9.9+nowhere", ledger=ledger)


def test_emergency_flag_disables_orders_with_zero_failed_requests(
    local_staging: LocalStack, tmp_path: Path
) -> None:
    env = local_staging.environment
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    email, password = env.ensure_smoke_admin()
    token = httpx.post(
        f"{env.url}/api/auth/login", json={"email": email, "password": password}, timeout=10
    ).json()["access_token"]
    try:
        with Load(env.url, get("/api/_internal/health"), workers=3, max_seconds=60) as load:
            message = operations.set_flags("staging", ["ORDERS_ENABLED=false"], ledger=ledger)
        assert "ORDERS_ENABLED=false" in message
        assert load.report.failures == 0, load.report.summary()
        refused = httpx.post(
            f"{env.url}/api/orders",
            json={"items": [{"sku": "X", "quantity": 1}]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "orders_disabled"
        listed = {f["name"]: f for f in operations.list_flags("staging")}
        assert listed["ORDERS_ENABLED"]["enabled"] is False
        assert listed["ORDERS_ENABLED"]["overridden"] is True
        assert ledger.entries("staging", "flag")[-1]["changes"] == {"ORDERS_ENABLED": False}
    finally:
        operations.set_flags("staging", ["ORDERS_ENABLED=true"], ledger=ledger)


def test_flag_input_is_checked_before_anything_restarts(local_staging: LocalStack) -> None:
    with pytest.raises(TargetError, match="unknown flag"):
        operations.set_flags("staging", ["NOPE=false"])
    with pytest.raises(TargetError, match="true or false"):
        operations.set_flags("staging", ["ORDERS_ENABLED=maybe"])


def test_db_reset_refuses_production_whatever_is_asked() -> None:
    with pytest.raises(TargetError, match="refuses production"):
        operations.db_reset("production")


def test_db_status_reports_the_schema_against_the_release(local_staging: LocalStack) -> None:
    text = operations.db_status("staging")
    assert f"schema at {expected_head()}" in text
    assert "pending: none" in text


def test_incident_timeline_orders_ledger_and_alarm_events(
    local_staging: LocalStack, tmp_path: Path
) -> None:
    env = local_staging.environment
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    ledger.append("deploy", "staging", release="1+a", ok=True, failed_step=None)
    ledger.append("rollback", "staging", release="0+z", previous="1+a", ok=True)
    history = env.layout.alarms / "history.jsonl"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    with history.open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "alarm": "error-rate",
                    "old_state": "OK",
                    "new_state": "ALARM",
                    "reason": "Threshold Crossed",
                    "timestamp": stamp,
                }
            )
            + "\n"
        )
    text = operations.timeline("staging", "1h", ledger=ledger)
    assert text.startswith("## Timeline: staging since")
    deploy_at, rollback_at = text.index("deploy 1+a ok"), text.index("rollback 1+a -> 0+z ok")
    assert deploy_at < rollback_at
    assert "error-rate OK -> ALARM" in text
    with pytest.raises(TargetError, match="--since"):
        operations.timeline("staging", "yesterday-ish", ledger=ledger)


def test_a_flag_change_after_a_reversed_rollout_restarts_the_release_that_serves(
    local_staging: LocalStack, tmp_path: Path
) -> None:
    """The desired state still names a release whose rollout the circuit breaker reversed;
    a restart (a flag, a rotated secret) must bring back the one serving, not retry it."""
    env = local_staging.environment
    serving = env.current_release()
    unready = KINDS["bad-release-unready"]
    bad = build_release(tmp_path, unready.message, {unready.path: unready.edit})
    reversed_ = env.rollout(bad, 10.0)
    assert not reversed_.ok and env.current_release() == serving
    assert (env.desired() or {})["release"]["id"] == bad.id
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    try:
        message = operations.set_flags("staging", ["ORDERS_ENABLED=false"], ledger=ledger)
        assert "ORDERS_ENABLED=false" in message, message
        assert env.current_release() == serving
        assert (env.desired() or {})["release"]["id"] == serving
    finally:
        operations.set_flags("staging", ["ORDERS_ENABLED=true"], ledger=ledger)
    assert env.current_release() == serving
