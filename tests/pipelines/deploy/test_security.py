"""Deploy step 2: the scans' artifacts, the policy, and the review that applies it.

Every kind of finding blocks on its own (a vulnerability above the threshold, unaudited
dependencies under the production policy, a stale or missing scan, an expired waiver); a
valid waiver lets its finding through; production refuses to downgrade "unaudited".
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.deploy.security import review as security
from pipelines.deploy.security import scanners
from pipelines.deploy.security.parsers import bandit_findings, osv_findings
from pipelines.deploy.security.policy import PolicyError, apply_policy, load_policy, parse_policy
from pipelines.deploy.security.review import SecurityReviewStep
from pipelines.deploy.steps import StepContext, exit_code_for
from pipelines.targets.local.target import LocalTarget
from tests.pipelines.deploy.git_helpers import GitRepo

ROOT = Path(__file__).resolve().parents[3]
TODAY = dt.date(2026, 11, 28)
VULN = "GHSA-462w-v97r-4m45"
POLICY: dict[str, Any] = {
    "version": 1,
    "defaults": {"severity_threshold": "medium", "max_artifact_age_hours": 24},
    "environments": {"local": {"unaudited": "warn"}, "staging": {}, "production": {}},
    "waivers": [],
}
PIP_AUDIT_CLEAN = {"dependencies": [{"name": "idna", "version": "3.7", "vulns": []}], "fixes": []}
PIP_AUDIT_VULN = {
    "dependencies": [
        {
            "name": "jinja2",
            "version": "2.10",
            "vulns": [
                {
                    "id": VULN,
                    "fix_versions": ["2.10.1"],
                    "aliases": ["CVE-2019-10906"],
                    "description": "In Pallets Jinja before 2.10.1, str.format_map allows a "
                    "sandbox escape.",
                }
            ],
        }
    ],
    "fixes": [],
}
PIP_AUDIT_UNREACHABLE = {
    "dependencies": [
        {"name": "alembic", "skip_reason": "Dependency not found on PyPI and could not be audited"}
    ],
    "fixes": [],
}
BANDIT_CLEAN: dict[str, Any] = {"errors": [], "generated_at": "", "metrics": {}, "results": []}
# OSV-Scanner's `--format json` output: results -> packages -> vulnerabilities and groups.
OSV = {
    "results": [
        {
            "source": {"path": "/src/requirements.txt", "type": "lockfile"},
            "packages": [
                {
                    "package": {"name": "jinja2", "version": "2.10", "ecosystem": "PyPI"},
                    "vulnerabilities": [
                        {
                            "id": VULN,
                            "summary": "Jinja2 sandbox escape via string formatting",
                            "aliases": ["CVE-2019-10906"],
                            "affected": [
                                {
                                    "package": {"ecosystem": "PyPI", "name": "jinja2"},
                                    "ranges": [
                                        {
                                            "type": "ECOSYSTEM",
                                            "events": [{"introduced": "0"}, {"fixed": "2.10.1"}],
                                        }
                                    ],
                                }
                            ],
                            "database_specific": {"severity": "HIGH"},
                        }
                    ],
                    "groups": [
                        {"ids": [VULN], "aliases": [VULN, "CVE-2019-10906"], "max_severity": "8.6"}
                    ],
                }
            ],
        }
    ],
    "experimental_config": {"licenses": {"summary": False, "allowlist": None}},
}


def _bandit(severity: str, confidence: str = "HIGH") -> dict[str, Any]:
    issue = {
        "filename": "service/app.py",
        "line_number": 7,
        "issue_severity": severity,
        "issue_confidence": confidence,
        "issue_text": "Use of insecure MD2, MD4, MD5, or SHA1 hash function.",
        "test_id": "B324",
        "more_info": "https://bandit.readthedocs.io/en/latest/plugins/b324_hashlib.html",
    }
    return {**BANDIT_CLEAN, "results": [issue]}


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("feat: first", when=int(time.time()) - 3600)
    return repo


def write_policy(repo: GitRepo, **changes: Any) -> None:
    (repo.path / "security").mkdir(exist_ok=True)
    (repo.path / "security" / "policy.yaml").write_text(json.dumps({**POLICY, **changes}))


def write_artifacts(
    repo: GitRepo,
    pip_audit: dict[str, Any] | None = None,
    bandit: dict[str, Any] | None = None,
    osv: dict[str, Any] | None = None,
    age_s: float = 60,
    sha: str | None = None,
) -> None:
    out = repo.path / scanners.ARTIFACTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age_s))
    tools = {}
    for name, document in (("pip-audit", pip_audit), ("bandit", bandit), ("osv-scanner", osv)):
        if document is not None:
            (out / scanners.FILES[name]).write_text(json.dumps(document))
            tools[name] = {"status": "ok", "error": None, "finished": finished}
    manifest = {"sha": sha or repo.git("rev-parse", "HEAD"), "tools": tools}
    (out / scanners.MANIFEST).write_text(json.dumps(manifest))


def review(repo: GitRepo, env: str = "production", today: dt.date = TODAY) -> security.Review:
    return security.review(repo.path, repo.git("rev-parse", "HEAD"), env, today=today)


def kinds(result: security.Review) -> set[str]:
    return {f.kind for f in result.blocking}


# --------------------------------------------------------------------------- the policy


@pytest.mark.unit
def test_the_committed_policy_downgrades_unaudited_only_locally() -> None:
    policy = load_policy(ROOT / "security" / "policy.yaml")
    assert policy.for_env("local").unaudited == "warn"
    assert policy.for_env("staging").unaudited == "block"
    assert policy.for_env("production").unaudited == "block"
    for waiver in policy.waivers:
        assert waiver.owner and waiver.reason and waiver.expires


@pytest.mark.unit
def test_production_policy_that_downgrades_unaudited_is_rejected() -> None:
    with pytest.raises(PolicyError, match=r"production never downgrades unaudited"):
        parse_policy({**POLICY, "environments": {"production": {"unaudited": "warn"}}})
    with pytest.raises(PolicyError, match=r"environments\.production\.unaudited"):
        parse_policy({**POLICY, "defaults": {"unaudited": "warn"}})


@pytest.mark.unit
@pytest.mark.parametrize("missing", ["id", "owner", "reason", "expires"])
def test_a_waiver_missing_a_field_is_a_policy_error(missing: str) -> None:
    waiver = {"id": VULN, "owner": "ops", "reason": "no fix yet", "expires": "2027-01-31"}
    del waiver[missing]
    with pytest.raises(PolicyError, match=rf"waivers\[0\].*missing {missing}"):
        parse_policy({**POLICY, "waivers": [waiver]})


@pytest.mark.unit
def test_policy_typos_and_bad_values_are_named() -> None:
    with pytest.raises(PolicyError, match="severity_treshold"):
        parse_policy({**POLICY, "defaults": {"severity_treshold": "high"}})
    with pytest.raises(PolicyError, match="'urgent' is not allowed"):
        parse_policy({**POLICY, "defaults": {"severity_threshold": "urgent"}})
    bad_date = {"id": VULN, "owner": "ops", "reason": "r", "expires": "next week"}
    with pytest.raises(PolicyError, match="YYYY-MM-DD"):
        parse_policy({**POLICY, "waivers": [bad_date]})


# --------------------------------------------------------------------------- the review


@pytest.mark.integration
def test_clean_and_fresh_scans_pass(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN)
    result = review(repo)
    assert result.ok and not result.warnings


@pytest.mark.integration
def test_a_vulnerability_above_the_threshold_blocks(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_VULN, BANDIT_CLEAN)
    result = review(repo)
    [finding] = result.blocking
    assert (finding.source, finding.id, finding.severity) == ("pip-audit", VULN, "high")
    assert "upgrade jinja2 to 2.10.1" in finding.action


@pytest.mark.integration
def test_code_findings_block_by_severity_and_confidence(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_CLEAN, _bandit("HIGH"))
    assert {f.id for f in review(repo).blocking} == {"B324:service/app.py"}
    write_artifacts(repo, PIP_AUDIT_CLEAN, _bandit("LOW"))
    low = review(repo)
    assert low.ok and [f.id for f in low.below_threshold] == ["B324:service/app.py"]
    write_artifacts(repo, PIP_AUDIT_CLEAN, _bandit("HIGH", confidence="LOW"))
    assert review(repo).ok


@pytest.mark.integration
def test_osv_scanner_output_is_read_with_its_cvss_severity(repo: GitRepo) -> None:
    [finding] = osv_findings(OSV)
    assert (finding.id, finding.severity, finding.aliases) == (VULN, "high", ("CVE-2019-10906",))
    assert "jinja2 2.10" in finding.message and "2.10.1" in finding.action
    write_policy(repo, defaults={"severity_threshold": "critical"})
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN, OSV)
    assert review(repo).ok
    write_policy(repo)
    assert [f.source for f in review(repo).blocking] == ["osv-scanner"]


@pytest.mark.integration
def test_unaudited_dependencies_block_production_and_warn_locally(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_UNREACHABLE, BANDIT_CLEAN)
    assert kinds(review(repo, "production")) == {"unaudited"}
    assert kinds(review(repo, "staging")) == {"unaudited"}
    local = review(repo, "local")
    assert local.ok and [f.kind for f in local.warnings] == ["unaudited"]


@pytest.mark.integration
def test_a_scan_older_than_the_commit_or_the_age_limit_blocks(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN, age_s=2 * 3600)
    result = review(repo)
    assert kinds(result) == {"stale"} and "before the commit" in result.blocking[0].message
    repo.commit("chore: old commit", when=int(time.time()) - 3 * 86400)
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN, age_s=30 * 3600)
    result = review(repo)
    assert kinds(result) == {"stale"} and "the limit is 24 h" in result.blocking[0].message


@pytest.mark.integration
def test_a_scan_of_another_commit_or_a_missing_scan_blocks(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN, sha="0" * 40)
    assert kinds(review(repo)) == {"stale"}
    write_artifacts(repo, PIP_AUDIT_CLEAN)
    (repo.path / scanners.ARTIFACTS_DIR / "bandit.json").unlink()
    result = review(repo)
    assert [(f.kind, f.source) for f in result.blocking] == [("missing", "bandit")]


@pytest.mark.integration
def test_a_scan_serves_a_docs_only_commit_after_it_but_not_a_code_change(
    repo: GitRepo,
) -> None:
    write_policy(repo)
    repo.commit("feat: code", {"service/app.py": "x = 1\n"}, when=int(time.time()) - 600)
    scanned = repo.git("rev-parse", "HEAD")
    write_artifacts(repo, PIP_AUDIT_CLEAN, BANDIT_CLEAN, age_s=60)
    manifest_path = repo.path / scanners.ARTIFACTS_DIR / scanners.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["content_key"] = scanners.scan_key(repo.path, scanned)
    manifest_path.write_text(json.dumps(manifest))
    docs = repo.commit("docs: explain", {"CHANGES.md": "# app\n", "docs/HOW.md": "how\n"})
    assert review(repo).ok  # made before this commit, but of the same content
    ctx = StepContext(
        target=LocalTarget(state_dir=repo.path / ".state"),
        sha=docs,
        root=repo.path,
        reports=repo.path / "reports" / "deploy",
    )
    assert not SecurityReviewStep().plan(ctx).summary.startswith("scan ")  # no new scan
    repo.commit("fix: code", {"service/app.py": "x = 2\n"})
    result = review(repo)
    assert kinds(result) == {"stale"} and f"scanned commit {scanned[:12]}" in str(
        [f.message for f in result.blocking]
    )


@pytest.mark.integration
def test_a_valid_waiver_lets_its_finding_through(repo: GitRepo) -> None:
    waiver = {"id": "CVE-2019-10906", "owner": "ops", "reason": "sandbox unused", "expires": ""}
    write_policy(repo, waivers=[{**waiver, "expires": "2027-01-31"}])
    write_artifacts(repo, PIP_AUDIT_VULN, BANDIT_CLEAN)
    result = review(repo)
    assert result.ok
    [(finding, used)] = result.waived
    assert finding.id == VULN and used.owner == "ops"


@pytest.mark.integration
def test_an_expired_waiver_blocks(repo: GitRepo) -> None:
    waiver = {"id": VULN, "owner": "ops", "reason": "sandbox unused", "expires": "2026-11-27"}
    write_policy(repo, waivers=[waiver])
    write_artifacts(repo, PIP_AUDIT_VULN, BANDIT_CLEAN)
    result = review(repo)
    assert kinds(result) == {"expired-waiver", "vulnerability"}
    expired = next(f for f in result.blocking if f.kind == "expired-waiver")
    assert "expired on 2026-11-27" in expired.message and "renew" in expired.action


@pytest.mark.integration
def test_no_waiver_hides_a_problem_with_the_scan_itself(repo: GitRepo) -> None:
    waiver = {"owner": "ops", "reason": "r", "expires": "2027-01-31"}
    write_policy(repo, waivers=[{**waiver, "id": "unaudited:pip-audit"}])
    write_artifacts(repo, PIP_AUDIT_UNREACHABLE, BANDIT_CLEAN)
    assert kinds(review(repo)) == {"unaudited"}


# --------------------------------------------------------------------------- scan and step


@pytest.mark.integration
def test_scan_records_an_unreachable_database_as_unaudited(repo: GitRepo) -> None:
    repo.commit("feat: code", {"service/app.py": "import hashlib\nhashlib.md5(b'x')\n"})

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "pip_audit" in argv:  # as on a machine that cannot reach the vulnerability data
            return subprocess.CompletedProcess(argv, 1, "", "ConnectionError: pypi.org refused")
        return subprocess.run(argv, **kwargs)  # the real bandit

    osv_file = repo.path / "osv.json"
    osv_file.write_text(json.dumps(OSV))
    sha = repo.git("rev-parse", "HEAD")
    manifest = scanners.scan(repo.path, sha, osv_file=osv_file, runner=runner)
    assert manifest["sha"] == sha
    audit = manifest["tools"]["pip-audit"]
    assert audit["status"] == "unaudited" and "ConnectionError" in audit["error"]
    assert manifest["tools"]["bandit"]["status"] == "ok"
    assert manifest["tools"]["osv-scanner"]["status"] == "ok"
    write_policy(repo)
    result = review(repo)
    assert {(f.kind, f.source) for f in result.blocking} >= {
        ("unaudited", "pip-audit"),
        ("vulnerability", "osv-scanner"),
        ("code", "bandit"),
    }


@pytest.mark.integration
def test_step_2_fails_with_its_exit_code_and_lists_each_finding(repo: GitRepo) -> None:
    write_policy(repo)
    write_artifacts(repo, PIP_AUDIT_VULN, _bandit("HIGH"))
    ctx = StepContext(
        target=LocalTarget(state_dir=repo.path / ".state"),
        sha=repo.git("rev-parse", "HEAD"),
        root=repo.path,
        reports=repo.path / "reports" / "deploy",
    )
    step = SecurityReviewStep("production", scan_if_missing=False)
    assert step.exit_code == exit_code_for(2) == 12
    assert len(step.plan(ctx).blockers) == 2
    result = step.run(ctx)
    assert not result.ok and "2 blocking" in result.summary
    assert {f["source"] for f in result.evidence["blocking"]} == {"pip-audit", "bandit"}
    assert all(f["action"] for f in result.evidence["blocking"])
    written = json.loads((ctx.reports / "security-review.json").read_text())
    assert written["ok"] is False and ctx.facts["security"]["env"] == "production"


@pytest.mark.integration
def test_this_repository_passes_its_own_code_scan(tmp_path: Path) -> None:
    """What step 2 runs on every release: bandit over this checkout, under the committed
    policy of every environment. A finding here would stop the README's own deploy."""
    root = Path(scanners.__file__).resolve().parents[3]
    entry = scanners._bandit(root, tmp_path, subprocess.run)
    assert entry["status"] == "ok", entry["error"]
    document = json.loads((tmp_path / scanners.FILES["bandit"]).read_text())
    policy = load_policy(root / scanners.POLICY)
    for env in ("local", "staging", "production"):
        findings = bandit_findings(document, policy.for_env(env).bandit_min_confidence)
        blocking = apply_policy(findings, policy, env).blocking
        assert not blocking, [finding.line() for finding in blocking]
