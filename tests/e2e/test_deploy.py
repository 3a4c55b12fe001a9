"""Deploy steps 5-7 end to end on the local target, under load, with real releases built from
commits: a good one, one that never turns ready, and one that turns ready but errors."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pipelines import releases
from pipelines.deploy.rollout import ProductionStep, StagingStep
from pipelines.deploy.runner import execute
from pipelines.deploy.steps import Step, StepContext, exit_code_for
from pipelines.deploy.verify import VerifyStep
from pipelines.targets.base import Release
from pipelines.targets.local.layout import state_root
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget
from pipelines.traffic.loadgen import Load, get
from service.migrate import expected_head
from tests.conftest import LocalStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def build_release(tmp: Path, message: str, edits: dict[str, Callable[[str], str]]) -> Release:
    """A release built from a real commit: a clone of this repository with `edits` applied
    (an edit of a file that does not exist yet gets "" and creates it)."""
    clone = tmp / "repo"
    if not clone.exists():
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    for relative, edit in edits.items():
        path = clone / relative
        path.write_text(edit(path.read_text() if path.exists() else ""))
    subprocess.run(["git", "-C", str(clone), "add", "--all"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(clone),
            "-c",
            "user.email=ci@example.com",
            "-c",
            "user.name=ci",
            "commit",
            "--quiet",
            "-am",
            message,
        ],
        check=True,
    )
    return releases.build(state_root() / "releases", "HEAD", root=clone)


# A release that starts has this long to turn ready: a bound for a host loaded by the rest of
# the suite (replicas start slower under coverage), not a measure of the rollout. The release
# that never turns ready is given a short one instead, since it always runs out.
ROLLOUT_DEADLINE_S = 90


def context(release: Release, tmp: Path, **options: object) -> StepContext:
    return StepContext(
        target=LocalTarget(),
        sha=release.git_sha,
        root=ROOT,
        reports=tmp / "reports",
        release=release,
        deploy_id=f"test-{int(time.time() * 1000)}",
        options={"bake_s": 8, "rollout_deadline_s": ROLLOUT_DEADLINE_S, **options},
    )


def bump_version(text: str) -> str:
    return text.replace('__version__ = "', '__version__ = "9.9.')


def prod_load(production: LocalStack) -> Load:
    return Load(
        production.environment.url,
        get("/api/_internal/health"),
        workers=3,
        max_seconds=180,
        pause_s=0.01,
    )


def test_full_release_is_promoted_with_zero_failed_requests(
    local_staging: LocalStack, local_production: LocalStack, tmp_path: Path
) -> None:
    release = build_release(tmp_path, "feat: a new release", {"service/__init__.py": bump_version})
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    steps: list[Step] = [StagingStep(), ProductionStep(), VerifyStep(ledger)]
    ctx = context(release, tmp_path)
    with prod_load(local_production) as load:
        code = execute(ctx, ledger, steps)
    report = load.report
    assert code == 0, (tmp_path / "reports" / "report.md").read_text()
    assert report.requests > 100
    assert report.failures == 0, report.summary()
    env = local_production.environment
    assert env.current_release() == release.id
    health = httpx.get(f"{env.url}/api/_internal/health", timeout=5).json()
    assert health["version"].startswith("9.9.")
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert written["ok"] is True
    assert set(written["steps"]) == {"5", "6", "7"}
    smoke = written["steps"]["5"]["evidence"]["smoke"]
    assert smoke["ok"] and {c["name"] for c in smoke["checks"]} >= {"auth", "inventory", "orders"}
    assert all(entry.endswith(": 204") for entry in smoke["cleanup"]), smoke["cleanup"]
    entries = ledger.entries("production", "deploy")
    assert entries[-1]["ok"] and entries[-1]["release"] == release.id
    assert entries[-1]["p95_s"] is not None
    # The timeline: every phase of the deploy as events, and the bake's traffic per second.
    kinds = [e["kind"] for e in written["events"]]
    assert {"snapshot", "migration", "replica_start", "replica_ready", "replica_drain"} <= set(
        kinds
    )
    assert kinds.index("bake_start") < kinds.index("bake_end")
    assert [e["at"] for e in written["events"]] == sorted(e["at"] for e in written["events"])
    assert sum(s["requests"] for s in written["traffic"]) > 0
    html = (tmp_path / "reports" / "report.html").read_text()
    assert "event: replica_ready" in html and "Plotly.newPlot" in html


@pytest.mark.parametrize(
    ("strategy", "stopped_by"),
    [
        ("canary", ("canary_abort", "canary not started")),
        ("rolling", ("rollback", "circuit breaker")),
    ],
)
def test_release_that_never_turns_ready_is_reversed_and_fails_step_6(
    local_production: LocalStack, tmp_path: Path, strategy: str, stopped_by: tuple[str, str]
) -> None:
    """Production's default, the canary, stops it before it takes any traffic; rolled out at
    once (a hotfix), the agent's circuit breaker reverses it."""
    env = local_production.environment
    before = env.current_release()
    release = build_release(
        tmp_path,
        "fix: expects a migration that does not exist",
        {
            "service/migrate.py": lambda text: text.replace(
                "    return str(heads[0])", '    return "ffffffffffff"'
            )
        },
    )
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    with prod_load(local_production) as load:
        ctx = context(release, tmp_path, rollout_deadline_s=10, rollout_strategy=strategy)
        code = execute(ctx, ledger, [ProductionStep()])
    assert code == exit_code_for(6)
    assert load.report.failures == 0, load.report.summary()
    assert env.current_release() == before
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    summary = written["steps"]["6"]["summary"]
    assert "rolled_back" in summary
    assert "not healthy within" in summary
    assert f"schema at {expected_head()}, code expects ffffffffffff" in summary
    kind, label = stopped_by
    stops = [e for e in written["events"] if e["kind"] == kind]
    assert stops and label in stops[0]["label"], written["events"]


def test_release_that_errors_is_caught_by_verify_and_rolled_back(
    local_production: LocalStack, tmp_path: Path
) -> None:
    env = local_production.environment
    before = env.current_release()
    release = build_release(
        tmp_path,
        "feat: turn on order fault injection",
        {
            "service/flags.py": lambda text: text.replace(
                'Flag(\n        "ORDERS_FAULT_INJECTION",\n        False,',
                'Flag(\n        "ORDERS_FAULT_INJECTION",\n        True,',
            ).replace(
                'Flag("ORDERS_FAULT_INJECTION", False,', 'Flag("ORDERS_FAULT_INJECTION", True,'
            )
        },
    )
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    # Rolled out at once, as a hotfix would be: the bake alone must catch it. Under the
    # canary, step 6 stops it first (tests/e2e/test_canary.py).
    ctx = context(release, tmp_path, rollout_strategy="rolling")
    code = execute(ctx, ledger, [ProductionStep(), VerifyStep(ledger)])
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert code == exit_code_for(7), written["steps"]
    verify = written["steps"]["7"]
    assert "error rate" in verify["summary"]
    assert "Code rolled back" in verify["summary"]
    assert "backup.restore --snapshot" in verify["summary"]
    kinds = [e["kind"] for e in written["events"]]
    assert kinds.index("bake_end") < kinds.index("rollback")
    assert sum(s["failed"] for s in written["traffic"]) > 0  # the errors the bake saw
    assert env.current_release() == before
    assert ledger.entries("production", "deploy")[-1]["ok"] is False
