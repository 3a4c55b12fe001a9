"""The spec: both loaders, per-stack defaults, and the messages for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.spec import (
    SETTINGS,
    EnvironmentSpec,
    SpecError,
    defaults,
    from_pulumi_config,
    load_stack_file,
    require_for_aws,
)
from tests.infra.harness import ROOT, build_stack, stack_file_config

pytestmark = pytest.mark.unit


def _error(config: dict[str, object], stack: str = "staging") -> str:
    with pytest.raises(SpecError) as caught:
        from_pulumi_config({k: str(v) for k, v in config.items()}, stack)
    return str(caught.value)


def _file_error(tmp_path: Path, body: str, stack: str = "staging") -> str:
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(body)
    with pytest.raises(SpecError) as caught:
        load_stack_file(path)
    return str(caught.value)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_committed_stack_files_hold_every_setting_and_load(stack: str) -> None:
    config = stack_file_config(stack)
    plain = {key for key, (_, s) in SETTINGS.items() if not s.secret}
    assert set(config) == plain
    assert load_stack_file(stack) == load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    assert load_stack_file(stack) == defaults(stack)


def test_runbook_values_are_the_defaults() -> None:
    spec = defaults("production")
    assert (spec.liveness_path, spec.readiness_path) == (
        "/api/_internal/health",
        "/api/_internal/ready",
    )
    assert (spec.slo_latency_p95_seconds, spec.slo_error_rate_percent) == (0.4, 1.0)
    assert spec.slo_availability_percent == 99.5
    assert (spec.lockout_failures, spec.lockout_minutes) == (5, 15)
    assert (spec.bake_window_seconds, spec.local_bake_window_seconds) == (600, 60)
    assert spec.backup_retention_days == 14
    assert defaults("staging").backup_retention_days == 7
    assert spec.weekly_backup_retention_weeks >= 5


def test_local_ports_differ_between_stacks() -> None:
    staging, production = defaults("staging"), defaults("production")
    assert (staging.local_lb_port, staging.local_postgres_port) == (8180, 15432)
    assert (production.local_lb_port, production.local_postgres_port) == (8280, 15433)

    def ports(s: EnvironmentSpec) -> set[int]:
        return {s.local_lb_port, s.local_postgres_port, s.local_agent_port, *s.local_replica_ports}

    assert not ports(staging) & ports(production)


def test_pulumi_strings_and_json_are_coerced() -> None:
    spec = from_pulumi_config(
        {
            "drydock:desiredCount": "3",
            "drydock:multiAz": "true",
            "drydock:sloLatencyP95Seconds": "0.3",
            "drydock:alarmEmails": '["a@example.com"]',
            "drydock:image": "",
            "pulumi:template": "ignored",
        },
        "staging",
    )
    assert (spec.desired_count, spec.multi_az, spec.slo_latency_p95_seconds) == (3, True, 0.3)
    assert spec.alarm_emails == ("a@example.com",)
    assert spec.image is None
    assert spec.source == "Pulumi.staging.yaml"


def test_misspelled_key_names_file_key_and_closest_valid_key() -> None:
    message = _error({"drydock:backupRetentionDay": 7})
    assert message == (
        "Pulumi.staging.yaml: unknown setting 'drydock:backupRetentionDay'; "
        "did you mean 'drydock:backupRetentionDays'?"
    )
    assert "did you mean 'drydock:desiredCount'" in _error({"desiredCount": 2})
    assert "did you mean 'aws:region'" in _error({"aws:regoin": "eu-west-1"})


def test_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    message = _error({"drydock:zzz": 1})
    assert "unknown setting 'drydock:zzz'; valid settings: aws:region, " in message
    assert "drydock:backupRetentionDays" in message


def test_out_of_range_value_names_file_key_value_and_range(tmp_path: Path) -> None:
    message = _file_error(tmp_path, "config:\n  drydock:backupRetentionDays: 3\n")
    assert message == (
        "Pulumi.staging.yaml: drydock:backupRetentionDays=3 is out of range; allowed range: 7..35"
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"drydock:cpu": 300}, "drydock:cpu=300 is not allowed; allowed values: 256, 512, 1024"),
        ({"drydock:multiAz": "yes"}, "drydock:multiAz='yes' is not a boolean; allowed values"),
        (
            {"drydock:desiredCount": "two"},
            "drydock:desiredCount='two' is not an integer; allowed range: 1..20",
        ),
        (
            {"drydock:logRetentionDays": 10},
            "drydock:logRetentionDays=10 is not allowed; allowed values: 1, 3",
        ),
        (
            {"drydock:backupWindow": "3am"},
            "drydock:backupWindow='3am' is not valid; allowed: hh:mm-hh:mm",
        ),
        (
            {"drydock:image": "nginx:latest"},
            "drydock:image='nginx:latest' is not valid; allowed: an ECR",
        ),
        (
            {"drydock:weeklyBackupRetentionWeeks": 4},
            "weeklyBackupRetentionWeeks=4 is out of range; allowed range: 5..520",
        ),
        (
            {"drydock:memory": 4096},
            "drydock:memory=4096 does not fit drydock:cpu=256; allowed: 512, 1024, 2048",
        ),
        (
            {"drydock:minCount": 3, "drydock:desiredCount": 2},
            "drydock:desiredCount=2 must lie within drydock:minCount=3",
        ),
        (
            {"drydock:healthCheckTimeoutSeconds": 10},
            "healthCheckTimeoutSeconds=10 must be below drydock:healthCheckIntervalSeconds=10",
        ),
        (
            {"drydock:alarmDatapointsToAlarm": 6},
            "alarmDatapointsToAlarm=6 must not exceed drydock:alarmEvaluationPeriods=5",
        ),
        (
            {"drydock:natGateways": 3},
            "drydock:natGateways=3 must not exceed drydock:availabilityZones=2",
        ),
        (
            {
                "drydock:backupWindow": "04:30-05:00",
                "drydock:maintenanceWindow": "sun:04:00-sun:05:00",
            },
            "overlaps drydock:maintenanceWindow",
        ),
        ({"drydock:localAgentPort": 8180}, "local ports collide"),
        ({"drydock:localAgentPort": 8194}, "local ports collide"),  # the canary's slot
        ({"drydock:localAgentPort": 8195}, "local ports collide"),  # its baseline's
        (
            {"drydock:canarySteps": "[50, 10, 100]"},
            "drydock:canarySteps=[50, 10, 100] must rise strictly and end at 100",
        ),
        ({"drydock:canarySteps": "[10, 50]"}, "drydock:canarySteps=[10, 50] must rise"),
        ({"drydock:canarySteps": "[0, 100]"}, "drydock:canarySteps=0 is out of range; allowed"),
        ({"drydock:canarySteps": '["ten"]'}, "drydock:canarySteps='[\"ten\"]' is not a list"),
        (
            {"drydock:rolloutStrategy": "blue-green"},
            "drydock:rolloutStrategy=blue-green is not allowed; allowed values: rolling, canary",
        ),
        (
            {"drydock:alarmEmails": '["not-an-email"]'},
            "drydock:alarmEmails='not-an-email' is not valid; allowed: email",
        ),
    ],
)
def test_bad_values_are_explained(config: dict[str, object], expected: str) -> None:
    message = _error(config)
    assert message.startswith("Pulumi.staging.yaml: ")
    assert expected in message


def test_production_refuses_unsafe_switches() -> None:
    message = _error(
        {"drydock:deletionProtection": "false", "drydock:ecsExec": "true"}, "production"
    )
    assert message.splitlines() == [
        "Pulumi.production.yaml: drydock:deletionProtection=false is not allowed in production; "
        "allowed: true",
        "Pulumi.production.yaml: drydock:ecsExec=true is not allowed in production; allowed: false",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    body = "config:\n  drydock:desiredCont: 2\n  drydock:cpu: 3\n  drydock:multiAz: maybe\n"
    assert len(_file_error(tmp_path, body).splitlines()) == 3


def test_secret_values_stay_encrypted_in_the_file_loader(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text("config:\n  drydock:alarmHttpsEndpoint:\n    secure: v1:abc\n")
    assert load_stack_file(path).alarm_https_endpoint is None
    message = _file_error(tmp_path, "config:\n  drydock:desiredCount:\n    secure: v1:abc\n")
    assert "drydock:desiredCount is encrypted but is not a secret setting" in message
    spec = from_pulumi_config({"drydock:alarmHttpsEndpoint": "https://x.example/h"}, "staging")
    assert "x.example" not in repr(spec)


def test_missing_file_and_bad_stack_names(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"Pulumi\.nope\.yaml: no such stack file"):
        load_stack_file("nope", root=tmp_path)
    with pytest.raises(SpecError, match="stack name 'Prod_1' is not valid"):
        from_pulumi_config({}, "Prod_1")
    assert "expected a mapping under 'config:'" in _file_error(tmp_path, "config: [1, 2]\n")


def test_other_stacks_get_staging_defaults() -> None:
    assert defaults("dev-alice").desired_count == defaults("staging").desired_count


def test_aws_needs_a_certificate_and_fails_before_any_resource() -> None:
    with pytest.raises(SpecError, match="drydock:certificateArn is required to provision AWS"):
        require_for_aws(defaults("staging"))
    with pytest.raises(
        SpecError, match=r"Pulumi\.staging\.yaml: drydock:certificateArn is required"
    ):
        build_stack("staging")


def test_invalid_config_fails_before_any_resource_is_declared() -> None:
    with pytest.raises(SpecError, match="did you mean 'drydock:desiredCount'"):
        build_stack("staging", **{"drydock:desiredCont": 2})


def test_production_rolls_out_through_a_canary_and_staging_rolls() -> None:
    production, staging = load_stack_file("production"), load_stack_file("staging")
    assert (production.rollout_strategy, staging.rollout_strategy) == ("canary", "rolling")
    assert production.canary_steps == (10, 50, 100)
    assert production.local_canary_port == production.local_replica_base_port + 12
    config = from_pulumi_config({"drydock:canarySteps": "[5, 25, 100]"}, "production")
    assert config.canary_steps == (5, 25, 100)
