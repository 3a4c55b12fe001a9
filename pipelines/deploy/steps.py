"""The shape every pipeline step has: plan() reads the world and says what it would do,
run() does it. Steps are data; `pipelines/deploy/runner.py` runs them in order.

A step that fails returns a StepResult with ok=False and a reason a person can act on; it
raises only for bugs. Each step has its own exit code so CI logs say which step stopped a
deploy without anyone reading them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipelines.targets.base import Release, Target


def nothing_held() -> None:
    """Outside a run's locks (plans, steps 1-4 alone) there is no lock to lose."""


@dataclass(frozen=True)
class Event:
    """Something that happened to an environment during a run, for the report's timeline:
    a snapshot, a migration, a replica started/ready/drained, the bake window, an alarm
    transition, a canary stage, a rollback. `at` is wall-clock (epoch seconds), the same clock
    as the traffic samples."""

    at: float
    kind: str
    label: str
    env: str | None = None


@dataclass
class StepContext:
    target: Target
    sha: str
    root: Path
    reports: Path
    release: Release | None = None
    dry_run: bool = False
    assume_yes: bool = False
    deploy_id: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # Facts later steps need from earlier ones (release notes, snapshot ids, baselines).
    facts: dict[str, Any] = field(default_factory=dict)
    # Raises LeaseLost once a lock the run holds is no longer its own: called before every
    # change to an environment, so a run that lost its lock stops instead of racing.
    check_locks: Callable[[], None] = nothing_held
    events: list[Event] = field(default_factory=list)

    def event(self, kind: str, label: str, env: str | None = None, at: float | None = None) -> None:
        # list.append is atomic, and steps 1-4 record from their own threads.
        self.events.append(Event(time.time() if at is None else at, kind, label, env))


@dataclass(frozen=True)
class StepPlan:
    summary: str
    actions: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()  # known now to stop the step if it runs


@dataclass(frozen=True)
class StepResult:
    ok: bool
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    duration_s: float = 0.0

    def timed(self, started: float) -> StepResult:
        return StepResult(
            self.ok,
            self.summary,
            self.evidence,
            self.warnings,
            round(time.monotonic() - started, 3),
        )


# Exit code of a deploy stopped by step N: 10 + N. 2 is a usage or configuration error, and
# 3 means the environment's lock is held by another deploy.
EXIT_USAGE = 2
EXIT_LOCKED = 3


def exit_code_for(step_number: int) -> int:
    return 10 + step_number


class Step(Protocol):
    number: int
    name: str  # also the invoke task that runs it alone, e.g. "gates.ci"
    title: str
    exit_code: int
    # Reads the commit and changes nothing outside reports/: the runner starts the leading
    # steps that do (1-4) together, and waits for all of them before the next one.
    reads_commit_only: bool

    def plan(self, ctx: StepContext) -> StepPlan: ...

    def run(self, ctx: StepContext) -> StepResult: ...
