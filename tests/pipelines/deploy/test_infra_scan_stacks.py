"""`invoke infra.scan` on both committed stacks, with the real checkov (installed into its
own venv on first use, which needs PyPI). One scan serves every test here."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines.deploy.security.iac import scan as infra_scan
from pipelines.deploy.security.iac.terraform_types import NO_TERRAFORM_TWIN
from pipelines.deploy.security.policy import Review, load_policy

pytestmark = pytest.mark.integration

ROOT = Path(infra_scan.__file__).resolve().parents[4]
COUNTS = re.compile(r"^infra\.scan (\w+): (\d+) passed, (\d+) failed", re.MULTILINE)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("infra-scan")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = infra_scan.command(ROOT, "all", str(out))
    return code, printed.getvalue(), out


def _manifest(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / infra_scan.MANIFEST).read_text()))


def _reviews(out: Path) -> dict[str, Review]:
    return infra_scan.review(_manifest(out), out, load_policy(ROOT / infra_scan.POLICY))


def test_the_scan_prints_checkovs_counts_for_both_stacks(scanned: tuple[int, str, Path]) -> None:
    code, printed, out = scanned
    counts = {stack: (int(p), int(f)) for stack, p, f in COUNTS.findall(printed)}
    assert set(counts) == {"staging", "production"}, printed
    for stack, (passed, failed) in counts.items():
        entry = next(e for e in _manifest(out)["stacks"] if e["stack"] == stack)
        assert (entry["passed"], entry["failed"]) == (passed, failed)
        assert passed > 100 and entry["parsing_errors"] == 0
        plan = json.loads((out / f"{stack}.plan.json").read_text())
        assert len(plan["planned_values"]["root_module"]["resources"]) == entry["resources_planned"]
    reviews = _reviews(out)
    assert code == (0 if all(r.ok for r in reviews.values()) else infra_scan.EXIT_BLOCKED)
    summary = (out / infra_scan.SUMMARY).read_text()
    assert "| staging |" in summary and "| production |" in summary


def test_every_declared_type_maps_to_a_type_checkov_knows(scanned: tuple[int, str, Path]) -> None:
    for entry in _manifest(scanned[2])["stacks"]:
        untwinned = sorted(t for t, tf in entry["types"].items() if tf is None)
        assert set(untwinned) <= set(NO_TERRAFORM_TWIN), (entry["stack"], untwinned)
        assert entry["unchecked_types"] == [], entry["stack"]


def test_cross_resource_checks_see_the_references(scanned: tuple[int, str, Path]) -> None:
    """Checks that join two resources pass only if the plan's references connect them."""
    report = json.loads((scanned[2] / "production.checkov.json").read_text())
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    assert ("CKV2_AWS_6", "aws_s3_bucket.backups-bucket") in passed  # its public access block
    assert ("CKV2_AWS_20", "aws_lb.ingress-alb") in passed  # its port-80 listener redirects
    assert ("CKV2_AWS_30", "aws_db_instance.database-instance") in passed  # its parameters
    assert ("CKV2_AWS_11", "aws_vpc.network-vpc") in passed  # its flow log
    assert ("CKV2_AWS_28", "aws_lb.ingress-alb") in passed  # its web ACL
    assert ("CKV_AWS_18", "aws_s3_bucket.backups-bucket") in passed  # its access logging
    assert ("CKV_AWS_144", "aws_s3_bucket.backups-bucket") in passed  # its replication
    assert ("CKV2_AWS_64", "aws_kms_key.keys-alarm-topic") in passed  # its key policy


def test_the_second_regions_pieces_are_planned_there(scanned: tuple[int, str, Path]) -> None:
    """pulumi-aws 7's `region` argument is Terraform's: the DR vault, key and replica bucket
    carry it, and the plan's copy action names a vault ARN in that region."""
    plan = json.loads((scanned[2] / "production.plan.json").read_text())
    values = {r["address"]: r["values"] for r in plan["planned_values"]["root_module"]["resources"]}
    region = infra_scan.BEFORE_FIRST_UP["drydock:drRegion"]
    for address in ("aws_backup_vault.dr-vault", "aws_kms_key.dr-key", "aws_s3_bucket.dr-bucket"):
        assert values[address]["region"] == region, address
    assert "region" not in values["aws_backup_vault.backups-vault"]
    (daily, _) = values["aws_backup_plan.backups-plan"]["rule"]
    assert daily["copy_action"][0]["destination_vault_arn"] == "aws_backup_vault.dr-vault.arn"


def test_every_committed_infra_waiver_matches_a_failure(scanned: tuple[int, str, Path]) -> None:
    for stack, result in _reviews(scanned[2]).items():
        assert result.unused_waivers == [], (stack, [w.key for w in result.unused_waivers])
        assert any("redirect" in f.id for f, _ in result.waived), stack


def test_staging_failures_are_reported_without_blocking(scanned: tuple[int, str, Path]) -> None:
    staging = _reviews(scanned[2])["staging"]
    assert [f for f in staging.blocking if f.kind == "infra"] == []


def test_production_has_no_unwaived_failures(scanned: tuple[int, str, Path]) -> None:
    production = _reviews(scanned[2])["production"]
    assert production.ok, [f.id for f in production.blocking]
    assert scanned[0] == 0
