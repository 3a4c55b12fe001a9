"""The canary's stages as people read them, in the deploy report and the release notes:
each stage's traffic share, canary against baseline, and the verdict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _cell(side: Mapping[str, Any]) -> str:
    rate = side.get("error_rate")
    errors = f"{side['errors']}/{side['requests']}" + (f" ({rate:.2%})" if rate is not None else "")
    p95 = side.get("p95_ms")
    return f"{errors}, p95 {p95:g} ms" if p95 is not None else errors


def markdown_lines(canary: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Canary",
        "",
        f"Verdict: **{canary['verdict']}**" + (f": {canary['reason']}" if canary["reason"] else ""),
    ]
    if canary.get("action"):
        lines.append(f"Action: {canary['action']}")
    lines += [
        "",
        "| share | canary (errors, p95) | baseline (errors, p95) | errors | latency | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for stage in canary["stages"]:
        checks = stage["checks"]

        def check(name: str, checks: Mapping[str, Any] = checks) -> str:
            found = checks.get(name)
            if found is None:
                return "not judged"
            text = str(found["detail"]).replace("|", "\\|")
            return text if found["ok"] else f"**{text}**"

        baseline = _cell(stage["baseline"])
        if stage.get("baseline_from", "this stage") != "this stage":
            baseline += f" (from {stage['baseline_from']})"
        traffic = "" if checks["traffic"]["ok"] else f" ({check('traffic')})"
        lines.append(
            f"| {stage['share_percent']} % | {_cell(stage['canary'])} | {baseline} | "
            f"{check('errors')} | {check('latency')} | {stage['verdict']}{traffic} |"
        )
    return lines


def add_to_release_notes(directory: Path, canary: Mapping[str, Any]) -> Path | None:
    """Append the stages to the run's release notes (step 4 wrote them before step 6 ran);
    None when this run wrote none (step 6 run alone)."""
    notes_json, notes_md = directory / "release-notes.json", directory / "release-notes.md"
    if not notes_json.exists() or not notes_md.exists():
        return None
    notes = json.loads(notes_json.read_text())
    notes["canary"] = dict(canary)
    notes_json.write_text(json.dumps(notes, indent=2, default=str) + "\n")
    text = notes_md.read_text().split("\n## Canary\n", 1)[0].rstrip("\n")
    notes_md.write_text(text + "\n\n" + "\n".join(markdown_lines(canary)) + "\n")
    return notes_md
