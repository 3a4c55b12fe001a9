"""Deploy step 2 with the infra scan: `scanners.scan` runs it in a process of its own, and
the review judges its findings by each stack's policy block beside pip-audit's and bandit's."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.deploy.security import review as security
from pipelines.deploy.security import scanners
from pipelines.deploy.security.iac import scan as infra_scan
from tests.pipelines.deploy.git_helpers import GitRepo
from tests.pipelines.deploy.test_infra_scan import (
    POLICY,
    PORT_80,
    REDIRECT,
    SNS,
    TODAY,
    manifest_of,
    report,
    waiver,
)

pytestmark = pytest.mark.integration  # real git repositories


def test_step_2_reviews_the_infra_scan_with_the_other_artifacts(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("feat: first", when=int(time.time()) - 3600)
    sha = repo.git("rev-parse", "HEAD")
    out = repo.path / scanners.ARTIFACTS_DIR
    manifest_of(out / "infra", staging=report(SNS), production=report(PORT_80, SNS))
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "bandit.json").write_text(json.dumps({"errors": [], "results": []}))
    (out / "pip-audit.json").write_text(json.dumps({"dependencies": []}))
    tools = {
        name: {"status": "ok", "error": None, "finished": finished}
        for name in ("pip-audit", "bandit", "checkov")
    }
    (out / scanners.MANIFEST).write_text(json.dumps({"sha": sha, "tools": tools}))
    policy = {
        **POLICY,
        "defaults": {"required_artifacts": ["pip-audit", "bandit", "checkov"]},
        "waivers": [waiver(f"CKV_AWS_260:{REDIRECT}", ["production"])],
    }
    (repo.path / "security").mkdir()
    (repo.path / "security" / "policy.yaml").write_text(json.dumps(policy))
    result = security.review(repo.path, sha, "production", today=TODAY)
    assert [(f.source, f.stack, f.id) for f in result.blocking] == [
        ("checkov", "production", "CKV_AWS_26:aws_sns_topic.alarms-topic")
    ]
    assert [f.stack for f in result.warnings] == ["staging"]
    assert [f.id for f, _ in result.waived] == [f"CKV_AWS_260:{REDIRECT}"]
    # the local target's review judges infra by the stacks' own blocks too
    assert not security.review(repo.path, sha, "local", today=TODAY).ok
    # no infra scan at all, when the policy requires one
    (out / "infra" / infra_scan.MANIFEST).unlink()
    del tools["checkov"]
    (out / scanners.MANIFEST).write_text(json.dumps({"sha": sha, "tools": tools}))
    missing = security.review(repo.path, sha, "production", today=TODAY)
    assert [(f.kind, f.id) for f in missing.blocking] == [("missing", "missing:checkov")]


def test_security_scan_runs_the_infra_scan_in_a_process_of_its_own(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("feat: first", {"Pulumi.yaml": "name: drydock\n"})
    calls: list[list[str]] = []

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if "pipelines.deploy.security.iac" in argv:
            out = Path(argv[argv.index("--out") + 1])
            manifest_of(out, production=report(SNS))
            return subprocess.CompletedProcess(argv, 1, "", "")  # 1: a finding blocks
        return subprocess.CompletedProcess(argv, 0, "", "")

    manifest = scanners.scan(repo.path, repo.git("rev-parse", "HEAD"), runner=runner)
    entry = manifest["tools"]["checkov"]
    assert entry["status"] == "ok" and entry["version"] == "3.3.30"
    assert entry["file"] == "infra/scan.json"
    assert any(
        a[-4:] == ["--root", str(repo.path), "--out", str(repo.path / "reports/security/infra")]
        for a in calls
    )
