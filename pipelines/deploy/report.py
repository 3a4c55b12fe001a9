"""The deploy report: JSON for machines, Markdown for people and HTML with the timeline
(the bake's traffic per second, the service's own metrics, and the run's events), in a known
place (`reports/deploys/<deploy id>/`, with `reports/deploys/latest.json` pointing at the
newest)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.deploy.canary.report import markdown_lines
from pipelines.deploy.steps import StepContext, StepPlan, StepResult
from pipelines.reports import deploy as deploy_html
from pipelines.targets.base import Environment, TargetError

# ctx.facts key: the bake's synthetic traffic per second (timeline.Second rows as dicts).
TRAFFIC_FACT = "traffic_per_second"
# ctx.facts key: the service's own metrics over the run (base.ServerMetrics rows as dicts).
SERVER_FACT = "server_metrics"


def record_server_metrics(ctx: StepContext, env: Environment, since: float) -> None:
    """What the servers counted from `since` to now (requests/s, error rate, p95: the local
    agent's scrapes, CloudWatch's minutes on AWS), for the report's timeline. A target that
    cannot say leaves the report without it, and says why in a warning of the report."""
    try:
        points = env.operations.server_metrics(since, time.time())
    except TargetError as exc:
        ctx.facts[SERVER_FACT + "_missing"] = f"the service's metrics could not be read: {exc}"
        return
    ctx.facts[SERVER_FACT] = [asdict(point) for point in points]


def write_report(
    ctx: StepContext,
    plans: Mapping[int, StepPlan],
    results: Mapping[int, StepResult],
    ok: bool | None,
    started: float,
) -> Path:
    ctx.reports.mkdir(parents=True, exist_ok=True)
    release = ctx.release
    data: dict[str, Any] = {
        "deploy_id": ctx.deploy_id,
        "sha": ctx.sha,
        "release": asdict(release) if release else None,
        "dry_run": ctx.dry_run,
        "ok": ok,
        "started_at": started,
        "finished_at": time.time(),
        "plan": {n: asdict(p) for n, p in plans.items()},
        "steps": {n: asdict(r) for n, r in results.items()},
        "events": [asdict(e) for e in sorted(ctx.events, key=lambda e: e.at)],
        "traffic": list(ctx.facts.get(TRAFFIC_FACT, [])),
        "server": list(ctx.facts.get(SERVER_FACT, [])),
    }
    if ctx.facts.get(SERVER_FACT + "_missing"):
        data["server_missing"] = ctx.facts[SERVER_FACT + "_missing"]
    json_path = ctx.reports / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str))
    (ctx.reports.parent / "latest.json").write_text(
        json.dumps({"deploy_id": ctx.deploy_id, "report": str(json_path), "ok": ok}, indent=2)
    )
    md_path = ctx.reports / "report.md"
    md_path.write_text(markdown(data))
    deploy_html.write(data, html_path(md_path))
    return md_path


def html_path(report: Path) -> Path:
    return report.with_suffix(".html")


def markdown(data: Mapping[str, Any]) -> str:
    verdict = {True: "succeeded", False: "FAILED", None: "planned (dry run)"}[data["ok"]]
    release = data["release"] or {}
    took = data["finished_at"] - data["started_at"]
    lines = [
        f"# Deploy {data['deploy_id']} {verdict}",
        "",
        f"- release: `{release.get('id')}` (commit `{data['sha'][:12]}`)",
        f"- duration: {took:.0f} s",
        "",
        f"- timeline (traffic, the service's own metrics and events): "
        f"`{data['deploy_id']}/report.html`",
        "",
        "| step | result | time | summary |",
        "|---|---|---|---|",
    ]
    for number, plan in data["plan"].items():
        result = data["steps"].get(number)
        if result is None:
            lines.append(f"| {number} | not run | | {plan['summary']} |")
            continue
        status = "ok" if result["ok"] else "**FAILED**"
        summary = str(result["summary"]).replace("|", "\\|")
        lines.append(f"| {number} | {status} | {result['duration_s']:.1f} s | {summary} |")
    for result in data["steps"].values():
        canary = (result.get("evidence") or {}).get("canary")
        if canary:
            lines += ["", *markdown_lines(canary)]
    warnings = [w for r in data["steps"].values() for w in r.get("warnings", ())]
    if warnings:
        lines += ["", "## Warnings", *[f"- {w}" for w in warnings]]
    return "\n".join(lines) + "\n"
