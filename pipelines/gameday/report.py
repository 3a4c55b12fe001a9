"""The game day's reports: JSON for machines, Markdown and HTML (one timeline per scenario,
the fault window shaded) for people, under reports/gamedays/<id>.{json,md,html}, with
latest.json pointing at the newest."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write(data: dict[str, Any], directory: Path) -> dict[str, str]:
    from pipelines.reports import gameday as gameday_html

    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(data["started_at"]))
    run_id = f"{stamp}-{data['environment']}"
    paths = {
        "json": str(directory / f"{run_id}.json"),
        "markdown": str(directory / f"{run_id}.md"),
        "html": str(directory / f"{run_id}.html"),
    }
    data["id"], data["paths"] = run_id, paths
    Path(paths["json"]).write_text(json.dumps(data, indent=2, default=str) + "\n")
    Path(paths["markdown"]).write_text(markdown(data))
    gameday_html.write(data, Path(paths["html"]))
    (directory / "latest.json").write_text(json.dumps({"id": run_id, **paths}, indent=2) + "\n")
    return paths


def _s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def markdown(data: Mapping[str, Any]) -> str:
    results = data["scenarios"]
    passed = sum(r["score"]["passed"] and not r["score"].get("skipped") for r in results)
    lines = [
        f"# Game day {data.get('id', '')} on {data['environment']}: "
        f"{passed}/{len(results)} scenarios passed",
        "",
        f"- took {data['finished_at'] - data['started_at']:.0f} s; plots: `{data.get('id')}.html`",
        "- detection and recovery are seconds from the moment of the fault; failed requests "
        "are split into those the fault explains (expected) and the others",
        "",
        "| scenario | detection s (budget) | recovery s (budget) | failed expected | "
        "failed unexpected (budget) | orders lost / acknowledged | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        s, b = result["score"], result["budget"]
        verdict = "pass" if s["passed"] else "**FAIL**: " + "; ".join(s["reasons"])
        if s.get("skipped"):
            verdict = f"skipped: {s['skipped']}"
        lines.append(
            f"| {s['scenario']} | {_s(s['detection_s'])} ({_s(b['detection_s'])}) | "
            f"{_s(s['recovery_s'])} ({b['recovery_s']:g}) | {s['failed_expected']} | "
            f"{s['failed_unexpected']} ({b['unexpected_failures']}) | "
            f"{s['orders_lost']} / {s['acknowledged_orders']} | {verdict} |"
        )
    lines += ["", "## Faults", ""]
    lines += [
        f"- **{r['score']['scenario']}**: {r['score']['fault_detail']}"
        + (
            f" (its deploy report, with the timeline: `{r['deploy_report']}`)"
            if r.get("deploy_report")
            else ""
        )
        for r in results
    ]
    return "\n".join(lines) + "\n"
