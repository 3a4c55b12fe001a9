"""What ties a release to the commit that passed steps 1-4.

Every run of steps 1-4 (`invoke deploy`, or each step alone as CI runs them) appends a
`checks` entry to the ledger: the commit, the step, whether it passed. Before steps 5-7
change anything, they ask the target which commit the artifact was built from (on AWS, the
image's `org.opencontainers.image.revision` label) and refuse unless the newest record of
each of steps 1-4 for that commit is green. Locally the artifact is `git archive` of the
commit, made in the same run, and the target has nothing to prove.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipelines.deploy.steps import StepContext, StepResult
from pipelines.ledger import Ledger

if TYPE_CHECKING:
    from pipelines.deploy.steps import Step

CHECKS_ENTRY = "checks"
CHECKS_ENV = "production"  # what steps 1-4 clear a commit for
CHECK_STEPS = {1: "gates.ci", 2: "security.review", 3: "db.migrations", 4: "release.notes"}


def record(ledger: Ledger, sha: str, outcomes: Iterable[tuple[Step, StepResult]]) -> None:
    """One ledger entry per step 1-4 that ran on `sha`, green or not."""
    for step, result in outcomes:
        if step.number in CHECK_STEPS:
            ledger.append(
                CHECKS_ENTRY,
                CHECKS_ENV,
                sha=sha,
                step=step.number,
                name=step.name,
                ok=result.ok,
                summary=result.summary[:300],
            )


def missing(ledger: Ledger, sha: str) -> list[str]:
    """Why each of steps 1-4 does not count as green for `sha`; empty when all do. The
    newest record of a step decides: a step that passed, then failed, is not green."""
    newest = {}
    for entry in ledger.entries(CHECKS_ENV, CHECKS_ENTRY):
        if str(entry.get("sha", "")).lower() == sha.lower():
            newest[entry.get("step")] = entry
    problems = []
    for number, name in CHECK_STEPS.items():
        found = newest.get(number)
        if found is None:
            problems.append(f"step {number} ({name}) has no record")
        elif not found.get("ok"):
            problems.append(
                f"step {number} ({name}) failed at {found.get('at_iso', '?')}: "
                f"{found.get('summary', '')}"
            )
    return problems


def refusal(ctx: StepContext, ledger: Ledger) -> str | None:
    """Why steps 5-7 must not run this release, or None. Once a release passed, the run
    remembers its commit and does not ask again."""
    assert ctx.release is not None
    if "artifact_commit" in ctx.facts:
        return None
    commit = ctx.target.artifact_commit(ctx.release)
    if commit is None:
        return None
    problems = missing(ledger, commit)
    if not problems:
        ctx.facts["artifact_commit"] = commit
        return None
    runs = ", ".join(f"`python3 dev.py {name} --target aws`" for name in CHECK_STEPS.values())
    return (
        f"refused: release {ctx.release.id} was built from commit {commit} (its revision "
        f"label), and that commit has no green record of steps 1-4 in the ledger: "
        f"{'; '.join(problems)}. Run steps 1-4 on that commit first (check it out, then "
        f"{runs}), or deploy an image built from a commit that passed them. Nothing was changed"
    )


def refused(ctx: StepContext, ledger: Ledger, started: float) -> StepResult | None:
    """The failed result of a step 5-7 that must not run, or None."""
    why = refusal(ctx, ledger)
    return StepResult(False, why).timed(started) if why else None
