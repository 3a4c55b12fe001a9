"""Production's canary end to end on the local target, under order traffic: a release that
fails 5 % of order creations, one that is 100 ms slower on one route, and a good one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipelines.deploy.rollout import ProductionStep
from pipelines.deploy.runner import execute
from pipelines.deploy.steps import StepContext, exit_code_for
from pipelines.targets.base import Release
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.ledger import FileLedger
from pipelines.traffic import synthetic
from pipelines.traffic.loadgen import LoadReport
from tests.conftest import LocalStack
from tests.e2e.test_deploy import build_release, bump_version
from tests.e2e.test_deploy import context as deploy_context

pytestmark = pytest.mark.e2e

FAULTY_ORDERS = {
    "service/flags.py": lambda text: text.replace(
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        False,',
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        True,',
    )
}
SLOW_LISTING = {
    "service/api/inventory.py": lambda text: text.replace(
        '    after = decode_cursor("items", cursor) or 0\n',
        "    import asyncio\n\n    await asyncio.sleep(0.1)\n"
        '    after = decode_cursor("items", cursor) or 0\n',
    )
}


def context(release: Release, tmp: Path, **options: object) -> StepContext:
    """Step 6 as production's stack file has it, a canary (the suite's environments roll
    out at once unless a test asks: tests/conftest.py)."""
    return deploy_context(release, tmp, rollout_strategy="canary", **options)


@contextmanager
def order_traffic(env: LocalEnvironment, seconds: float = 240) -> Iterator[LoadReport]:
    """Users' traffic during the deploy: half order creations, half reads."""
    email, password = env.ensure_smoke_admin()
    fixture = synthetic.prepare(env.url, email, password)
    load = synthetic.traffic(env.url, fixture, seconds, workers=2)
    try:
        yield load.report
    finally:
        load.stop()
        synthetic.cleanup(env.url, fixture)


def step6(tmp_path: Path) -> dict[str, Any]:
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    return dict(report["steps"]["6"]) | {"events": report["events"]}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['kind']}: {e['label']}" for e in events if e["kind"].startswith("canary")]


def test_release_failing_five_percent_of_orders_is_stopped_at_the_first_stage(
    local_production: LocalStack, tmp_path: Path
) -> None:
    env = local_production.environment
    before = env.current_release()
    release = build_release(tmp_path, "feat: orders with injected faults", FAULTY_ORDERS)
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    with order_traffic(env) as load:
        code = execute(context(release, tmp_path), ledger, [ProductionStep(ledger)])
    step = step6(tmp_path)
    assert code == exit_code_for(6), step["summary"]
    canary = step["evidence"]["canary"]
    assert canary["verdict"] == "aborted at 10 %", canary
    first = canary["stages"][0]
    assert first["checks"]["errors"]["ok"] is False
    assert first["canary"]["errors"] >= 2 and first["baseline"]["errors"] == 0
    assert "canary aborted at 10 %: errors: canary" in step["summary"]
    assert kinds(step["events"])[:2] == [
        "canary_stage: canary 10 %",
        "canary_abort: " + (f"canary 10 %: {canary['reason']}"),
    ]
    assert env.current_release() == before
    assert env.canary.record() is None and env.load_balancer().canary_share() == 0
    assert load.requests > 100
    assert load.failures <= 0.02 * load.requests, load.summary()
    assert ledger.entries("production", "rollout")[-1]["ok"] is False


def test_release_slower_on_one_route_is_stopped_by_the_second_stage(
    local_production: LocalStack, tmp_path: Path
) -> None:
    env = local_production.environment
    before = env.current_release()
    release = build_release(tmp_path, "perf: a slower item listing", SLOW_LISTING)
    with order_traffic(env) as load:
        code = execute(
            context(release, tmp_path), FileLedger(tmp_path / "l.jsonl"), [ProductionStep()]
        )
    step = step6(tmp_path)
    assert code == exit_code_for(6), step["summary"]
    canary = step["evidence"]["canary"]
    assert canary["verdict"] in ("aborted at 10 %", "aborted at 50 %"), canary
    last = canary["stages"][-1]
    assert last["checks"]["latency"]["ok"] is False
    assert "Mann-Whitney" in last["checks"]["latency"]["detail"]
    assert last["canary"]["p95_ms"] > last["baseline"]["p95_ms"]
    assert env.current_release() == before
    assert load.failures == 0, load.summary()


def test_good_release_is_promoted_through_every_stage_with_no_failed_request(
    local_production: LocalStack, tmp_path: Path
) -> None:
    env = local_production.environment
    release = build_release(tmp_path, "feat: a good release", {"service/__init__.py": bump_version})
    with order_traffic(env) as load:
        code = execute(
            context(release, tmp_path), FileLedger(tmp_path / "l.jsonl"), [ProductionStep()]
        )
    step = step6(tmp_path)
    assert code == 0, json.dumps(step["evidence"], indent=1)
    canary = step["evidence"]["canary"]
    # Locally the pair holds at most half each: 100 % is the promotion, not a stage.
    assert [s["share_percent"] for s in canary["stages"]] == [10, 50]
    assert all(s["verdict"] == "promote" for s in canary["stages"]), canary
    assert all(s["canary"]["requests"] > 0 for s in canary["stages"])
    assert canary["stages"][1]["overhead_s"] is not None
    assert kinds(step["events"]) == [
        "canary_stage: canary 10 %",
        "canary_promote: canary 10 % passed",
        "canary_stage: canary 50 %",
        "canary_promote: canary 50 % passed",
        f"canary_promote: {release.id} on every replica",
    ]
    assert env.current_release() == release.id
    assert env.canary.record() is None and env.load_balancer().canary_share() == 0
    assert load.requests > 100
    assert load.failures == 0, load.summary()
