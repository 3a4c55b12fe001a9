"""The five-second summary that ends a gate run, and what it reads: each gate's state, the
tests counted from the progress files, the coverage total, pytest's first internal error."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.deploy.gates import progress
from pipelines.deploy.gates.commands import COVERAGE_JSON, LOGS, Gate
from pipelines.deploy.gates.run import GateResult


def summary(results: Sequence[GateResult], gates: Sequence[Gate], root: Path, took: float) -> str:
    """The five-second summary: each gate, the tests counted, the coverage, the logs."""
    lines = [f"gates: {'all passed' if all(r.ok for r in results) else 'FAILED'} in {took:.0f} s"]
    for result in results:
        if result.exit_status is None:
            state = f"not run ({result.note})" if result.note else "not run"
        elif result.note:
            state = result.note
        else:
            state = "ok" if result.ok else f"FAILED, exit {result.exit_status}"
        lines.append(f"  {result.name:<14} {result.duration_s:7.1f} s  {state}")
    counts = tests_counted(root, gates)
    if counts:
        lines.append(
            f"  tests: {counts['passed']} passed, {len(counts['failed'])} failed, "
            f"{counts['skipped']} skipped"
        )
        lines.extend(f"    failed: {nodeid}" for nodeid in counts["failed"][:20])
    covered = coverage_total(root, results)
    if covered is not None:
        lines.append(f"  coverage: {covered:.2f} % (table: {root / LOGS / 'coverage.log'})")
    for result in results:
        error = first_internal_error(root / result.log) if result.log else []
        if error:
            lines.append(f"  {result.name}: pytest's first internal error ({result.log}):")
            lines.extend(f"    {line}" for line in error)
    lines.append(f"  logs: {root / LOGS}")
    return "\n".join(lines)


INTERNAL_ERROR = "INTERNALERROR>"
# Where a traceback ends: pytest's long form names the place ("path:12: AssertionError"),
# Python's own the exception ("RuntimeError: no active workers").
_TRACEBACK_END = re.compile(
    r"^(\S+:\d+: \w+|[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failed)(: .*)?)$"
)


def first_internal_error(log: Path, keep: int = 14) -> list[str]:
    """The end of the first of pytest's internal errors in `log`, where the exception is
    named. Under pytest-xdist a worker's internal error comes first and the controller's
    own after it (often only "a worker finished with a test still pending"): the end of
    the output names the consequence, this the cause."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    error: list[str] = []
    for line in text.splitlines():
        if INTERNAL_ERROR not in line:
            continue
        # The first line may follow progress dots on the same line.
        error.append(line.split(INTERNAL_ERROR, 1)[1].removeprefix(" ").rstrip())
        if _TRACEBACK_END.match(error[-1]):
            break
    return error[-keep:]


def coverage_total(root: Path, results: Sequence[GateResult]) -> float | None:
    """The total this run's coverage gate wrote; None when it did not run."""
    ran = any(r.name == "coverage" and r.exit_status is not None for r in results)
    try:
        report = json.loads((root / COVERAGE_JSON).read_text()) if ran else None
    except (OSError, ValueError):
        return None
    return float(report["totals"]["percent_covered"]) if report else None


def tests_counted(root: Path, gates: Sequence[Gate]) -> dict[str, Any] | None:
    """Passed, failed and skipped over the test passes, from their progress files."""
    totals: dict[str, Any] = {"passed": 0, "skipped": 0, "failed": []}
    found = False
    for gate in gates:
        seen = progress.read(root / gate.progress) if gate.progress is not None else None
        if seen is None:
            continue
        found = True
        totals["passed"] += int(seen.get("passed", 0))
        totals["skipped"] += int(seen.get("skipped", 0))
        totals["failed"] += list(seen.get("failed", []))
    return totals if found else None


def first_failure(results: Sequence[GateResult]) -> GateResult | None:
    """The gate that failed on its own, not one stopped because another failed."""
    failed = [r for r in results if r.exit_status is not None and not r.ok]
    return next((r for r in failed if not r.note), failed[0] if failed else None)
