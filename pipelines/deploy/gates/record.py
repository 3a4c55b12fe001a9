"""The gate record: `invoke check` runs the gates on a clean tree and writes
reports/gates/<sha>.json; deploy step 1 asks `verify_record` whether a commit has passed.

A record is filed under its commit and carries the content key of what the gates read
(inputs.py). A commit passes with the green record of its own sha, or with the green record
of any commit whose key is the same: one that differs only in documentation.

A record also says whether the end-to-end tests ran (`e2e`). A local deploy's step 1 runs
the gates without them and accepts either kind; a deploy to AWS asks for a record with them,
which is what CI writes (`invoke check`). They drive whole local environments, and are half
of the suite's time while adding nothing to its coverage (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.deploy.gates.commands import COVERAGE_JSON, Gate, quality_gates
from pipelines.deploy.gates.inputs import (
    Inputs,
    InputsError,
    changed_between,
    git,
    inputs_for,
    read_by_gates,
)
from pipelines.deploy.gates.run import run_gates, say
from pipelines.deploy.gates.summary import first_failure, summary, tests_counted
from pipelines.ledger import actor

RECORDS = Path("reports") / "gates"
TOOLS = ("ruff", "mypy", "pytest", "pytest-xdist", "pytest-cov", "coverage")


class DirtyTreeError(RuntimeError):
    """The working tree differs from the commit, so a record could not describe that commit."""

    def __init__(self, files: Sequence[str]) -> None:
        self.files = list(files)
        shown = ", ".join(self.files[:10]) + (" ..." if len(self.files) > 10 else "")
        super().__init__(
            f"the working tree has {len(self.files)} uncommitted change(s): {shown}. "
            "Commit or stash them, so the gate record describes exactly one commit."
        )


def dirty_files(root: Path) -> list[str]:
    """`git status --porcelain` entries, untracked files included (they can change a test).
    `reports/` is where the gates write, so it never counts."""
    entries = [line[3:] for line in git(root, "status", "--porcelain").splitlines() if line]
    return [e for e in entries if not e.startswith("reports/")]


def head_sha(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def coverage_percent(root: Path) -> float | None:
    try:
        data = json.loads((root / COVERAGE_JSON).read_text())
        return round(float(data["totals"]["percent_covered"]), 2)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_path(root: Path, sha: str) -> Path:
    return root / RECORDS / f"{sha}.json"


def settings(coverage: int) -> list[str]:
    """What the gates were asked beyond the files: part of the content key."""
    return [f"coverage-threshold={coverage}"]


def check(
    root: Path,
    coverage: int = 90,
    gates: Sequence[Gate] | None = None,
    keep_going: bool = False,
    stream: str | None = None,
    echo: Callable[[str], None] = say,
    e2e: bool = True,
) -> dict[str, Any]:
    """`invoke check`: refuse a dirty tree, run the gates, write and return the record.
    `gates`, when given, stand for the whole list and `e2e` only labels the record."""
    dirty = dirty_files(root)
    if dirty:
        raise DirtyTreeError(dirty)
    sha = head_sha(root)
    inputs = inputs_for(root, sha, settings(coverage))
    (root / COVERAGE_JSON).unlink(missing_ok=True)  # a stale report must not be recorded
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    gate_list = list(gates) if gates is not None else quality_gates(coverage, e2e=e2e)
    results = run_gates(gate_list, root, keep_going, echo=echo, stream=stream)
    echo(summary(results, gate_list, root, time.monotonic() - clock))
    changed = dirty_files(root)
    record: dict[str, Any] = {
        "sha": sha,
        "green": all(r.ok for r in results) and bool(results) and not changed,
        "tree_clean": not changed,
        "changed_during_gates": changed,
        "content_key": inputs.key,
        "inputs": _inputs_fields(inputs),
        "gates": [asdict(r) for r in results],
        "failed_gates": [r.name for r in results if r.exit_status is not None and not r.ok],
        "tests": tests_counted(root, gate_list),
        "e2e": e2e,
        "coverage_percent": coverage_percent(root),
        "coverage_threshold": coverage,
        "tools": tool_versions(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.monotonic() - clock, 1),
        "host": socket.gethostname(),
        "who": actor(),
    }
    path = record_path(root, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return record


def _inputs_fields(inputs: Inputs) -> dict[str, Any]:
    return {
        "files": inputs.files,
        "files_hash": inputs.files_hash,
        "dependencies_hash": inputs.dependencies_hash,
        "dependencies": list(inputs.dependencies),
    }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    record: Mapping[str, Any] | None = None
    reused_from: str | None = None  # the sha whose record a docs-only commit reuses
    warnings: tuple[str, ...] = ()


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _not_green(record: Mapping[str, Any], sha: str) -> str | None:
    """Why the record of `sha` does not pass, or None when it does."""
    if not record.get("tree_clean", False):
        return f"the gates for {sha[:12]} ran on a modified tree"
    failed = [g["name"] for g in record.get("gates", []) if not _gate_passed(g)]
    if failed or not record.get("gates") or record.get("green") is not True:
        return f"the gates for {sha[:12]} are not green: {', '.join(failed) or 'no gate passed'}"
    return None


def _gate_passed(entry: Mapping[str, Any]) -> bool:
    # Records before the concurrent runner have no "passed": a zero exit was a pass.
    return bool(entry.get("passed", entry.get("exit_status") == 0))


def _dependency_change(record: Mapping[str, Any], inputs: Inputs) -> str:
    recorded = set(record.get("inputs", {}).get("dependencies", []))
    now = set(inputs.dependencies)
    if not recorded:
        return "the record does not list its dependencies (written before content keys)"
    gone, new = sorted(recorded - now), sorted(now - recorded)
    shown = ", ".join([*(f"-{d}" for d in gone[:3]), *(f"+{d}" for d in new[:3])])
    if not gone and not new:
        return "the Python version or the coverage threshold differs"
    return f"{len(gone) + len(new)} installed distribution(s) differ: {shown}"


def _in_github_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def ran_e2e(record: Mapping[str, Any]) -> bool:
    # Records from before the field ran the whole suite.
    return record.get("e2e", True) is not False


def verify_record(
    root: Path,
    sha: str,
    coverage: int = 90,
    environ: Mapping[str, str] = os.environ,
    need_e2e: bool = False,
) -> Verdict:
    """Whether `sha` has passed the gates: its own green record with the content key of
    what is installed now, or the green record of a commit with the same key. With
    `need_e2e`, only a record of a run with the end-to-end tests counts."""
    verdict = _verify(root, sha, coverage, environ)
    if need_e2e and verdict.ok and verdict.record is not None and not ran_e2e(verdict.record):
        recorded = str(verdict.record.get("sha", sha))
        return Verdict(
            False,
            f"the gates for {recorded[:12]} ran without the end-to-end tests, and this deploy "
            "needs them: run `invoke check` (CI's run has them)",
            verdict.record,
            verdict.reused_from,
        )
    return verdict


def _verify(root: Path, sha: str, coverage: int, environ: Mapping[str, str]) -> Verdict:
    try:
        inputs = inputs_for(root, sha, settings(coverage))
    except InputsError as exc:
        return Verdict(False, f"cannot tell what the gates read for {sha[:12]}: {exc}")
    own_path = record_path(root, sha)
    own = _load(own_path)
    if own_path.exists() and own is None:
        return Verdict(False, f"{own_path} is not a JSON object; run `invoke check` again")
    if own is not None:
        if own.get("sha") != sha:
            recorded = str(own.get("sha"))[:12]
            return Verdict(False, f"{own_path} records commit {recorded}, not {sha}", own)
        refused = _not_green(own, sha)
        if refused:
            return Verdict(False, refused, own)
        if own.get("content_key") == inputs.key:
            return Verdict(True, f"green gate record for {sha[:12]}", own)
        change = _dependency_change(own, inputs)
        if _in_github_actions(environ):
            # The record comes from the ci job on another runner: the commit is the same.
            return Verdict(True, f"green gate record for {sha[:12]}", own, warnings=(change,))
        return Verdict(
            False,
            f"the gates passed for {sha[:12]} with other installed packages ({change}); "
            "run the gates again",
            own,
        )
    reused = _same_content(root, sha, inputs)
    if reused is not None:
        other = str(reused["sha"])
        changed = changed_between(root, other, sha)
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        return Verdict(
            True,
            f"green gate record for {other[:12]} reused: {sha[:12]} differs from it only in "
            f"files no gate reads ({shown or 'none'})",
            reused,
            reused_from=other,
        )
    return Verdict(False, _why_none(root, sha, inputs))


def _records(root: Path) -> list[Path]:
    return sorted((root / RECORDS).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def _same_content(root: Path, sha: str, inputs: Inputs) -> dict[str, Any] | None:
    for path in _records(root):
        record = _load(path)
        if record is None or record.get("content_key") != inputs.key:
            continue
        if _not_green(record, str(record.get("sha"))) is None:
            return record
    return None


def _why_none(root: Path, sha: str, inputs: Inputs) -> str:
    """No record fits: say which files or packages differ from the newest record."""
    paths = _records(root)
    if not paths:
        return f"no gate record for {sha[:12]}"
    newest = _load(paths[0]) or {}
    other = str(newest.get("sha", paths[0].stem))
    try:
        read = [path for path in changed_between(root, other, sha) if read_by_gates(path)]
    except InputsError:
        read = []
    if read:
        shown = ", ".join(read[:5]) + (" ..." if len(read) > 5 else "")
        why = f"{len(read)} file(s) the gates read changed since it: {shown}"
    else:
        why = _dependency_change(newest, inputs)
    return f"no gate record for {sha[:12]} (the newest is for {other[:12]}; {why})"


def check_command(root: Path, coverage: int, keep_going: bool = False, e2e: bool = True) -> int:
    """`invoke check`: the gates on a clean tree, recorded for deploy step 1."""
    from pipelines.deploy.steps import exit_code_for

    try:
        record = check(root, coverage, keep_going=keep_going, e2e=e2e)
    except DirtyTreeError as exc:
        print(f"check refused: {exc}", file=sys.stderr)
        return exit_code_for(1)
    verdict = "green" if record["green"] else "NOT green"
    tests = "" if e2e else " without the end-to-end tests (enough for a local deploy only)"
    print(
        f"check: {record['sha'][:12]} is {verdict}{tests}; "
        f"record: {record_path(root, record['sha'])}"
    )
    return 0 if record["green"] else exit_code_for(1)


def run_suite(root: Path, coverage: int, k: str = "", markers: str = "") -> int:
    """`invoke test`: every gate with pytest's own output streaming; the exit status of the
    first gate that failed (0 when none did)."""
    gate_list = quality_gates(coverage, k, markers)
    clock = time.monotonic()
    results = run_gates(gate_list, root, stream="pytest")
    say(summary(results, gate_list, root, time.monotonic() - clock))
    failed = first_failure(results)
    if failed is None:
        return 0
    return failed.exit_status if failed.exit_status and failed.exit_status > 0 else 1
