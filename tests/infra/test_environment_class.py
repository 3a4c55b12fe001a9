"""The environment class: what a stack is held to comes from its settings, not its name.
Production needs someone to page, a second region for its backups and a year of logs;
staging is warned about a missing subscriber, not refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from infra.environment_class import MIN_LOG_RETENTION_DAYS
from infra.spec import EnvironmentSpec, SpecError, defaults, from_pulumi_config, load_stack_file
from infra.spec import require_for_aws as check
from tests.infra.harness import (
    CERTIFICATE,
    DR_REGION,
    ONCALL,
    PRODUCTION_CONFIG,
    REPOSITORY,
    Stack,
    build_stack,
    stack_file_config,
)

pytestmark = pytest.mark.unit

SUBSCRIBER_MISSING = "drydock:alarmEmails or drydock:alarmHttpsEndpoint: without a subscriber"


def ready(spec: EnvironmentSpec, **changes: object) -> EnvironmentSpec:
    """`spec` with what every AWS stack sets (certificate, repository), then `changes`."""
    return replace(spec, certificate_arn=CERTIFICATE, github_repository=REPOSITORY, **changes)


def test_production_without_a_subscriber_is_refused_naming_the_keys() -> None:
    with pytest.raises(SpecError) as caught:
        check(ready(defaults("production"), dr_region=DR_REGION))
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"defaults for production: {SUBSCRIBER_MISSING}")
    assert "pulumi config set --path 'drydock:alarmEmails[0]'" in line
    assert "pulumi config set --secret drydock:alarmHttpsEndpoint" in line
    assert line.endswith("(one is required in production)")


def test_production_without_a_dr_region_is_refused_naming_the_key() -> None:
    with pytest.raises(SpecError) as caught:
        check(ready(defaults("production"), alarm_emails=(ONCALL,)))
    (line,) = str(caught.value).splitlines()
    assert "drydock:drRegion is required in production" in line
    assert "pulumi config set drydock:drRegion eu-central-1 --stack production" in line


def test_a_production_stack_file_without_both_stops_before_any_resource() -> None:
    with pytest.raises(SpecError) as caught:
        build_stack("production", **{**PRODUCTION_CONFIG, "drydock:alarmEmails": []})
    assert SUBSCRIBER_MISSING in str(caught.value)
    with pytest.raises(SpecError, match="drydock:drRegion is required in production"):
        build_stack("production", **{**PRODUCTION_CONFIG, "drydock:drRegion": ""})


def test_staging_without_a_subscriber_is_warned_not_refused() -> None:
    (warning,) = check(ready(defaults("staging")))
    assert warning.startswith(f"defaults for staging: no alarm subscriber: {SUBSCRIBER_MISSING}")
    assert check(ready(defaults("staging"), alarm_emails=(ONCALL,))) == []


def test_a_webhook_set_as_a_secret_is_a_subscriber(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.production.yaml"
    config = {
        **stack_file_config("production"),
        "drydock:certificateArn": CERTIFICATE,
        "drydock:githubRepository": REPOSITORY,
        "drydock:drRegion": DR_REGION,
    }
    lines = [f"  {key}: {value!r}" for key, value in config.items() if value not in ("", [])]
    lines += ["  drydock:alarmHttpsEndpoint:", "    secure: v1:abc"]
    path.write_text("config:\n" + "\n".join(lines) + "\n")
    spec = load_stack_file(path)
    assert spec.alarm_https_endpoint is None  # unreadable here, but set
    assert check(spec) == []


def test_the_class_not_the_name_decides() -> None:
    # A second production stack, named otherwise, is held to production's rules...
    with pytest.raises(SpecError) as caught:
        from_pulumi_config({"drydock:environmentClass": "production"}, "production-us")
    message = str(caught.value)
    assert "drydock:deletionProtection=false is not allowed in production" in message
    assert "drydock:logRetentionDays=30 is below the 365 days a production stack keeps" in message
    # ... and a stack named production may declare itself staging.
    staging_named_production = from_pulumi_config(
        {"drydock:environmentClass": "staging", "drydock:deletionProtection": "false"},
        "production",
    )
    assert not staging_named_production.is_production
    assert check(ready(staging_named_production)) != []  # warned, not refused


def test_log_retention_has_a_minimum_per_class() -> None:
    assert MIN_LOG_RETENTION_DAYS == {"staging": 30, "production": 365}
    with pytest.raises(SpecError) as caught:
        from_pulumi_config({"drydock:logRetentionDays": "90"}, "production")
    assert str(caught.value) == (
        "Pulumi.production.yaml: drydock:logRetentionDays=90 is below the 365 days a "
        "production stack keeps its logs; allowed: 365, 400, 545, 731, 1096, 1827"
    )
    with pytest.raises(SpecError, match="logRetentionDays=14 is below the 30 days a staging"):
        from_pulumi_config({"drydock:logRetentionDays": "14"}, "staging")


def test_the_dr_region_is_another_region() -> None:
    with pytest.raises(SpecError) as caught:
        from_pulumi_config({"drydock:drRegion": "eu-west-1"}, "staging")
    assert "drydock:drRegion=eu-west-1 is the stack's own aws:region" in str(caught.value)
    with pytest.raises(SpecError, match=r"drydock:drRegion='Frankfurt' is not valid"):
        from_pulumi_config({"drydock:drRegion": "Frankfurt"}, "staging")


def test_every_taggable_resource_carries_the_class(stack: Stack) -> None:
    tagged = [r for r in stack.resources if r.custom and r.get("tags")]
    assert len(tagged) > 50
    assert {r.get("tags")["environment-class"] for r in tagged} == {stack.spec.environment_class}
