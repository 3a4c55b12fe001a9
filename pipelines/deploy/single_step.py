"""Deploy steps 1-4 on their own (`invoke gates.ci`, `security.review`, `db.migrations`,
`release.notes`): print the plan, run the step, print the outcome, return its exit code.

Unlike `invoke deploy`, these build no release artifact and take no lock: they read the
repository and reports, and write only under `reports/` and one ledger entry each, the
record steps 5-7 require for the commit (deploy/provenance.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.deploy import provenance
from pipelines.deploy.steps import EXIT_USAGE, Step, StepContext
from pipelines.releases import resolve
from pipelines.targets.base import Target, TargetError

ROOT = Path(__file__).resolve().parents[2]


def run_alone(
    make_step: Callable[[Target], Step],
    target_name: str = "local",
    ref: str = "HEAD",
    dry_run: bool = False,
    reports: str = "",
    root: Path = ROOT,
    options: dict[str, Any] | None = None,
) -> int:
    try:
        from pipelines.targets import get_target

        sha = resolve(ref, root)
        target = get_target(target_name)
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    step = make_step(target)
    ctx = StepContext(
        target=target,
        sha=sha,
        root=root,
        reports=root / "reports" / (reports or step.name.replace(".", "-")),
        dry_run=dry_run,
        options=options or {},
    )
    plan = step.plan(ctx)
    print(f"{step.name} (step {step.number}, {step.title}) for {sha[:12]} on {target_name}")
    print(f"  plan: {plan.summary}")
    for action in plan.actions:
        print(f"    - {action}")
    for blocker in plan.blockers:
        print(f"    ! {blocker}")
    if dry_run:
        return 0
    result = step.run(ctx)
    for line in result.evidence.get("details", ()):
        print(f"  {line}")
    for warning in result.warnings:
        print(f"  warn: {warning}")
    verdict = "ok" if result.ok else "FAILED"
    print(f"{step.name}: {verdict} in {result.duration_s:.1f} s: {result.summary}", flush=True)
    try:
        provenance.record(target.ledger(), sha, [(step, result)])
    except TargetError as exc:
        print(f"error: the ledger record of {step.name} failed: {exc}", file=sys.stderr)
        return step.exit_code  # without it, steps 5-7 refuse this commit
    return 0 if result.ok else step.exit_code


def _factories() -> dict[str, tuple[Callable[[Target, str], Step], str]]:
    """Each step that runs alone: how it is built (from the target and `--policy`), and the
    folder under reports/ it writes to. Imported when used, so `invoke --list` stays fast."""
    from pipelines.deploy.gates import CiGreenStep
    from pipelines.deploy.migrations.check import MigrationsStep
    from pipelines.deploy.notes.build import ReleaseNotesStep
    from pipelines.deploy.security.review import SecurityReviewStep

    return {
        "gates.ci": (lambda t, policy: CiGreenStep(), "gates"),
        "security.review": (
            lambda t, policy: SecurityReviewStep(policy or None, scan_if_missing=False),
            "security",
        ),
        "db.migrations": (lambda t, policy: MigrationsStep(), "migrations"),
        "release.notes": (lambda t, policy: ReleaseNotesStep(t.ledger()), "release-notes"),
    }


def run_step(
    name: str, target: str = "local", ref: str = "HEAD", dry_run: bool = False, policy: str = ""
) -> int:
    """`invoke gates.ci`, `security.review`, `db.migrations`, `release.notes`."""
    make, reports = _factories()[name]
    return run_alone(lambda t: make(t, policy), target, ref, dry_run, reports)
