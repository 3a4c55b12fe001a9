"""A bad release deployed the way `invoke deploy` deploys production: deploy step 6 (a
verified pre-deploy snapshot, migrations, then the environment's rollout strategy: the
canary's stages, or every replica at once) and, if that lets it through, step 7 (the bake
under synthetic traffic, judged against the SLOs and the alarms, and a rollback to the
release before when it fails). The steps themselves run, under the environment's lock, not a
copy of them: the game day scores whether the pipeline catches a release that turns ready
and then fails. Their deploy report (JSON, Markdown, the HTML timeline) is written as well."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.deploy.report import write_report
from pipelines.deploy.rollout import ProductionStep
from pipelines.deploy.runner import locks, run_step
from pipelines.deploy.steps import Event, Step, StepContext, StepResult
from pipelines.deploy.verify import VerifyStep
from pipelines.gameday import bad_release
from pipelines.lock import LockHeld
from pipelines.releases import ROOT
from pipelines.targets.base import Environment, Target, TargetError

# The moments the pipeline decided the release was bad: the canary judged a stage and
# aborted, or the bake failed (or a circuit breaker tripped) and the rollback began.
DECISIONS = ("canary_abort", "rollback")


def steps(target: Target, env_name: str) -> list[Step]:
    """Steps 6 and 7, pointed at `env_name` (a game day may run on staging too)."""
    ledger = target.ledger()
    production, verify = ProductionStep(ledger), VerifyStep(ledger)
    production.env_name = verify.env_name = env_name
    return [production, verify]


def decided_at(events: Sequence[Event], after: float) -> float | None:
    return min((e.at for e in events if e.kind in DECISIONS and e.at >= after), default=None)


def deploy(env: Environment, target: Target, kind: str, reports: Path, step: dict[str, Any]) -> str:
    """Deploy the bad release `kind` through steps 6 and 7. `step` gets when the pipeline
    refused it (`failed_at`, `error`), the deploy report's path, and a `problem` when it let
    the release through or did not leave the release before serving."""
    previous = env.current_release()
    if previous is None:
        raise TargetError(f"{env.name} runs no release yet: nothing to roll back to")
    sha = bad_release.commit(bad_release.KINDS[kind])
    started = time.time()
    ctx = StepContext(
        target=target,
        sha=sha,
        root=ROOT,
        reports=reports / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}-{kind}",
        release=target.release(sha, sha),
        deploy_id=f"gameday-{kind}-{sha[:8]}",
    )
    assert ctx.release is not None
    chosen = steps(target, env.name)
    plans = {s.number: s.plan(ctx) for s in chosen}
    results: dict[int, StepResult] = {}
    try:
        with locks(target, [env.name], f"game day {kind}") as check:
            ctx.check_locks = check
            for each in chosen:
                results[each.number] = run_step(each, ctx)
                if not results[each.number].ok:
                    break
    except LockHeld as exc:
        raise TargetError(f"{env.name} is locked: {exc}; run the game day after it") from None
    finished = time.time()
    ok = all(r.ok for r in results.values())
    step["report"] = str(write_report(ctx, plans, results, ok=ok, started=started))
    failed = next((n for n, r in sorted(results.items()) if not r.ok), None)
    if failed is None:
        step["problem"] = (
            f"{ctx.release.id} went through steps 6 and 7 although every order it takes fails"
        )
        return f"deployed {ctx.release.id}: steps 6 and 7 passed it"
    if not ctx.events:  # refused before it changed anything (provenance, the snapshot)
        raise TargetError(f"the bad release was never deployed: {results[failed].summary}")
    step["failed_at"] = decided_at(ctx.events, started) or finished
    step["error"] = results[failed].summary
    now = env.current_release()
    if now != previous:
        step["problem"] = f"{env.name} runs {now} after the deploy failed, not {previous}"
    return f"deployed {ctx.release.id}: step {failed} failed: {results[failed].summary}"
