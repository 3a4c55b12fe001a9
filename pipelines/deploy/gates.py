"""Deploy step 1, CI green: the quality gates and the record that says a commit passed them.

`invoke test` and `invoke check` run the same gates (`quality_gates`): ruff, ruff format,
mypy, and pytest with a coverage threshold. `check` also refuses a dirty working tree and
writes `reports/gates/<sha>.json`. Step 1 accepts only a green record for the exact sha being
released. In GitHub Actions the deploy workflow downloads the record its `ci` job wrote; if it
is missing there, the job's own result may stand in for it (`github_ci_result`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.ledger import actor

RECORDS = Path("reports") / "gates"
COVERAGE_JSON = Path("reports") / "coverage.json"
FORMATTED = ("service", "pipelines", "infra", "tasks.py", "tests")
TOOLS = ("ruff", "mypy", "pytest", "pytest-cov", "coverage")
# Set by the deploy workflow from `needs.ci.result`; see .github/workflows/deploy.yml.
CI_RESULT_ENV = "DRYDOCK_CI_RESULT"


class DirtyTreeError(RuntimeError):
    """The working tree differs from the commit, so a record could not describe that commit."""

    def __init__(self, files: Sequence[str]) -> None:
        self.files = list(files)
        shown = ", ".join(self.files[:10]) + (" ..." if len(self.files) > 10 else "")
        super().__init__(
            f"the working tree has {len(self.files)} uncommitted change(s): {shown}. "
            "Commit or stash them, so the gate record describes exactly one commit."
        )


@dataclass(frozen=True)
class Gate:
    name: str
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class GateResult:
    name: str
    command: str
    exit_status: int | None  # None: not run, an earlier gate failed
    duration_s: float
    started: str
    finished: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def quality_gates(
    coverage: int = 90, k: str = "", markers: str = "", python: str = sys.executable
) -> list[Gate]:
    """The commands behind `invoke test` and `invoke check`. The coverage threshold applies
    only to a whole-suite run: a selection (-k, -m) covers less by design."""
    select = [*(["-k", k] if k else []), *(["-m", markers] if markers else [])]
    threshold = [] if select else [f"--cov-fail-under={coverage}"]
    reports = ["--cov-report=xml:reports/coverage.xml", f"--cov-report=json:{COVERAGE_JSON}"]
    return [
        Gate("ruff-check", (python, "-m", "ruff", "check", ".")),
        Gate(
            "ruff-format",
            (python, "-m", "ruff", "format", "--check", *FORMATTED),
        ),
        Gate("mypy", (python, "-m", "mypy")),
        Gate(
            "pytest",
            (python, "-m", "pytest", "--cov", "--cov-report=term", *reports, *threshold, *select),
        ),
    ]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_gates(
    gates: Sequence[Gate],
    root: Path,
    keep_going: bool = False,
    echo: Callable[[str], None] = print,
) -> list[GateResult]:
    """Run each gate with its output streaming through; stop at the first failure unless
    `keep_going`, and mark the rest as not run."""
    results: list[GateResult] = []
    failed = False
    for gate in gates:
        if failed and not keep_going:
            results.append(GateResult(gate.name, gate.command, None, 0.0, "", ""))
            continue
        echo(f"$ {gate.command}")
        started, clock = _now(), time.monotonic()
        status = subprocess.run(gate.argv, cwd=root, check=False).returncode
        results.append(
            GateResult(
                gate.name, gate.command, status, round(time.monotonic() - clock, 3), started, _now()
            )
        )
        failed = failed or status != 0
    return results


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


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


def check(
    root: Path, coverage: int = 90, gates: Sequence[Gate] | None = None, keep_going: bool = False
) -> dict[str, Any]:
    """`invoke check`: refuse a dirty tree, run the gates, write and return the record."""
    dirty = dirty_files(root)
    if dirty:
        raise DirtyTreeError(dirty)
    sha = head_sha(root)
    (root / COVERAGE_JSON).unlink(missing_ok=True)  # a stale report must not be recorded
    started = _now()
    results = run_gates(gates if gates is not None else quality_gates(coverage), root, keep_going)
    changed = dirty_files(root)
    record: dict[str, Any] = {
        "sha": sha,
        "green": all(r.ok for r in results) and bool(results) and not changed,
        "tree_clean": not changed,
        "changed_during_gates": changed,
        "gates": [asdict(r) for r in results],
        "coverage_percent": coverage_percent(root),
        "coverage_threshold": coverage,
        "tools": tool_versions(),
        "started": started,
        "finished": _now(),
        "host": socket.gethostname(),
        "who": actor(),
    }
    path = record_path(root, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return record


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    record: Mapping[str, Any] | None = None


def verify_record(root: Path, sha: str) -> Verdict:
    """A record counts only if it is for exactly `sha`, from a clean tree, and all green."""
    path = record_path(root, sha)
    if not path.exists():
        others = sorted(
            (root / RECORDS).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        shown = ", ".join(p.stem[:12] for p in others[:3])
        hint = f" (records exist for {shown})" if others else ""
        return Verdict(False, f"no gate record for {sha[:12]}{hint}")
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        return Verdict(False, f"{path} is not valid JSON ({exc}); run `invoke check` again")
    if record.get("sha") != sha:
        return Verdict(False, f"{path} records commit {str(record.get('sha'))[:12]}, not {sha}")
    failed = [g["name"] for g in record.get("gates", []) if g.get("exit_status") != 0]
    if not record.get("tree_clean", False):
        return Verdict(False, f"the gates for {sha[:12]} ran on a modified tree", record)
    if failed or not record.get("gates") or record.get("green") is not True:
        failing = ", ".join(failed) or "no gate passed"
        return Verdict(False, f"the gates for {sha[:12]} are not green: {failing}", record)
    return Verdict(True, f"green gate record for {sha[:12]}", record)


def github_ci_result(sha: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """In GitHub Actions, the deploy workflow's `ci` job (`needs: ci`) gates the commit the
    workflow runs for; its result is passed in CI_RESULT_ENV. Only that exact sha counts."""
    if environ.get("GITHUB_ACTIONS") != "true" or environ.get("GITHUB_SHA") != sha:
        return None
    if environ.get(CI_RESULT_ENV) != "success":
        return None
    run = environ.get("GITHUB_RUN_ID", "?")
    return f"GitHub Actions run {run}: the ci job passed for {sha[:12]}"


class CiGreenStep:
    number = 1
    name = "gates.ci"
    title = "CI green"
    exit_code = exit_code_for(1)

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        run_if_missing: bool = False,
        gates: Sequence[Gate] | None = None,
        coverage: int = 90,
    ) -> None:
        self.environ = environ
        # DESIGN's "or run the gates": off by default, since it runs the whole suite.
        self.run_if_missing = run_if_missing
        self.gates = gates
        self.coverage = coverage

    def _runs_gates(self, ctx: StepContext) -> bool:
        return self.run_if_missing or bool(ctx.options.get("run_gates"))

    def _decide(self, ctx: StepContext) -> tuple[Verdict, str | None]:
        verdict = verify_record(ctx.root, ctx.sha)
        from_ci = None if verdict.ok else github_ci_result(ctx.sha, self.environ or os.environ)
        return verdict, from_ci

    def plan(self, ctx: StepContext) -> StepPlan:
        verdict, from_ci = self._decide(ctx)
        if verdict.ok:
            return StepPlan(verdict.reason, ("accept the record",))
        if from_ci:
            return StepPlan(f"{verdict.reason}; accepting {from_ci}", ("accept the CI result",))
        if self._runs_gates(ctx):
            return StepPlan(verdict.reason, ("run the gates (invoke check) on this checkout",))
        return StepPlan(
            verdict.reason,
            blockers=(f"{verdict.reason}: run `invoke check` on a clean checkout of {ctx.sha}",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        verdict, from_ci = self._decide(ctx)
        if not verdict.ok and not from_ci and self._runs_gates(ctx):
            refused = self._run_gates(ctx)
            if refused:
                return StepResult(False, refused).timed(started)
            verdict = verify_record(ctx.root, ctx.sha)
        evidence: dict[str, Any] = {"record": str(record_path(ctx.root, ctx.sha))}
        if verdict.record is not None:
            evidence.update(
                {k: verdict.record.get(k) for k in ("green", "coverage_percent", "finished")}
            )
            evidence["host"] = verdict.record.get("host")
        ctx.facts["gates"] = evidence
        if verdict.ok:
            record = verdict.record or {}
            summary = (
                f"{verdict.reason}: coverage {record.get('coverage_percent')} %, "
                f"finished {record.get('finished')} on {record.get('host')}"
            )
            return StepResult(True, summary, evidence).timed(started)
        if from_ci:
            evidence["accepted"] = from_ci
            return StepResult(True, f"accepted {from_ci}", evidence, (verdict.reason,)).timed(
                started
            )
        return StepResult(
            False,
            f"{verdict.reason}; run `invoke check` on a clean checkout of {ctx.sha} first",
            evidence,
        ).timed(started)

    def _run_gates(self, ctx: StepContext) -> str | None:
        """Run `check` for the release's sha; the reason it cannot, if it cannot."""
        head = head_sha(ctx.root)
        if head != ctx.sha:
            return f"the checkout is at {head[:12]}, not {ctx.sha[:12]}: check out {ctx.sha} first"
        try:
            check(ctx.root, self.coverage, self.gates)
        except DirtyTreeError as exc:
            return f"cannot run the gates: {exc}"
        return None


def run_suite(root: Path, coverage: int, k: str = "", markers: str = "") -> int:
    """`invoke test`: every gate, the exit status of the first that failed (0 when none)."""
    results = run_gates(quality_gates(coverage, k, markers), root)
    failed = next((r for r in results if r.exit_status not in (0, None)), None)
    return failed.exit_status if failed is not None and failed.exit_status else 0


def check_command(root: Path, coverage: int, keep_going: bool = False) -> int:
    """`invoke check`: the gates on a clean tree, recorded for deploy step 1."""
    import sys

    from pipelines.deploy.steps import exit_code_for

    try:
        record = check(root, coverage, keep_going=keep_going)
    except DirtyTreeError as exc:
        print(f"check refused: {exc}", file=sys.stderr)
        return exit_code_for(1)
    verdict = "green" if record["green"] else "NOT green"
    print(f"check: {record['sha'][:12]} is {verdict}; record: {record_path(root, record['sha'])}")
    return 0 if record["green"] else exit_code_for(1)
