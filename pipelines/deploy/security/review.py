"""Deploy step 2, security review: the scans (`invoke security.scan`) and the review of their
artifacts against `security/policy.yaml` (`invoke security.review`).

Artifacts live in `reports/security/`: `pip-audit.json`, `bandit.json`, an optional
`osv-scanner.json`, `infra/` (the infra scan: checkov over each Pulumi stack's plan, see
`iac/scan.py`), and `scan.json`, the manifest saying when each was made, for which commit,
by which tool version, and whether the tool could do its job ("unaudited" when pip-audit
cannot reach a vulnerability database).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
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
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for

ARTIFACTS_DIR = Path("reports") / "security"
POLICY = Path("security") / "policy.yaml"
MANIFEST = "scan.json"
FILES = {
    "pip-audit": "pip-audit.json",
    "bandit": "bandit.json",
    "osv-scanner": "osv-scanner.json",
    "checkov": f"infra/{infra_scan.MANIFEST}",
}
BANDIT_PATHS = ("service", "pipelines", "infra")
SCAN_TIMEOUT_S = 600
# The first infra scan on a machine also installs checkov into its own venv.
INFRA_SCAN_TIMEOUT_S = 1800

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run_tool(
    argv: Sequence[str], root: Path, runner: Runner, timeout: float = SCAN_TIMEOUT_S
) -> tuple[int | None, str]:
    try:
        proc = runner(
            list(argv),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    except OSError as exc:
        return None, str(exc)
    return proc.returncode, (proc.stderr or "").strip()[-2000:]


def _pip_audit(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    path = out / FILES["pip-audit"]
    path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off"]
    argv += ["--skip-editable", "-o", str(path)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner)
    entry: dict[str, Any] = {"command": " ".join(argv), "exit_status": code}
    entry["started"] = _iso(started)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = None
    if document is None:
        entry.update(status="unaudited", error=stderr or "pip-audit wrote no JSON")
    else:
        deps = document.get("dependencies", [])
        skipped = [d for d in deps if d.get("skip_reason")]
        if deps and len(skipped) == len(deps):
            # Every lookup failed: the vulnerability database was unreachable.
            entry.update(status="unaudited", error=skipped[0]["skip_reason"])
        else:
            entry.update(status="ok" if not skipped else "partial", error=None)
        entry["skipped"] = len(skipped)
        entry["dependencies"] = len(deps)
    entry["finished"] = _iso(time.time())
    entry["version"] = _version("pip-audit")
    return entry


def _bandit(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    path = out / FILES["bandit"]
    path.unlink(missing_ok=True)
    paths = [p for p in BANDIT_PATHS if (root / p).exists()]
    argv = [sys.executable, "-m", "bandit", "-r", *paths, "-f", "json", "-q", "-o", str(path)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner)
    # bandit exits 1 when it found issues; the JSON is what counts.
    ok = path.exists() and code in (0, 1)
    return {
        "command": " ".join(argv),
        "exit_status": code,
        "status": "ok" if ok else "error",
        "error": None if ok else stderr or "bandit wrote no JSON",
        "started": _iso(started),
        "finished": _iso(time.time()),
        "version": _version("bandit"),
    }


def _checkov(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    """The infra scan in a process of its own (it runs the Pulumi program under mocks).
    Its exit status is 1 when a finding blocks; the manifest it writes is what counts."""
    manifest = out / FILES["checkov"]
    manifest.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pipelines.deploy.security.iac", "--root", str(root)]
    argv += ["--out", str(manifest.parent)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner, timeout=INFRA_SCAN_TIMEOUT_S)
    ok = manifest.exists() and code in (0, 1)
    try:
        version = json.loads(manifest.read_text()).get("checkov", "unknown") if ok else None
    except ValueError:
        ok, version = False, None
    return {
        "command": " ".join(argv),
        "exit_status": code,
        "status": "ok" if ok else "error",
        "error": None if ok else stderr or "the infra scan wrote no manifest",
        "started": _iso(started),
        "finished": _iso(time.time()),
        "version": version,
    }


def _osv(source: Path, out: Path) -> tuple[dict[str, Any], float]:
    """OSV-Scanner runs elsewhere (it is a Go binary); its JSON is taken as it is."""
    document = json.loads(source.read_text())
    if not isinstance(document, dict) or "results" not in document:
        raise ValueError(f"{source} is not OSV-Scanner JSON output (no `results`)")
    made = source.stat().st_mtime
    if source.resolve() != (out / FILES["osv-scanner"]).resolve():
        shutil.copyfile(source, out / FILES["osv-scanner"])
    return {"command": f"ingested {source}", "status": "ok", "error": None}, made


def scan(
    root: Path,
    sha: str,
    osv_file: Path | None = None,
    runner: Runner = subprocess.run,
    out: Path | None = None,
) -> dict[str, Any]:
    """Run pip-audit, bandit and the infra scan (where there is a Pulumi program), take an
    OSV-Scanner file if given, write the manifest."""
    out = out or root / ARTIFACTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    tools: dict[str, Any] = {
        "pip-audit": {**_pip_audit(root, out, runner), "file": FILES["pip-audit"]},
        "bandit": {**_bandit(root, out, runner), "file": FILES["bandit"]},
    }
    if (root / "Pulumi.yaml").exists():
        tools["checkov"] = {**_checkov(root, out, runner), "file": FILES["checkov"]}
    osv_source = osv_file or (out / FILES["osv-scanner"])
    if osv_source.exists():
        entry, made = _osv(osv_source, out)
        tools["osv-scanner"] = {**entry, "file": FILES["osv-scanner"], "finished": _iso(made)}
    # What else was in the tree besides the commit (the scan reads files, not git).
    changed = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False
    ).stdout.splitlines()
    manifest = {
        "sha": sha,
        "content_key": scan_key(root, sha),
        "scanned_at": _iso(time.time()),
        "changed_files": [line[3:] for line in changed if not line[3:].startswith("reports/")],
        "tools": tools,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def scan_key(root: Path, sha: str) -> str | None:
    """The content key of what the scanners read: the commit's files but docs, and the
    installed packages (pipelines/deploy/gates/inputs.py). A commit that changes only docs
    has the key of the commit before it, so that commit's scan describes it too."""
    from pipelines.deploy.gates.inputs import InputsError, inputs_for

    try:
        return inputs_for(root, sha, ["security-scan"]).key
    except InputsError:
        return None


def same_content(manifest: Mapping[str, Any], root: Path, sha: str) -> bool:
    """Whether the scan in `manifest` read exactly what `sha` would give the scanners."""
    key = manifest.get("content_key")
    return bool(key) and key == scan_key(root, sha)


def _artifact_time(name: str, path: Path, manifest: Mapping[str, Any]) -> float:
    entry = manifest.get("tools", {}).get(name, {})
    if entry.get("finished"):
        return _parse_iso(entry["finished"])
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
                _scan_problem("stale", name, f"made {_iso(made)}, before the commit", rescan)
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


def scan_command(root: Path, osv: str = "") -> int:
    """`invoke security.scan`: the scanners over this checkout, into reports/security/.
    The infra scan's findings are the review's to judge, so its exit status is not ours."""
    from pipelines.releases import resolve

    manifest = scan(root, resolve("HEAD", root), Path(osv) if osv else None)
    for name, entry in manifest["tools"].items():
        error = f": {entry['error']}" if entry.get("error") else ""
        print(f"security.scan {name}: {entry['status']}{error}")
    print(f"artifacts: {root / ARTIFACTS_DIR}")
    return 0
