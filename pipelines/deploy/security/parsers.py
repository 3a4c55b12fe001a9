"""Findings out of the scanners' own JSON: pip-audit, bandit, OSV-Scanner and checkov.

Each parser turns one tool's output into `Finding`s with a stable id (what a waiver names)
and an action. pip-audit reports no severity, so its findings take the policy's
`unknown_severity`; OSV-Scanner's severity is the group's `max_severity` (a CVSS base score),
else the advisory's `database_specific.severity`. checkov reports a severity only to Prisma
Cloud's customers, so its failed checks take `unknown_severity` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.deploy.security.policy import CONFIDENCES, SEVERITIES, Finding

_WAIVE = "or waive it in security/policy.yaml with an owner, a reason and an expiry"
_ADVISORY_SEVERITY = {"low": "low", "moderate": "medium", "medium": "medium", "high": "high"}
_ADVISORY_SEVERITY["critical"] = "critical"


def cvss_band(score: float) -> str:
    """NVD's qualitative bands for a CVSS v3 base score."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def pip_audit_findings(
    document: Mapping[str, Any], unknown_severity: str
) -> tuple[list[Finding], list[tuple[str, str]]]:
    """(vulnerabilities, skipped dependencies as (name, reason))."""
    findings: list[Finding] = []
    skipped: list[tuple[str, str]] = []
    for dep in document.get("dependencies", []):
        name = str(dep.get("name"))
        if dep.get("skip_reason"):
            skipped.append((name, str(dep["skip_reason"])))
            continue
        version = dep.get("version", "?")
        for vuln in dep.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            severity = str(vuln.get("severity") or unknown_severity).lower()
            if severity not in SEVERITIES:
                severity = unknown_severity
            action = (
                f"upgrade {name} to {fixes[0]} or later, {_WAIVE}"
                if fixes
                else f"no fixed release: replace or remove {name}, {_WAIVE}"
            )
            description = " ".join(str(vuln.get("description", "")).split())[:160]
            findings.append(
                Finding(
                    "vulnerability",
                    "pip-audit",
                    str(vuln.get("id")),
                    severity,
                    f"{name} {version}: {description}",
                    action,
                    tuple(str(a) for a in vuln.get("aliases", [])),
                )
            )
    return findings, skipped


def bandit_findings(document: Mapping[str, Any], min_confidence: str) -> list[Finding]:
    """Issues at or above the confidence floor. The id is `<test id>:<file>` so that a
    waiver survives line moves; `<test id>:<file>:<line>` is an alias for a narrower one."""
    floor = CONFIDENCES.index(min_confidence)
    findings: list[Finding] = []
    for issue in document.get("results", []):
        confidence = str(issue.get("issue_confidence", "")).lower()
        severity = str(issue.get("issue_severity", "")).lower()
        if confidence not in CONFIDENCES or CONFIDENCES.index(confidence) < floor:
            continue
        if severity not in SEVERITIES:
            severity = "low"
        test_id, filename = issue.get("test_id"), issue.get("filename")
        line = issue.get("line_number")
        findings.append(
            Finding(
                "code",
                "bandit",
                f"{test_id}:{filename}",
                severity,
                f"{filename}:{line}: {issue.get('issue_text')} ({confidence} confidence)",
                f"fix the code ({issue.get('more_info', test_id)}), {_WAIVE}",
                (f"{test_id}:{filename}:{line}",),
            )
        )
    for error in document.get("errors", []):
        findings.append(
            Finding(
                "scan-error",
                "bandit",
                f"scan-error:bandit:{error.get('filename')}",
                "n/a",
                f"bandit could not scan {error.get('filename')}: {error.get('reason')}",
                "fix the file so bandit can parse it, then rescan",
                waivable=False,
            )
        )
    return findings


def _osv_severity(group: Mapping[str, Any], vulns: list[Mapping[str, Any]]) -> str | None:
    try:
        return cvss_band(float(group.get("max_severity") or ""))
    except ValueError:
        pass
    ranks = [
        _ADVISORY_SEVERITY[str(v.get("database_specific", {}).get("severity", "")).lower()]
        for v in vulns
        if str(v.get("database_specific", {}).get("severity", "")).lower() in _ADVISORY_SEVERITY
    ]
    return max(ranks, key=SEVERITIES.index) if ranks else None


def _fixed_versions(vuln: Mapping[str, Any], package: str) -> list[str]:
    fixed = []
    for affected in vuln.get("affected", []):
        if affected.get("package", {}).get("name", package) != package:
            continue
        for span in affected.get("ranges", []):
            fixed += [e["fixed"] for e in span.get("events", []) if "fixed" in e]
    return fixed


def osv_findings(document: Mapping[str, Any], unknown_severity: str = "high") -> list[Finding]:
    """One finding per alias group of each package, as OSV-Scanner itself groups them."""
    findings: list[Finding] = []
    for result in document.get("results", []):
        source = result.get("source", {}).get("path", "?")
        for package in result.get("packages", []):
            info = package.get("package", {})
            name, version = info.get("name", "?"), info.get("version", "?")
            vulns = {v.get("id"): v for v in package.get("vulnerabilities", [])}
            groups = package.get("groups") or [{"ids": [i], "aliases": [i]} for i in vulns]
            for group in groups:
                ids = [str(i) for i in group.get("ids", [])]
                if not ids:
                    continue
                members = [vulns[i] for i in ids if i in vulns]
                severity = _osv_severity(group, members) or unknown_severity
                fixed = sorted({f for v in members for f in _fixed_versions(v, name)})
                summary = next((v.get("summary") for v in members if v.get("summary")), "")
                action = (
                    f"upgrade {name} to {fixed[0]} or later, {_WAIVE}"
                    if fixed
                    else f"no fixed version listed: replace or remove {name}, {_WAIVE}"
                )
                aliases = {str(a) for a in group.get("aliases", [])} | set(ids[1:])
                findings.append(
                    Finding(
                        "vulnerability",
                        "osv-scanner",
                        ids[0],
                        severity,
                        f"{info.get('ecosystem', '')} {name} {version} ({source}): {summary}",
                        action,
                        tuple(sorted(aliases - {ids[0]})),
                    )
                )
    return findings


def checkov_reports(document: Any) -> list[Mapping[str, Any]]:
    """checkov prints one report, a list of them (one per framework), or only a summary
    when no resource was checked."""
    reports = document if isinstance(document, list) else [document]
    return [r for r in reports if isinstance(r, Mapping)]


def checkov_counts(document: Any) -> dict[str, int]:
    totals = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}
    for report in checkov_reports(document):
        summary = report.get("summary", report)
        for key in totals:
            totals[key] += int(summary.get(key, 0) or 0)
    return totals


def checkov_findings(document: Any, stack: str, unknown_severity: str) -> list[Finding]:
    """One finding per failed check and resource of one stack's plan. The id is
    `<check id>:<resource address>`; a waiver names it with the stacks it covers."""
    findings: list[Finding] = []
    for report in checkov_reports(document):
        for check in report.get("results", {}).get("failed_checks", []):
            address = check.get("resource_address") or check.get("resource")
            check_id = check.get("check_id")
            severity = str(check.get("severity") or "").lower()
            findings.append(
                Finding(
                    "infra",
                    "checkov",
                    f"{check_id}:{address}",
                    severity if severity in SEVERITIES else unknown_severity,
                    f"{address}: {check.get('check_name')}",
                    f"change it in infra/, or waive {check_id} for this resource on {stack} "
                    "in security/policy.yaml",
                    stack=stack,
                )
            )
    if checkov_counts(document)["parsing_errors"]:
        findings.append(
            Finding(
                "scan-error",
                "checkov",
                f"scan-error:checkov:{stack}",
                "n/a",
                f"checkov could not parse the {stack} plan",
                "rerun `invoke infra.scan` and read the plan file it names",
                waivable=False,
                stack=stack,
            )
        )
    return findings
