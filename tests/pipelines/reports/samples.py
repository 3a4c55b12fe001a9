"""Report data as the pipelines write it: a deploy with every event kind, a drill and its
history, a game day. Built from real samples through the real bucketing."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.targets.base import ServerMetrics
from pipelines.traffic.loadgen import Sample
from pipelines.traffic.timeline import per_second

T0 = 1_764_000_000.0
DEPLOY_EVENT_KINDS = (
    "snapshot",
    "migration",
    "replica_start",
    "replica_ready",
    "replica_drain",
    "bake_start",
    "alarm",
    "bake_end",
    "rollback",
    "canary_stage",  # a kind the report has never heard of is drawn like the rest
)


def samples(seconds: int, start: float = T0, failing: range = range(0)) -> list[Sample]:
    rng = random.Random(7)
    out = []
    for second in range(seconds):
        for n in range(20):
            failed = second in failing and n % 3 == 0
            out.append(
                Sample(
                    at=start + second + n / 20,
                    latency_s=rng.uniform(0.002, 0.030),
                    status=0 if failed else 200,
                    route="GET /api/inventory",
                    error="ConnectError" if failed else None,
                )
            )
    return out


def deploy_data() -> dict[str, Any]:
    traffic = [vars(s) for s in per_second(samples(40, failing=range(25, 28)))]
    events = [
        {"at": T0 + 1 + i * 3.5, "kind": kind, "label": f"{kind} label", "env": "production"}
        for i, kind in enumerate(DEPLOY_EVENT_KINDS)
    ]
    return {
        "deploy_id": "20261203-160000-abc",
        "sha": "0123456789abcdef",
        "release": {"id": "r-0123456789ab"},
        "ok": False,
        "started_at": T0,
        "finished_at": T0 + 45,
        "plan": {"5": {"summary": "staging"}, "7": {"summary": "bake"}},
        "steps": {
            "5": {"ok": True, "duration_s": 9.0, "summary": "staging runs r"},
            "7": {"ok": False, "duration_s": 20.0, "summary": "bake failed: p95"},
        },
        "events": events,
        "traffic": traffic,
        "server": server_points(40),
    }


def server_points(seconds: int, start: float = T0, every: float = 2.0) -> list[dict[str, Any]]:
    """The service's own readings, one per scrape: the same errors as the client's traffic
    (seconds 25-27), and one scrape without requests (a gap, not a zero)."""
    points = []
    for n in range(1, int(seconds / every) + 1):
        at = start + n * every
        idle = n == 5
        points.append(
            asdict(
                ServerMetrics(
                    at=at,
                    period_s=every,
                    requests_per_s=0.0 if idle else 20.0,
                    error_rate=None if idle else (1 / 3 if 25 <= at - start <= 28 else 0.0),
                    p95_s=None if idle else 0.025,
                )
            )
        )
    return points


def drill_data(directory: Path, count: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`count` drills on disk (JSON each, and the history lines); returns the newest and the
    history."""
    history = []
    report: dict[str, Any] = {}
    for n in range(count):
        report = {
            "id": f"drill-{n}",
            "ok": True,
            "source": "production",
            "target": "staging",
            "scratch_database": f"drill_{n}",
            "started_at": f"2026-12-0{n + 1}T10:00:00Z",
            "phases": [
                {"name": name, "seconds": 1.0 + n + i, "ok": True, "detail": ""}
                for i, name in enumerate(("dump", "restore", "verify", "replica", "smoke"))
            ],
            "snapshot": {"id": f"snap-{n}", "size_bytes": (n + 1) * 2_500_000},
            "rto_s": 12.0 + n,
            "rpo_s": 3.0 + n,
            "rpo_basis": "newest row",
            "tables": 5,
            "rows": 1000,
        }
        path = directory / f"drill-{n}.json"
        path.write_text(json.dumps(report))
        history.append(
            {
                **{k: report[k] for k in ("id", "started_at", "ok", "rto_s", "rpo_s")},
                "report": str(path),
            }
        )
    return report, history


def gameday_data(scenarios: tuple[str, ...] = ("kill-replica", "lb-crash")) -> dict[str, Any]:
    results = []
    for index, name in enumerate(scenarios):
        start = T0 + index * 60
        fault_at = start + 5
        results.append(
            {
                "scenario": {"name": name},
                "budget": {"detection_s": 5.0, "recovery_s": 30.0, "unexpected_failures": 0},
                "score": {
                    "scenario": name,
                    "fault_detail": f"{name} detail",
                    "fault_at": fault_at,
                    "healed_at": fault_at + 10,
                    "detection_s": 0.5,
                    "recovery_s": 12.0,
                    "requests": 600,
                    "failed_expected": 3,
                    "failed_unexpected": 0,
                    "acknowledged_orders": 300,
                    "orders_lost": 0,
                    "reasons": [],
                    "passed": True,
                },
                "events": [
                    {"at": fault_at, "kind": "fault", "label": name},
                    {"at": fault_at + 0.5, "kind": "detected", "label": "replica"},
                    {"at": fault_at + 12, "kind": "recovered", "label": "ok"},
                ],
                "traffic": [vars(s) for s in per_second(samples(30, start, range(5, 8)))],
            }
        )
    return {
        "environment": "production",
        "started_at": T0,
        "finished_at": T0 + 60 * len(scenarios),
        "passed": True,
        "scenarios": results,
    }


def pitr_data(directory: Path, count: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`count` point-in-time drills through the real record (`pitr_report.write`): JSON,
    Markdown, HTML and the history lines on disk. Returns the newest as JSON and the history."""
    from pipelines.backups.pitr_report import HISTORY, PitrDrillReport, write
    from pipelines.backups.report import history

    report = PitrDrillReport("x", "local", "production", "")
    for n in range(count):
        report = PitrDrillReport(
            id=f"pitr-{n}",
            target="local",
            environment="production",
            started_at=f"2026-12-0{n + 1}T10:00:00.00Z",
            point=f"2026-12-0{n + 1}T10:00:30.00Z",
            orders_written=120,
            orders_expected=60,
            orders_in_copy=60,
            restore={
                "backup_id": f"base-{n}",
                "durations": {"copy_s": 2.0 + n, "stage_s": 0.5, "replay_s": 1.5 + n},
            },
            recovered_to=f"2026-12-0{n + 1} 10:00:29.8 UTC",
            rpo_s=0.2 + n / 10,
            rto_s=9.0 + 2 * n,
            replay_mb_s=40.0 + n,
            seconds=30.0,
        )
        write(report, directory)
    return report.to_json(), history(directory, HISTORY)
