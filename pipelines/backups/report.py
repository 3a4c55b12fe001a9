"""The restore drill's record: JSON, Markdown and HTML reports (the phases against the RTO,
and the trend over past drills), the drill history, the summary."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "drills"
HISTORY = "history.jsonl"


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Phase:
    name: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class DrillReport:
    id: str
    target: str
    source: str
    started_at: str
    scratch_database: str = ""
    snapshot: dict[str, Any] = field(default_factory=dict)
    snapshot_origin: str = ""  # "fresh dump", "given snapshot" or "newest verified snapshot"
    phases: list[Phase] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    smoke: list[SmokeCheck] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    rto_s: float | None = None
    rpo_s: float | None = None
    rpo_basis: str = ""
    failure: str = ""
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.failure
            and not self.mismatches
            and not self.restore_errors
            and bool(self.smoke)
            and all(c.ok for c in self.smoke)
        )

    def phase_seconds(self, name: str) -> float | None:
        return next((p.seconds for p in self.phases if p.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def problems(self) -> list[str]:
        found = [self.failure] if self.failure else []
        found += [f"pg_restore: {e}" for e in self.restore_errors[:10]]
        found += self.mismatches
        found += [f"smoke: {c.name}: {c.detail}" for c in self.smoke if not c.ok]
        return found


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def summary(report: DrillReport) -> str:
    """Five lines an on-call engineer reads in five seconds, then the problems if any."""
    verdict = "DRILL PASSED" if report.ok else "DRILL FAILED"
    smoke_ok = sum(c.ok for c in report.smoke)
    lines = [
        f"{verdict}  {report.source} -> {report.target} (scratch {report.scratch_database or '-'})",
        f"  RTO {_seconds(report.rto_s)} to the first ready replica on the copy;  "
        f"RPO {_seconds(report.rpo_s)} ({report.rpo_basis or 'not measured'})",
        f"  verified {report.tables} tables, {report.rows:,} rows: schema head, row counts, "
        "content hashes, sequences, extensions, grants",
        f"  dump {_seconds(report.phase_seconds('dump'))}  restore "
        f"{_seconds(report.phase_seconds('restore'))}  verify "
        f"{_seconds(report.phase_seconds('verify'))}  smoke {smoke_ok}/{len(report.smoke)}",
        f"  report {report.paths.get('markdown', '-')}  plots {report.paths.get('html', '-')}",
    ]
    lines += [f"  ! {problem}" for problem in report.problems()]
    return "\n".join(lines)


def markdown(report: DrillReport) -> str:
    snap = report.snapshot
    lines = [
        f"# Restore drill {report.id}: {'passed' if report.ok else 'FAILED'}",
        "",
        f"- source: {report.source}; restored into {report.target}, scratch database "
        f"`{report.scratch_database}` (dropped after the drill)",
        f"- snapshot: `{snap.get('id', '-')}` ({report.snapshot_origin}), taken "
        f"{snap.get('created_at', '-')}, {snap.get('size_bytes', 0) / 1e6:.1f} MB, sha256 "
        f"`{str(snap.get('sha256', ''))[:16]}...`, schema head `{snap.get('schema_head')}`",
        f"- started {report.started_at}, took {report.seconds:.1f} s",
        f"- **RTO** {_seconds(report.rto_s)}: drill start to the first ready replica on the copy",
        f"- **RPO** {_seconds(report.rpo_s)}: {report.rpo_basis or 'not measured'}",
        "",
        "## Phases",
        "",
        "| phase | seconds | ok | detail |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p.name} | {p.seconds:.2f} | {'yes' if p.ok else 'NO'} | {p.detail} |"
        for p in report.phases
    ]
    lines += ["", "## Verification", ""]
    if report.mismatches or report.restore_errors:
        lines += [f"- pg_restore: {e}" for e in report.restore_errors[:20]]
        lines += [f"- {m}" for m in report.mismatches]
    else:
        lines.append(
            f"{report.tables} tables and {report.rows:,} rows match the source at dump time: "
            "schema head, row counts, content hashes, sequences, extensions, grants."
        )
    lines += ["", "## Smoke (read-only)", "", "| check | ok | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.ok else 'NO'} | {c.detail} |" for c in report.smoke]
    if report.failure:
        lines += ["", "## Failure", "", report.failure]
    return "\n".join(lines) + "\n"


def write(report: DrillReport, directory: Path) -> None:
    """The JSON and Markdown reports, and one line in the drill history."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{report.id}.json", directory / f"{report.id}.md"
    html_path = directory / f"{report.id}.html"
    report.paths = {"json": str(json_path), "markdown": str(md_path), "html": str(html_path)}
    json_path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    md_path.write_text(markdown(report))
    line = {
        "id": report.id,
        "started_at": report.started_at,
        "ok": report.ok,
        "source": report.source,
        "target": report.target,
        "snapshot": report.snapshot.get("id"),
        "rto_s": report.rto_s,
        "rpo_s": report.rpo_s,
        "tables": report.tables,
        "rows": report.rows,
        "problems": report.problems()[:10],
        "report": str(json_path),
    }
    append_history(directory / HISTORY, line)
    from pipelines.reports import drill as drill_html

    drill_html.write(report.to_json(), drill_html.past_drills(history(directory)), html_path)


def append_history(path: Path, line: dict[str, Any]) -> None:
    """One JSON line at the end of a drill history, in one write and synced, so that
    drills ending together never interleave and a crash leaves whole lines only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def history(directory: Path = REPORTS, name: str = HISTORY) -> list[dict[str, Any]]:
    """The drill history `name` (the restore drill's by default) under `directory`."""
    try:
        text = (directory / name).read_text()
    except FileNotFoundError:
        return []
    entries = []
    for raw in text.splitlines():
        try:
            entries.append(json.loads(raw))
        except ValueError:
            continue  # a torn last line after a crash
    return entries
