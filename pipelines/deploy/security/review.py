"""Deploy step 2, security review: the scanners' artifacts (`scanners.py`, `invoke
security.scan`) judged against `security/policy.yaml` (`invoke security.review`).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.deploy.security.iac import scan as infra_scan
from pipelines.deploy.security.parsers import bandit_findings, osv_findings, pip_audit_findings
from pipelines.deploy.security.policy import (
    EnvPolicy,
    Finding,
    Policy,
    PolicyError,
    Review,
    apply_policy,
    load_policy,
)
from pipelines.deploy.security.scanners import (
    ARTIFACTS_DIR,
    FILES,
    MANIFEST,
    POLICY,
    iso,
    parse_iso,
    same_content,
    scan,
)
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for


def _artifact_time(name: str, path: Path, manifest: Mapping[str, Any]) -> float:
    entry = manifest.get("tools", {}).get(name, {})
    if entry.get("finished"):
        return parse_iso(entry["finished"])
    return path.stat().st_mtime


def collect_findings(
    artifacts: Path,
    sha: str,
    commit_time: float,
    required: Sequence[str],
    max_age_hours: float,
    unknown_severity: str,
    bandit_min_confidence: str,
    now: float | None = None,
    root: Path | None = None,
    policy: Policy | None = None,
) -> list[Finding]:
    """Every finding in the artifacts, plus findings about the artifacts themselves. With
    `root`, a scan of another commit with the same content key counts as this commit's: it
    is then judged by its age alone. `policy` gives each stack's severity for checkov's
    failed checks (without it, `unknown_severity`)."""
    now = time.time() if now is None else now
    try:
        manifest = json.loads((artifacts / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    findings: list[Finding] = []
    rescan = "run `invoke security.scan` on this commit"
    tools = manifest.get("tools", {})
    reused = root is not None and manifest.get("sha") != sha and same_content(manifest, root, sha)
    for name, filename in FILES.items():
        path = artifacts / filename
        entry = tools.get(name, {})
        if not path.exists() and not entry:
            if name in required:
                findings.append(_scan_problem("missing", name, f"no {filename}", rescan))
            continue
        made = _artifact_time(name, path, manifest)
        if entry and manifest.get("sha") != sha and not reused:
            scanned = str(manifest.get("sha"))[:12]
            findings.append(_scan_problem("stale", name, f"scanned commit {scanned}", rescan))
        elif made < commit_time and not reused:
            findings.append(
                _scan_problem("stale", name, f"made {iso(made)}, before the commit", rescan)
            )
        elif now - made > max_age_hours * 3600:
            age = f"{(now - made) / 3600:.1f} h old, the limit is {max_age_hours:g} h"
            findings.append(_scan_problem("stale", name, age, rescan))
        if not path.exists():  # the tool ran and wrote nothing
            error = str(entry.get("error"))
            findings.append(
                _unaudited(error)
                if name == "pip-audit"
                else _scan_problem("scan-error", name, error, rescan)
            )
            continue
        try:
            document = json.loads(path.read_text())
        except ValueError as exc:
            findings.append(_scan_problem("scan-error", name, f"unreadable: {exc}", rescan))
            continue
        if entry.get("status") == "error":
            findings.append(_scan_problem("scan-error", name, str(entry.get("error")), rescan))
        if name == "pip-audit":
            vulns, skipped = pip_audit_findings(document, unknown_severity)
            findings += vulns
            if skipped:
                reason = entry.get("error") or skipped[0][1]
                names = ", ".join(n for n, _ in skipped[:5])
                more = "..." if len(skipped) > 5 else ""
                count = f"{len(skipped)} of {len(document.get('dependencies', []))}"
                findings.append(_unaudited(f"{count} ({names}{more}); {reason}"))
        elif name == "bandit":
            findings += bandit_findings(document, bandit_min_confidence)
        elif name == "checkov":
            findings += _infra_findings(document, path.parent, policy, unknown_severity, rescan)
        else:
            findings += osv_findings(document, unknown_severity)
    return findings


def _infra_findings(
    manifest: Mapping[str, Any],
    out: Path,
    policy: Policy | None,
    unknown_severity: str,
    rescan: str,
) -> list[Finding]:
    stacks = [str(entry.get("stack")) for entry in manifest.get("stacks", [])]
    if policy is None:
        defaults = {s: EnvPolicy(s, unknown_severity=unknown_severity) for s in stacks}
        policy = Policy(defaults, ())
    try:
        return infra_scan.findings(manifest, out, policy)
    except (OSError, ValueError, KeyError, PolicyError) as exc:
        return [_scan_problem("scan-error", "checkov", f"unreadable report: {exc}", rescan)]


def _scan_problem(kind: str, tool: str, message: str, action: str) -> Finding:
    return Finding(kind, tool, f"{kind}:{tool}", "n/a", message, action, waivable=False)


def _unaudited(error: str) -> Finding:
    return Finding(
        "unaudited",
        "pip-audit",
        "unaudited:pip-audit",
        "n/a",
        f"dependencies could not be checked for vulnerabilities: {error}",
        "rerun `invoke security.scan` where PyPI's vulnerability data is reachable",
        waivable=False,
    )


def commit_time(root: Path, sha: str) -> float:
    result = subprocess.run(
        ["git", "show", "-s", "--format=%ct", sha],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PolicyError(f"cannot read the commit time of {sha}: {result.stderr.strip()}")
    return float(result.stdout.strip())


def review(
    root: Path,
    sha: str,
    env: str,
    policy_path: Path | None = None,
    artifacts: Path | None = None,
    now: float | None = None,
    today: dt.date | None = None,
) -> Review:
    policy = load_policy(policy_path or root / POLICY)
    env_policy = policy.for_env(env)
    findings = collect_findings(
        artifacts or root / ARTIFACTS_DIR,
        sha,
        commit_time(root, sha),
        env_policy.required_artifacts,
        env_policy.max_artifact_age_hours,
        env_policy.unknown_severity,
        env_policy.bandit_min_confidence,
        now,
        root,
        policy,
    )
    return apply_policy(findings, policy, env, today)


def render(result: Review) -> str:
    lines = [f"security review ({result.env} policy): {'PASS' if result.ok else 'BLOCKED'}"]
    for finding in result.blocking:
        lines.append(f"  BLOCK {finding.line()}")
    for finding in result.warnings:
        lines.append(f"  WARN  {finding.line()}")
    for finding, waiver in result.waived:
        lines.append(
            f"  waived {finding.id} ({finding.source}) by {waiver.owner} until "
            f"{waiver.expires.isoformat()}: {waiver.reason}"
        )
    if result.below_threshold:
        lines.append(f"  {len(result.below_threshold)} finding(s) below the threshold")
    for waiver in result.unused_waivers:
        lines.append(f"  note: waiver {waiver.id} matches nothing; remove it")
    return "\n".join(lines)


def default_policy_env(target_name: str) -> str:
    """The local target rehearses with the local policy; AWS deploys to production."""
    return "local" if target_name == "local" else "production"


class SecurityReviewStep:
    number = 2
    name = "security.review"
    title = "security review"
    exit_code = exit_code_for(2)
    reads_commit_only = True

    def __init__(self, policy_env: str | None = None, scan_if_missing: bool = True) -> None:
        self.policy_env = policy_env
        # A deploy scans a commit that has no scan yet; `security.review` alone never does.
        self.scan_if_missing = scan_if_missing

    def _env(self, ctx: StepContext) -> str:
        return self.policy_env or default_policy_env(ctx.target.name)

    def _scanned_this_commit(self, ctx: StepContext) -> bool:
        """A scan of this commit, or of one the scanners cannot tell from it (docs only)."""
        try:
            manifest = json.loads((ctx.root / ARTIFACTS_DIR / MANIFEST).read_text())
        except (OSError, ValueError):
            return False
        return manifest.get("sha") == ctx.sha or same_content(manifest, ctx.root, ctx.sha)

    def plan(self, ctx: StepContext) -> StepPlan:
        env = self._env(ctx)
        actions = [f"apply {POLICY} ({env} policy)"]
        if not self._scanned_this_commit(ctx):
            if not self.scan_if_missing:
                return StepPlan(
                    f"no scan of {ctx.sha[:12]}",
                    blockers=(f"no scan of {ctx.sha[:12]}: run `invoke security.scan`",),
                )
            return StepPlan(
                f"scan {ctx.sha[:12]}, then review ({env} policy)",
                ("run pip-audit, bandit and the infra scan (checkov)", *actions),
            )
        try:
            result = review(ctx.root, ctx.sha, env)
        except PolicyError as exc:
            return StepPlan("policy error", blockers=(str(exc),))
        summary = f"{len(result.blocking)} blocking, {len(result.waived)} waived ({env} policy)"
        return StepPlan(summary, tuple(actions), tuple(f.line() for f in result.blocking))

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        env = self._env(ctx)
        if self.scan_if_missing and not self._scanned_this_commit(ctx):
            print(f"security: scanning {ctx.sha[:12]} (pip-audit, bandit, checkov)...", flush=True)
            scan(ctx.root, ctx.sha)
        try:
            result = review(ctx.root, ctx.sha, env)
        except PolicyError as exc:
            return StepResult(False, f"security policy error: {exc}").timed(started)
        evidence: dict[str, Any] = result.as_dict()
        ctx.facts["security"] = evidence
        ctx.reports.mkdir(parents=True, exist_ok=True)
        (ctx.reports / "security-review.json").write_text(json.dumps(evidence, indent=2) + "\n")
        details = [line for line in render(result).splitlines()[1:] if "  WARN " not in line]
        evidence = {**evidence, "details": details}
        warnings = tuple(f.line() for f in result.warnings) + tuple(
            f"waiver {w.id} matches nothing; remove it" for w in result.unused_waivers
        )
        if result.ok:
            summary = (
                f"no blocking findings ({env} policy; {len(result.waived)} waived, "
                f"{len(result.warnings)} warning(s))"
            )
            return StepResult(True, summary, evidence, warnings).timed(started)
        first = result.blocking[0].line()
        summary = f"{len(result.blocking)} blocking finding(s) ({env} policy), first: {first}"
        return StepResult(False, summary, evidence, warnings).timed(started)
