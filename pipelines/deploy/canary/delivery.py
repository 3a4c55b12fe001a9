"""Step 6's canary path: the stages under synthetic traffic (so that every stage has
requests to judge even when production is quiet), then the promotion, or the abort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.deploy.canary.stages import CanaryOutcome, run_stages
from pipelines.deploy.steps import StepContext
from pipelines.targets.base import (
    Environment,
    Release,
    RolloutResult,
    RolloutState,
    TargetError,
)
from pipelines.traffic import synthetic

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CanaryRollout:
    outcome: CanaryOutcome
    rollout: RolloutResult


def canary_rollout(
    ctx: StepContext, env: Environment, release: Release, deadline_s: Any
) -> CanaryRollout:
    """The stages, then every replica onto the release; an aborted canary is a rollout that
    rolled back, with the comparison as its reason."""
    # The pair starts beside a serving fleet, on a machine busy with it: never less time
    # than START_TIMEOUT_S to turn ready.
    timeout = max(float(deadline_s or 0), START_TIMEOUT_S)
    seconds = len(env.canary.steps) * env.canary.step_seconds + timeout + 60
    email, password = env.smoke_credentials(release)
    fixture = synthetic.prepare(env.url, email, password)
    load = synthetic.traffic(env.url, fixture, seconds)
    try:
        outcome = run_stages(ctx, env, release, timeout)
    except TargetError as exc:  # the canary never turned ready: it took no traffic
        outcome = CanaryOutcome(ok=False, reason=str(exc), action="no traffic was moved")
        ctx.event("canary_abort", f"canary not started: {exc}", env=env.name)
    finally:
        load.stop()
        synthetic.cleanup(env.url, fixture)
    if not outcome.ok:
        return CanaryRollout(
            outcome,
            RolloutResult(
                RolloutState.ROLLED_BACK,
                release.id,
                env.current_release(),
                f"{outcome.summary()}; {outcome.action}",
                sum(float(s["window_s"]) for s in outcome.stages),
                tuple(f"canary {s['share_percent']} %: {s['verdict']}" for s in outcome.stages),
            ),
        )
    result = env.canary.promote(release, timeout)
    ctx.event("canary_promote", f"{release.id} on every replica", env=env.name)
    return CanaryRollout(outcome, result)
