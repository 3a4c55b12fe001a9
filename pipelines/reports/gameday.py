"""The game day's HTML: the score table, then one timeline per scenario (the client's traffic
per second, the fault window shaded, the fault, detection, recovery and alarm transitions)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.reports import page, timeline


def _s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def html(data: Mapping[str, Any]) -> str:
    results = list(data.get("scenarios") or [])
    rows = []
    for result in results:
        s, b = result["score"], result["budget"]
        rows.append(
            (
                s["scenario"],
                f"{_s(s['detection_s'])} ({_s(b.get('detection_s'))})",
                f"{_s(s['recovery_s'])} ({_s(b['recovery_s'])})",
                s["failed_expected"],
                f"{s['failed_unexpected']} ({b['unexpected_failures']})",
                f"{s['orders_lost']} / {s['acknowledged_orders']}",
                ("bad", "skipped: " + s["skipped"])
                if s.get("skipped")
                else ("ok", "pass")
                if s["passed"]
                else ("bad", "FAIL: " + "; ".join(s["reasons"])),
            )
        )
    sections: list[tuple[str, Any]] = [
        (
            "Scores",
            page.table(
                (
                    "scenario",
                    "detection s (budget)",
                    "recovery s (budget)",
                    "failed expected",
                    "failed unexpected (budget)",
                    "orders lost / acknowledged",
                    "verdict",
                ),
                rows,
            ),
        )
    ]
    for result in results:
        s = result["score"]
        end = max(float(s["healed_at"]), float(s["fault_at"]) + 1.0)
        window = timeline.Window(float(s["fault_at"]), end, f"fault: {s['scenario']}")
        sections.append(
            (
                f"{s['scenario']}: {s['fault_detail']}",
                timeline.figure(
                    s["scenario"], result.get("traffic") or [], result.get("events") or [], [window]
                ),
            )
        )
    passed = sum(r["score"]["passed"] and not r["score"].get("skipped") for r in results)
    took = float(data.get("finished_at", 0)) - float(data.get("started_at", 0))
    return page.render(
        f"Game day on {data.get('environment')}: {passed}/{len(results)} scenarios passed",
        [
            f"took {took:.0f} s",
            "detection and recovery in seconds from the fault; budgets in brackets",
        ],
        sections,
    )


def write(data: Mapping[str, Any], path: Path) -> Path:
    return page.write(path, html(data))
