"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's
vendored copy), clean under zizmor's offline audits, and every `run:` step an invoke task.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    commands = [step["run"] for _, step in steps(deploy) if "run" in step]
    tasks = [c.split()[2] for c in commands]
    assert [t for t in tasks if t in DEPLOY_STEPS] == list(DEPLOY_STEPS)
    for command in commands:
        if command.split()[2] in DEPLOY_STEPS:
            assert "--target aws" in command, command
    [build] = [s for s in jobs["build"]["steps"] if "docker/build-push-action" in s.get("uses", "")]
    assert build["with"]["build-args"] == "REVISION=${{ github.sha }}", "the image names its commit"
    for name, job in jobs.items():
        if "steps" in job and name != "build":
            last = job["steps"][-1]
            assert last["uses"].startswith("actions/upload-artifact@"), name
            assert last["if"] == "${{ !cancelled() }}" and last["with"]["path"] == "reports/"
