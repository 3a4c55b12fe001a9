"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's
vendored copy), clean under zizmor's offline audits, every `run:` step an invoke task, and
every job that reaches AWS inside a GitHub environment, with time and credentials that
outlast the waits of the steps it runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from inspect import signature
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.ci_identity import MAX_SESSION_S
from infra.spec import load_stack_file
from pipelines.deploy.migrations.sql import SQUAWK_TIMEOUT_S
from pipelines.deploy.security.scanners import SCAN_TIMEOUT_S
from pipelines.targets.aws.backups import AwsBackups
from pipelines.targets.aws.environment import METRIC_LAG_S, ROLLOUT_TIMEOUT_S
from pipelines.targets.aws.pitr_drill import run as pitr_drill_run

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
# `python3 dev.py <task>` or `invoke <task>`, one command, nothing chained.
INVOKE_TASK = re.compile(r"^(python3? dev\.py|(\.venv/bin/)?invoke) [a-z][\w.-]*( [^;&|`\n]*)?$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
DEPLOY_STEPS = (
    "gates.ci",
    "security.review",
    "db.migrations",
    "release.notes",
    "deploy.staging",
    "deploy.production",
    "deploy.verify",
)

CONFIGURE_AWS = "aws-actions/configure-aws-credentials@"
DEPLOY_ROLE = "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
T = ROLLOUT_TIMEOUT_S  # one wait of the aws target: a one-off task, a snapshot, a rollout
DRILL_WAIT_S = signature(AwsBackups.__init__).parameters["timeout_s"].default
PITR = {k: p.default for k, p in signature(pitr_drill_run).parameters.items()}
REQUESTS_S = 30 * 10  # the smoke suite, or the bake's fixture: about 30 requests of <= 10 s
BAKE_STOP_S = 30  # run_bake waits that long past the window for the load to stop
SET_UP_S = 10 * 60  # at least: checkout, Python, the venv, the Pulumi CLI
# Per invoke task: the longest the steps inside it may wait (deploy.yml's comments).
WORST_CASE_S = {
    "gates.ci": 0,
    "security.scan": 2 * SCAN_TIMEOUT_S,  # pip-audit, bandit
    "security.review": 0,
    "db.migrations": 2 * T + 2 * SQUAWK_TIMEOUT_S,  # production's two one-off tasks
    "release.notes": 0,
    "deploy.staging": 4 * T + REQUESTS_S,  # snapshot, migrate, rollout, smoke admin; smoke
    "deploy.production": 3 * T,  # snapshot, migrate, rollout
    "deploy.verify": T  # the smoke admin's task
    + REQUESTS_S
    + load_stack_file("production").bake_window_seconds
    + BAKE_STOP_S
    + METRIC_LAG_S
    + 2 * T,  # a failed bake's rollback: the old image's schema probe, the rollout
    "drill.restore": 4 * DRILL_WAIT_S,  # instance up, settled, verified, deleted
    "drill.pitr": T  # the smoke admin's task
    + REQUESTS_S  # the shopper and item, made and deleted
    + PITR["write_before_s"]
    + PITR["write_after_s"]
    + 4 * PITR["quiet_s"]  # T held across a whole second
    + PITR["catch_up_timeout_s"]  # RDS archiving past T
    + 4 * DRILL_WAIT_S,  # copy up, settled, verified, deleted
}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a mapping"
    return document


def steps(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (job_name, step)
        for job_name, job in document.get("jobs", {}).items()
        for step in job.get("steps", [])
    ]


@pytest.mark.unit
def test_there_are_workflows() -> None:
    names = {path.name for path in FILES}
    assert {"ci.yml", "deploy.yml"} <= names


@pytest.mark.integration
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_passes_zizmor_offline(path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_run_step_is_an_invoke_task(path: Path) -> None:
    for job, step in steps(load(path)):
        if "run" in step:
            command = str(step["run"]).strip()
            assert INVOKE_TASK.match(command), f"{path.name} job {job}: {command!r}"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_by_full_sha(path: Path) -> None:
    for job, step in steps(load(path)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name} job {job}: {step['uses']}"


@pytest.mark.unit
def test_ci_runs_the_gates_with_minimal_permissions() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    triggers = ci.get("on", ci.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request", "workflow_call"} <= set(triggers)
    assert ci["permissions"] == {}
    commands = [step["run"] for _, step in steps(ci) if "run" in step]
    assert commands == ["python3 dev.py check"]
    assert all(job["permissions"] == {"contents": "read"} for job in ci["jobs"].values())


@pytest.mark.unit
def test_deploy_runs_the_seven_steps_on_aws_after_ci() -> None:
    deploy = load(WORKFLOWS / "deploy.yml")
    assert deploy.get("on", deploy.get(True))["push"] == {"branches": ["main"]}
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["permissions"] == {}
    jobs = deploy["jobs"]
    assert jobs["ci"]["uses"].endswith("/.github/workflows/ci.yml")
    assert jobs["checks"]["needs"] == "ci"
    assert jobs["production"]["environment"] == "production"
    assert set(jobs["production"]["needs"]) == {"build", "staging"}
    on_aws = [
        step["run"].split()[2]
        for _, step in steps(deploy)
        if "run" in step and "--target aws" in step["run"]
    ]
    assert [t for t in on_aws if t in DEPLOY_STEPS] == list(DEPLOY_STEPS)
    # Steps 1-2 first run with no AWS, for a verdict before anyone approves; the ledger
    # record steps 5-7 require is written when preflight runs them again on AWS.
    assert tasks_of(jobs["checks"])[0:1] == ["gates.ci"]
    assert all("--target aws" not in step.get("run", "") for step in jobs["checks"]["steps"])
    [build] = [s for s in jobs["build"]["steps"] if "docker/build-push-action" in s.get("uses", "")]
    assert build["with"]["build-args"] == "REVISION=${{ github.sha }}", "the image names its commit"
    for name, job in jobs.items():
        if "steps" in job and name != "build":
            last = job["steps"][-1]
            assert last["uses"].startswith("actions/upload-artifact@"), name
            assert last["if"] == "${{ !cancelled() }}" and last["with"]["path"] == "reports/"


def environment_of(job: dict[str, Any]) -> str | None:
    declared = job.get("environment")
    return declared.get("name") if isinstance(declared, dict) else declared


def aws_logins(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(CONFIGURE_AWS)]


def tasks_of(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]).split()[2] for step in job.get("steps", []) if "run" in step]


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_only_jobs_in_a_github_environment_can_reach_aws(path: Path) -> None:
    # The deploy roles trust `repo:<owner>/<name>:environment:<env>` only: a job with no
    # environment has no token they accept, and should not ask for one at all.
    for name, job in load(path)["jobs"].items():
        wants_token = (job.get("permissions") or {}).get("id-token") == "write"
        if wants_token or aws_logins(job):
            assert environment_of(job), f"{path.name} job {name} reaches AWS outside an environment"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_aws_jobs_outlast_the_waits_they_contain(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        for login in aws_logins(job):
            unknown = [t for t in tasks_of(job) if t not in WORST_CASE_S]
            assert not unknown, f"{path.name} job {name}: add the worst case of {unknown}"
            waits = sum(WORST_CASE_S[t] for t in tasks_of(job))
            limit = int(job["timeout-minutes"]) * 60
            assert limit >= waits + SET_UP_S, (
                f"{path.name} job {name}: timeout-minutes {limit // 60} is below its waits "
                f"({waits / 60:g} min) plus set-up ({SET_UP_S // 60} min)"
            )
            session = int(login["with"]["role-duration-seconds"])
            assert session >= limit, f"{path.name} job {name}: credentials expire before it does"
            if login["with"]["role-to-assume"] == DEPLOY_ROLE:
                assert session <= MAX_SESSION_S, f"{path.name} job {name}: above the role's maximum"


@pytest.mark.unit
def test_each_deploy_job_assumes_its_own_environments_role() -> None:
    jobs = load(WORKFLOWS / "deploy.yml")["jobs"]
    reach = {name: environment_of(job) for name, job in jobs.items() if aws_logins(job)}
    assert reach == {
        "preflight": "production",
        "build": "staging",
        "staging": "staging",
        "production": "production",
    }
    for name in reach:
        (login,) = aws_logins(jobs[name])
        assert login["with"]["role-to-assume"] == DEPLOY_ROLE  # the environment's variable
    # Steps 1-2 read only the commit: no AWS, and no token to ask for it with.
    assert "id-token" not in jobs["checks"]["permissions"]
    assert "PULUMI_ACCESS_TOKEN" not in str(jobs["checks"])
    # Steps 3-4 read production (step 3 with the admin credentials) before staging changes.
    assert tasks_of(jobs["preflight"]) == [
        "gates.ci",
        "security.review",
        "db.migrations",
        "release.notes",
    ]
    assert "preflight" in jobs["staging"]["needs"]
