"""The deploy report's HTML: a timeline over the whole deploy (the bake's synthetic traffic
per second, the service's own metrics from the target, every event the steps recorded, the
bake window shaded) and the steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.reports import page, timeline


def html(data: Mapping[str, Any]) -> str:
    verdict = {True: "succeeded", False: "FAILED", None: "planned (dry run)"}[data.get("ok")]
    release = data.get("release") or {}
    events = list(data.get("events") or [])
    seconds = list(data.get("traffic") or [])
    server = list(data.get("server") or [])
    took = float(data.get("finished_at", 0)) - float(data.get("started_at", 0))
    facts = [
        f"release {release.get('id')} (commit {str(data.get('sha', ''))[:12]})",
        f"duration {took:.0f} s; {len(events)} events; {len(seconds)} seconds of traffic",
        f'{len(server)} readings of the service\'s own metrics (dashed, "server: ...")'
        if server
        else "the service's own metrics: "
        + str(data.get("server_missing") or "none recorded (step 7 did not run)"),
    ]
    windows = timeline.windows_from_events(events, "bake_start", "bake_end", "bake window")
    chart = timeline.figure(
        f"Deploy {data.get('deploy_id')}: traffic and events", seconds, events, windows, server
    )
    steps: list[tuple[Any, ...]] = []
    for number, plan in (data.get("plan") or {}).items():
        result = (data.get("steps") or {}).get(number)
        if result is None:
            steps.append((number, "not run", "", plan.get("summary", "")))
        else:
            state = ("ok", "ok") if result["ok"] else ("bad", "FAILED")
            steps.append((number, state, f"{result['duration_s']:.1f} s", result["summary"]))
    event_rows = [
        (timeline.stamp(float(e["at"])), e["kind"], e.get("env") or "", e["label"]) for e in events
    ]
    return page.render(
        f"Deploy {data.get('deploy_id')} {verdict}",
        facts,
        [
            ("Timeline", chart),
            ("Steps", page.table(("step", "result", "time", "summary"), steps)),
            ("Events (UTC)", page.table(("at", "kind", "env", "label"), event_rows)),
        ],
    )


def write(data: Mapping[str, Any], path: Path) -> Path:
    return page.write(path, html(data))
