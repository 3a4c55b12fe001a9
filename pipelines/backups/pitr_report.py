"""The point-in-time recovery drill's record: JSON, Markdown and HTML (the phases against the
RTO, the RPO, the trend over past PITR drills) next to the weekly drill's reports
(`reports/drills/`), and one line per drill in `pitr-history.jsonl` there."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.backups.report import append_history, history
from pipelines.ledger import Ledger

HISTORY = "pitr-history.jsonl"


def iso_ms(epoch: float | None) -> str:
    """A moment in UTC to the hundredth of a second, as the drill's reports show T."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@dataclass
class PitrDrillReport:
    id: str
    target: str
    environment: str
    started_at: str
    point: str = ""  # T, ISO 8601 UTC
    orders_written: int = 0
    orders_expected: int = 0  # acknowledged at or before T
    orders_in_copy: int = 0
    write_failures: list[str] = field(default_factory=list)
    archive_catch_up_s: float | None = None
    restore: dict[str, Any] = field(default_factory=dict)
    recovered_to: str | None = None
    rpo_s: float | None = None
    rto_s: float | None = None
    replay_mb_s: float | None = None
    mismatches: list[str] = field(default_factory=list)
    rto_basis: str = "restore start to a ready replica on the copy"
    rpo_basis: str = "T minus the newest transaction in the copy"
    cleanup: list[str] = field(default_factory=list)
    failure: str = ""
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.failure
            and not self.mismatches
            and self.orders_expected > 0
            and self.rto_s is not None
        )

    def problems(self) -> list[str]:
        found = [self.failure] if self.failure else []
        if not self.failure and self.orders_expected == 0:
            found.append("no order was acknowledged before T: nothing was proven")
        return found + self.mismatches

    def summary(self) -> str:
        verdict = "PITR DRILL PASSED" if self.ok else "PITR DRILL FAILED"
        lines = [
            f"{verdict} {self.environment} ({self.target}) to {self.point or '-'}: "
            f"{self.orders_expected} of {self.orders_written} orders before T, "
            f"RPO {_num(self.rpo_s)} s, RTO {_num(self.rto_s)} s, "
            f"replay {_num(self.replay_mb_s)} MB/s"
        ]
        lines += [f"  ! {problem}" for problem in self.problems()[:10]]
        if self.paths:
            lines.append(f"  report: {self.paths.get('markdown')}")
            lines.append(f"  plots:  {self.paths.get('html')}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(report: PitrDrillReport) -> str:
    restore = report.restore
    durations = restore.get("durations", {})
    rows = [
        ("target", f"{report.environment} ({report.target})"),
        ("T", report.point or "-"),
        ("verdict", "passed" if report.ok else "FAILED"),
        (
            "orders written / before T / in the copy",
            f"{report.orders_written} / {report.orders_expected} / {report.orders_in_copy}",
        ),
        ("newest transaction in the copy", report.recovered_to or "-"),
        (f"RPO ({report.rpo_basis})", f"{_num(report.rpo_s)} s"),
        (f"RTO ({report.rto_basis})", f"{_num(report.rto_s)} s"),
        ("archive caught up after writing", f"{_num(report.archive_catch_up_s)} s"),
    ]
    if durations:  # a restore from a base backup and WAL replayed here
        rows += [
            ("base backup", str(restore.get("backup_id", "-"))),
            (
                "copy / WAL staging / replay",
                " / ".join(
                    f"{durations.get(k, 0):.1f} s" for k in ("copy_s", "stage_s", "replay_s")
                ),
            ),
            ("replay rate", f"{_num(report.replay_mb_s)} MB/s"),
        ]
    if restore.get("instance"):  # a managed database's copy
        rows += [
            ("copy instance", str(restore["instance"])),
            ("restore request to available", f"{_num(restore.get('available_s'))} s"),
            (
                "restore request to the first answer inside the VPC",
                f"{_num(restore.get('first_answer_s'))} s",
            ),
        ]
    rows.append(("drill duration", f"{report.seconds:.1f} s"))
    out = [f"# Point-in-time recovery drill {report.id}", "", "| | |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in rows]
    problems = report.problems()
    out += ["", "## Problems", ""] + ([f"- {p}" for p in problems] or ["none"])
    if report.write_failures:
        out += ["", "## Failed writes", ""] + [f"- {f}" for f in report.write_failures]
    out += ["", "## Clean-up", ""] + ([f"- {c}" for c in report.cleanup] or ["-"])
    return "\n".join(out) + "\n"


def write(report: PitrDrillReport, directory: Path) -> None:
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
        "environment": report.environment,
        "target": report.target,
        "point": report.point,
        "rpo_s": report.rpo_s,
        "rto_s": report.rto_s,
        "problems": report.problems()[:10],
        "report": str(json_path),
    }
    append_history(directory / HISTORY, line)
    from pipelines.reports import drill as drill_html

    drill_html.write_pitr(
        report.to_json(), drill_html.past_pitr_drills(history(directory, HISTORY)), html_path
    )


def record(
    report: PitrDrillReport,
    directory: Path,
    ledger: Ledger,
    env: str,
    log: Callable[[str], None],
    **extra: Any,
) -> None:
    """The drill's end on either target: the report files, the ledger entry, the summary."""
    write(report, directory)
    ledger.append(
        "pitr-drill",
        env,
        id=report.id,
        ok=report.ok,
        **extra,
        point=report.point,
        rpo_s=report.rpo_s,
        rto_s=report.rto_s,
        orders=report.orders_expected,
        problems=report.problems()[:10],
        report=report.paths.get("json"),
    )
    log(report.summary())
