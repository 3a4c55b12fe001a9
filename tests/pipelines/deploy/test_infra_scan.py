"""The infra scan's review: checkov's failed checks as findings of their stack, judged by
that stack's policy block and waivers, in `invoke infra.scan` and in deploy step 2."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.deploy.security.iac import checkov_tool
from pipelines.deploy.security.iac import scan as infra_scan
from pipelines.deploy.security.parsers import checkov_counts, checkov_findings
from pipelines.deploy.security.policy import PolicyError, apply_policy, parse_policy

pytestmark = pytest.mark.unit

TODAY = dt.date(2026, 12, 3)
REDIRECT = "aws_vpc_security_group_ingress_rule.network-alb-http-redirect-from-internet"
POLICY: dict[str, Any] = {
    "version": 1,
    "defaults": {"infra_failures": "block"},
    "environments": {"local": {}, "staging": {"infra_failures": "warn"}, "production": {}},
    "waivers": [],
}


def _failed(check_id: str, address: str, name: str) -> dict[str, Any]:
    """A failed check as checkov 3 prints it (the fields the scan reads, and some it does not)."""
    return {
        "check_id": check_id,
        "bc_check_id": None,
        "check_name": name,
        "check_result": {"result": "FAILED", "evaluated_keys": ["from_port"]},
        "resource": address,
        "resource_address": address,
        "severity": None,
        "guideline": None,
        "check_class": "checkov.terraform.checks.resource.aws.SecurityGroupUnrestrictedIngress80",
    }


def report(*failed: dict[str, Any], passed: int = 200) -> dict[str, Any]:
    return {
        "check_type": "terraform_plan",
        "results": {"passed_checks": [], "failed_checks": list(failed), "skipped_checks": []},
        "summary": {
            "passed": passed,
            "failed": len(failed),
            "skipped": 0,
            "parsing_errors": 0,
            "resource_count": 100,
            "checkov_version": "3.3.30",
        },
    }


PORT_80 = _failed("CKV_AWS_260", REDIRECT, "Ensure no security groups allow ingress to port 80")
SNS = _failed("CKV_AWS_26", "aws_sns_topic.alarms-topic", "Ensure the SNS topic is encrypted")


def waiver(check: str, environments: list[str], expires: str = "2027-06-30") -> dict[str, Any]:
    return {
        "id": check,
        "owner": "platform-team",
        "reason": "the listener on port 80 only redirects to HTTPS",
        "expires": expires,
        "environments": environments,
    }


def test_failed_checks_are_findings_of_their_stack() -> None:
    document = report(PORT_80, SNS)
    found = checkov_findings(document, "production", "high")
    assert [f.id for f in found] == [
        f"CKV_AWS_260:{REDIRECT}",
        "CKV_AWS_26:aws_sns_topic.alarms-topic",
    ]
    assert {(f.kind, f.source, f.stack, f.severity) for f in found} == {
        ("infra", "checkov", "production", "high")
    }
    assert "waive CKV_AWS_26 for this resource on production" in found[1].action
    assert checkov_counts(document)["passed"] == 200
    # with nothing to check, checkov prints only the summary
    assert checkov_counts({"passed": 0, "failed": 0, "resource_count": 0})["failed"] == 0


def test_production_blocks_and_staging_reports() -> None:
    policy = parse_policy(POLICY)
    findings = checkov_findings(report(SNS), "production", "high")
    findings += checkov_findings(report(SNS), "staging", "high")
    result = apply_policy(findings, policy, "production", TODAY)
    assert [(f.stack, f.kind) for f in result.blocking] == [("production", "infra")]
    assert [f.stack for f in result.warnings] == ["staging"]


def test_a_waiver_covers_its_check_resource_and_stacks_only() -> None:
    policy = parse_policy(
        {**POLICY, "waivers": [waiver(f"CKV_AWS_260:{REDIRECT}", ["production"])]}
    )
    on_production = checkov_findings(report(PORT_80, SNS), "production", "high")
    result = apply_policy(on_production, policy, "production", TODAY)
    assert [f.id for f, _ in result.waived] == [f"CKV_AWS_260:{REDIRECT}"]
    assert [f.id for f in result.blocking] == ["CKV_AWS_26:aws_sns_topic.alarms-topic"]
    on_staging = checkov_findings(report(PORT_80), "staging", "high")
    result = apply_policy(on_staging, policy, "staging", TODAY)
    assert not result.waived and [f.stack for f in result.warnings] == ["staging"]
    # the same check on another resource is not waived
    other = _failed("CKV_AWS_260", "aws_vpc_security_group_ingress_rule.other", "port 80")
    result = apply_policy(
        checkov_findings(report(other), "production", "high"), policy, "production", TODAY
    )
    assert len(result.blocking) == 1 and not result.waived


def test_an_expired_infra_waiver_fails_the_scan() -> None:
    expired = waiver(f"CKV_AWS_260:{REDIRECT}", ["staging", "production"], "2026-12-01")
    policy = parse_policy({**POLICY, "waivers": [expired]})
    findings = checkov_findings(report(PORT_80), "staging", "high")
    result = apply_policy(findings, infra_scan.infra_policy(policy, "staging"), "staging", TODAY)
    assert not result.ok
    assert [(f.kind, f.id) for f in result.blocking] == [
        ("expired-waiver", f"CKV_AWS_260:{REDIRECT} (staging, production)")
    ]


def test_the_scan_judges_only_infra_waivers_of_the_stack() -> None:
    pip_waiver = {**waiver("GHSA-xxxx-yyyy-zzzz", []), "expires": "2026-01-01"}
    scoped = waiver(f"CKV_AWS_260:{REDIRECT}", ["production"])
    policy = parse_policy({**POLICY, "waivers": [pip_waiver, scoped]})
    assert infra_scan.infra_policy(policy, "staging").waivers == ()
    assert [w.id for w in infra_scan.infra_policy(policy, "production").waivers] == [scoped["id"]]


def test_policy_errors_about_infra_are_named() -> None:
    with pytest.raises(PolicyError, match=r"production\.infra_failures is 'warn'"):
        parse_policy({**POLICY, "environments": {"production": {"infra_failures": "warn"}}})
    with pytest.raises(PolicyError, match="names environment 'prod'"):
        parse_policy({**POLICY, "waivers": [waiver("CKV_AWS_2:aws_lb.x", ["prod"])]})
    twice = [waiver("CKV_AWS_2:aws_lb.x", ["production"])] * 2
    with pytest.raises(PolicyError, match="listed twice"):
        parse_policy({**POLICY, "waivers": twice})
    with pytest.raises(PolicyError, match="environments must be a list"):
        parse_policy({**POLICY, "waivers": [{**twice[0], "environments": "production"}]})
    # one waiver per stack of the same check and resource is fine
    parse_policy({**POLICY, "waivers": [twice[0], waiver("CKV_AWS_2:aws_lb.x", ["staging"])]})


def test_the_committed_waivers_carry_reasons_and_cover_real_stacks() -> None:
    root = Path(infra_scan.__file__).resolve().parents[4]
    document = yaml.safe_load((root / "security" / "policy.yaml").read_text())
    policy = parse_policy(document)
    infra = [w for w in policy.waivers if infra_scan.CHECK_ID.match(w.id)]
    assert any(w.id == f"CKV_AWS_260:{REDIRECT}" for w in infra)
    for w in infra:
        assert len(w.reason.split()) >= 15, w.id
        assert set(w.environments) <= {"staging", "production"} and w.environments, w.id
    assert policy.for_env("production").infra_failures == "block"
    assert "checkov" in policy.for_env("production").required_artifacts


def test_stack_config_fills_what_a_team_sets_before_the_first_up(tmp_path: Path) -> None:
    stack_file = {
        "config": {
            "aws:region": "eu-north-1",
            "drydock:certificateArn": "",
            "drydock:domainName": "api.example.org",
            "drydock:alarmEmails": [],
        }
    }
    (tmp_path / "Pulumi.production.yaml").write_text(yaml.safe_dump(stack_file))
    config = infra_scan.stack_config(tmp_path, "production")
    assert config["drydock:certificateArn"].startswith("arn:aws:acm:eu-north-1:")
    assert config["drydock:domainName"] == "api.example.org"  # set in the file: kept
    assert config["drydock:alarmEmails"] == ["oncall@drydock.example.com"]
    assert config["drydock:image"].startswith("123456789012.dkr.ecr.eu-north-1.amazonaws.com/")
    from infra.spec import SETTINGS

    assert set(config) - set(stack_file["config"]) <= set(SETTINGS)  # only keys the spec knows
    with pytest.raises(infra_scan.ScanError, match=r"Pulumi\.staging\.yaml"):
        infra_scan.stack_config(tmp_path, "staging")


def manifest_of(out: Path, **reports: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    stacks = []
    for stack, document in reports.items():
        (out / f"{stack}.checkov.json").write_text(json.dumps(document))
        stacks.append(
            {
                "stack": stack,
                "report": f"{stack}.checkov.json",
                "resources_planned": 100,
                **checkov_counts(document),
                "unchecked_types": [],
            }
        )
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = {"checkov": "3.3.30", "finished": finished, "stacks": stacks}
    (out / infra_scan.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_summary_counts_each_stack_and_lists_what_blocks(tmp_path: Path) -> None:
    policy = parse_policy(
        {**POLICY, "waivers": [waiver(f"CKV_AWS_260:{REDIRECT}", ["production"])]}
    )
    manifest = manifest_of(tmp_path, staging=report(SNS), production=report(PORT_80, SNS))
    reviews = infra_scan.review(manifest, tmp_path, policy, TODAY)
    text = infra_scan.render_summary(manifest, reviews)
    assert "| staging | 100 | 200 | 1 | 0 | 0 | 1 |" in text
    assert "| production | 100 | 200 | 2 | 1 | 1 | 0 |" in text
    assert "`CKV_AWS_26:aws_sns_topic.alarms-topic`" in text
    assert "the listener on port 80 only redirects" in text


# --------------------------------------------------------------------------- checkov's venv


def test_checkov_gets_a_venv_of_its_own_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(checkov_tool.OVERRIDE_ENV, raising=False)
    calls: list[list[str]] = []

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            (Path(argv[3]) / "bin").mkdir(parents=True)
            (Path(argv[3]) / "bin" / "checkov").write_text("")
        return subprocess.CompletedProcess(argv, 0, "", "")

    root = Path(checkov_tool.__file__).resolve().parents[4]
    binary = checkov_tool.executable(root, runner)
    assert binary.parent.parent.parent == tmp_path / "cache" / "drydock"
    assert calls[-1][-1] == checkov_tool.requirements(root)[0]  # what pyproject names
    assert checkov_tool.requirements(root)[0].startswith("checkov==")
    assert checkov_tool.executable(root, runner) == binary and len(calls) == 3  # reused


def test_a_failed_install_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(checkov_tool.OVERRIDE_ENV, raising=False)

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        code = 1 if "checkov==3.3.30" in " ".join(argv) else 0
        return subprocess.CompletedProcess(argv, code, "", "No matching distribution found")

    root = Path(checkov_tool.__file__).resolve().parents[4]
    with pytest.raises(checkov_tool.CheckovError, match="No matching distribution") as error:
        checkov_tool.executable(root, runner)
    assert checkov_tool.OVERRIDE_ENV in str(error.value)
    monkeypatch.setenv(checkov_tool.OVERRIDE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(checkov_tool.CheckovError, match="no such file"):
        checkov_tool.executable(root, runner)
