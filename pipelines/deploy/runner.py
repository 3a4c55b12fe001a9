"""`invoke deploy`: the runbook's seven steps, planned, then run under the environments'
locks, with every outcome recorded in a report and the ledger.

    1 CI green            2 security review      3 migrations        4 release notes
    5 staging + smoke     6 production           7 verify (bake)

Steps 1-4 only read the commit, so they run together; step 5 starts once all four passed.
The other steps run one after the other. A failed step stops the deploy; when several of
1-4 fail, the first in step order names the failure. The exit code is 10 + that step's
number (see steps.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import releases
from pipelines.deploy import provenance
from pipelines.deploy.report import html_path, write_report
from pipelines.deploy.steps import (
    EXIT_LOCKED,
    EXIT_USAGE,
    Step,
    StepContext,
    StepResult,
    exit_code_for,
)
from pipelines.host.ports import drawing_from, pipeline_and_tests_ranges
from pipelines.ledger import Ledger
from pipelines.lock import LeaseLost, LockHeld
from pipelines.targets import get_target
from pipelines.targets.base import ENVIRONMENTS, Target, TargetError

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DeployOptions:
    target: str = "local"
    release: str | None = None  # a git ref locally, an image URI on AWS
    dry_run: bool = False
    assume_yes: bool = False
    bake_s: float | None = None
    # Step 1 without a green record for the sha: run the gates here. The local default, so
    # one command releases a fresh checkout; on AWS the record must come from CI.
    run_gates: bool | None = None
    # Step 1 with the end-to-end tests: always on AWS; locally when asked (`--e2e`).
    e2e_gates: bool | None = None
    reports: Path = ROOT / "reports" / "deploys"


def build_steps(ledger: Ledger) -> list[Step]:
    from pipelines.deploy.gates import CiGreenStep
    from pipelines.deploy.migrations.check import MigrationsStep
    from pipelines.deploy.notes.build import ReleaseNotesStep
    from pipelines.deploy.rollout import ProductionStep, StagingStep
    from pipelines.deploy.security.review import SecurityReviewStep
    from pipelines.deploy.verify import VerifyStep

    return [
        CiGreenStep(),
        SecurityReviewStep(),
        MigrationsStep(),
        ReleaseNotesStep(ledger),
        StagingStep(ledger),
        ProductionStep(ledger),
        VerifyStep(ledger),
    ]


@contextlib.contextmanager
def locks(target: Target, names: Sequence[str], purpose: str) -> Iterator[Callable[[], None]]:
    """Every environment the run touches, always taken in the same order. Yields the check
    that raises LeaseLost once any of them is no longer ours."""
    with contextlib.ExitStack() as stack:
        held = [
            stack.enter_context(target.lock(name, purpose))
            for name in sorted(names, key=ENVIRONMENTS.index)
        ]

        def check() -> None:
            for holding in held:
                holding.check()

        yield check


def context(options: DeployOptions) -> tuple[StepContext, Ledger]:
    sha = releases.resolve(
        options.release if options.target == "local" and options.release else "HEAD"
    )
    target = get_target(options.target)
    deploy_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{sha[:8]}"
    reports = options.reports / deploy_id
    ctx = StepContext(
        target=target,
        sha=sha,
        root=ROOT,
        reports=reports,
        dry_run=options.dry_run,
        assume_yes=options.assume_yes,
        deploy_id=deploy_id,
        options={
            "bake_s": options.bake_s,
            "run_gates": options.target == "local"
            if options.run_gates is None
            else options.run_gates,
            "e2e_gates": options.e2e_gates,
        },
    )
    ctx.release = target.release(options.release, sha)
    return ctx, target.ledger()


def run(options: DeployOptions, only: str | None = None) -> int:
    """The whole pipeline, or with `only` one step by its task name (e.g. deploy.verify)."""
    try:
        ctx, ledger = context(options)
    except TargetError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    steps = [s for s in build_steps(ledger) if only is None or s.name == only]
    return execute(ctx, ledger, steps, only)


def execute(
    ctx: StepContext, ledger: Ledger, steps: Sequence[Step], only: str | None = None
) -> int:
    """Plan, then run `steps` in order under the locks of the environments they touch."""
    assert ctx.release is not None
    dry = " [dry run]" if ctx.dry_run else ""
    print(
        f"deploy {ctx.deploy_id}: release {ctx.release.id} ({ctx.sha[:12]}) "
        f"on target {getattr(ctx.target, 'name', '?')}{dry}",
        flush=True,
    )
    plans = {}
    for step in steps:
        plans[step.number] = step.plan(ctx)
        plan = plans[step.number]
        print(f"  plan {step.number}. {step.title}: {plan.summary}")
        for action in plan.actions:
            print(f"         - {action}")
        for blocker in plan.blockers:
            print(f"         ! {blocker}")
    if ctx.dry_run:
        path = write_report(ctx, plans, {}, ok=None, started=time.time())
        print(f"dry run: nothing was changed. Plan written to {path}")
        return 0
    touched = sorted(
        {str(getattr(step, "env_name", "")) for step in steps} - {""}, key=ENVIRONMENTS.index
    )
    started = time.time()
    results: dict[int, StepResult] = {}
    failed: Step | None = None
    try:
        with locks(ctx.target, touched, f"deploy {ctx.deploy_id}") as check:
            ctx.check_locks = check
            for group in step_groups(steps):
                group_results = run_group(group, ctx)
                results.update(group_results)
                provenance.record(ledger, ctx.sha, ((s, group_results[s.number]) for s in group))
                failed = next((s for s in group if not group_results[s.number].ok), None)
                if failed is not None:
                    break
    except LockHeld as exc:
        print(
            f"deploy refused: {exc}. Wait for it to finish, or if that process is gone the "
            "next run breaks the stale lock by itself.",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    ok = failed is None
    path = write_report(ctx, plans, results, ok=ok, started=started)
    _record(ledger, ctx, results, ok, failed, only)
    took = time.time() - started
    if ok:
        print(
            f"\nDEPLOY OK in {took:.0f} s: {ctx.release.id} "
            f"{'is live in production' if only is None else 'step ' + str(only) + ' passed'}."
            f" Report: {path}\nTimeline: {html_path(path)}"
        )
        return 0
    assert failed is not None
    also = [str(n) for n, r in sorted(results.items()) if not r.ok and n != failed.number]
    print(
        f"\nDEPLOY FAILED at step {failed.number} ({failed.title}) after {took:.0f} s: "
        f"{results[failed.number].summary}"
        + (f"\nAlso failed: step {', '.join(also)} (see the report)" if also else "")
        + f"\nReport: {path}\nTimeline: {html_path(path)}",
        file=sys.stderr,
    )
    return exit_code_for(failed.number)


def _record(
    ledger: Ledger,
    ctx: StepContext,
    results: dict[int, StepResult],
    ok: bool,
    failed: Step | None,
    only: str | None,
) -> None:
    assert ctx.release is not None
    fields: dict[str, Any] = {
        "deploy_id": ctx.deploy_id,
        "release": ctx.release.id,
        "sha": ctx.sha,
        "ok": ok,
        "failed_step": failed.number if failed else None,
        "only": only,
        "artifact": ctx.release.artifact,
        "artifact_commit": ctx.facts.get("artifact_commit"),
        "steps": {
            n: {"ok": r.ok, "summary": r.summary, "duration_s": r.duration_s}
            for n, r in results.items()
        },
    }
    if 7 in results:
        fields["p95_s"] = ctx.facts.get("p95_s")
        fields["p95_regression"] = ctx.facts.get("p95_regression")
        fields["p95_baseline_s"] = ctx.facts.get("p95_baseline_s")
    if 6 in results or 7 in results:
        ledger.append("deploy", "production", **fields)
    if 5 in results:
        ledger.append("deploy", "staging", **{**fields, "ok": results[5].ok})


def step_groups(steps: Sequence[Step]) -> list[list[Step]]:
    """The leading steps that only read the commit form one group, run together; every
    later step is a group of its own, run after the one before it passed."""
    lead: list[Step] = []
    for step in steps:
        if not getattr(step, "reads_commit_only", False):
            break
        lead.append(step)
    rest = [[step] for step in steps[len(lead) :]]
    return [lead, *rest] if lead else rest


def run_group(group: Sequence[Step], ctx: StepContext) -> dict[int, StepResult]:
    """Run the group's steps, together when there are several, and print their results in
    step order once all have ended."""
    numbers = f"{group[0].number}-{group[-1].number}"
    if len(group) == 1:
        print(f"[{group[0].number}/7] {group[0].title} ...", flush=True)
        results = {group[0].number: run_step(group[0], ctx)}
    else:
        titles = "; ".join(f"{step.number}. {step.title}" for step in group)
        print(f"[{numbers}/7] together: {titles} ...", flush=True)
        # The tests step 1 may run draw ports from their own part of the range.
        with (
            drawing_from(pipeline_and_tests_ranges()[0]),
            ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="step") as pool,
        ):
            futures = {step.number: pool.submit(run_step, step, ctx) for step in group}
            results = {number: future.result() for number, future in futures.items()}
    for step in group:
        result = results[step.number]
        mark = "ok  " if result.ok else "FAIL"
        prefix = f"      {step.number}. " if len(group) > 1 else "      "
        print(f"{prefix}{mark} {result.duration_s:6.1f} s  {result.summary}", flush=True)
        for warning in result.warnings:
            print(f"{' ' * len(prefix)}warn {warning}")
    return results


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """A step's run; a TargetError it lets through ends it as failed, like any failure, so
    the report and the ledger entry are written and the deploy stops there. A step that
    changes an environment starts only while the run's locks are still its own."""
    started = time.monotonic()
    try:
        if not getattr(step, "reads_commit_only", False):
            ctx.check_locks()
        return step.run(ctx)
    except TargetError as exc:
        return StepResult(False, f"{step.title}: {exc}").timed(started)
    except LeaseLost as exc:
        return StepResult(False, f"{step.title}: stopped: {exc}").timed(started)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def main(
    only: str | None,
    target: str = "local",
    release: str = "",
    dry_run: bool = False,
    yes: bool = False,
    bake: float = 0,
    e2e: bool = False,
) -> int:
    """`invoke deploy` and its steps 5-7 alone (`only`: deploy.staging, .production, .verify)."""
    options = DeployOptions(
        target=target,
        release=release or None,
        dry_run=dry_run,
        assume_yes=yes,
        bake_s=bake or None,
        e2e_gates=True if e2e else None,
    )
    return run(options, only=only)
