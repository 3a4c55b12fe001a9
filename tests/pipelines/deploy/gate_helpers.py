"""Small gates for testing the gate runner and its record without running the suite inside
itself: Python one-liners in place of ruff, mypy and pytest."""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.deploy.gates import Gate
from pipelines.deploy.steps import StepContext
from pipelines.targets.base import Target
from pipelines.targets.local.target import LocalTarget
from tests.pipelines.deploy.git_helpers import GitRepo


def py_gate(name: str, code: str, **fields: object) -> Gate:
    return Gate(name, (sys.executable, "-c", code), **fields)  # type: ignore[arg-type]


def waits_for(path: str, then: str = "") -> str:
    """A gate that passes once `path` exists, and fails if it never appears within 30 s."""
    return (
        "import pathlib, time\n"
        f"deadline = time.time() + 30\n"
        f"while not pathlib.Path({path!r}).exists():\n"
        "    if time.time() > deadline: raise SystemExit(9)\n"
        "    time.sleep(0.05)\n" + then
    )


OK = [py_gate("lint", "pass"), py_gate("tests", "print('2 passed')")]


def first_commit(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.commit(
        "feat: first",
        {"app.py": "print('hello')\n", "CHANGES.md": "# app\n", ".gitignore": "reports/\n"},
    )
    return repo


def step_context(
    repo: GitRepo, sha: str | None = None, target: Target | None = None
) -> StepContext:
    return StepContext(
        target=target or LocalTarget(state_dir=repo.path / ".state"),
        sha=sha or repo.git("rev-parse", "HEAD"),
        root=repo.path,
        reports=repo.path / "reports" / "deploy",
    )
