"""The canary's stage loop in deploy step 6: start the release beside the stable replicas,
then for each share of the traffic hold the stage, judge it against the baseline over the
same window, and either go on to the next share or abort.

Written once for every target: the target shifts the traffic (Caddy's share file locally,
ECS's own canary on AWS) and says what each side served; the judgement is `judge.compare`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines.deploy.canary.judge import MIN_REQUESTS, compare
from pipelines.deploy.steps import StepContext
from pipelines.targets.base import Canary, CanaryWindow, Environment, Release, TargetError

MAX_EXTENSIONS = 2  # a stage holds for at most three windows


@dataclass
class CanaryOutcome:
    ok: bool
    stages: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    aborted_at: int | None = None  # the share whose stage failed
    action: str = ""  # what the abort did

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": "promoted" if self.ok else f"aborted at {self.aborted_at} %",
            "reason": self.reason,
            "action": self.action,
            "stages": self.stages,
        }

    def summary(self) -> str:
        shares = ", ".join(f"{s['share_percent']} %" for s in self.stages)
        if self.ok:
            return f"canary promoted through {shares}"
        if self.aborted_at is None:
            return f"canary not started: {self.reason}"
        return f"canary aborted at {self.aborted_at} %: {self.reason}"


def abort(canary: Canary, reason: str) -> str:
    """What the abort did; when it could not act, that, so that the step's failure keeps the
    reason it aborted for and says the traffic may still be on the canary."""
    try:
        return canary.abort(reason)
    except TargetError as exc:
        return (
            f"the abort failed: {exc}; the canary may still take traffic: see "
            "`invoke env.status` and roll back by hand"
        )


def run_stages(
    ctx: StepContext,
    env: Environment,
    release: Release,
    start_timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryOutcome:
    """TargetError from `start` leaves nothing running and no traffic moved."""
    canary = env.canary
    canary.start(release, start_timeout_s)
    outcome = CanaryOutcome(ok=True)
    window_end: float | None = None
    previous: CanaryWindow | None = None
    for share in canary.steps:
        ctx.check_locks()
        try:
            in_force = canary.shift(share)
        except TargetError as exc:  # the platform stopped the deployment itself (an alarm)
            outcome.ok, outcome.aborted_at, outcome.reason = False, share, str(exc)
            outcome.action = abort(canary, outcome.reason)
            ctx.event("canary_abort", f"canary {share} %: {exc}", env=env.name)
            return outcome
        shifted = time.time()
        ctx.event("canary_stage", f"canary {share} %", env=env.name, at=shifted)
        end, extensions = shifted, 0
        while True:
            end += canary.step_seconds
            sleep(max(0.0, end - time.time()))
            window = canary.window(share, shifted, end)
            baseline_from = "this stage"
            if window.baseline.requests < MIN_REQUESTS and previous is not None:
                # At 100 % the baseline serves nothing: the canary is held to what it served
                # in the stage before, the most recent baseline there is.
                window = replace(window, baseline=previous.baseline)
                baseline_from = f"the {previous.share} % stage"
            comparison = compare(window)
            # Evidence that leans against the canary without being significant yet (a
            # quiet first stage sees few failures) holds the stage for another window.
            if not comparison.leaning or extensions >= MAX_EXTENSIONS:
                break
            extensions += 1
        previous = window
        stage = {
            **comparison.as_dict(),
            "baseline_from": baseline_from,
            "extensions": extensions,
            "share_in_force_percent": round(in_force, 2),
            "started_at": shifted,
            # From the end of the previous stage's window to this stage's weights: the
            # judgement plus the shift, what a stage costs beyond its window.
            "overhead_s": round(shifted - window_end, 3) if window_end is not None else None,
        }
        outcome.stages.append(stage)
        window_end = end
        if not comparison.ok:
            outcome.ok, outcome.aborted_at = False, share
            outcome.reason = "; ".join(comparison.failures())
            # The abort's first act is to send all traffic back to the stable replicas.
            stage["abort_after_s"] = round(time.time() - end, 3)
            outcome.action = abort(canary, outcome.reason)
            ctx.event("canary_abort", f"canary {share} %: {outcome.reason}", env=env.name)
            return outcome
        ctx.event("canary_promote", f"canary {share} % passed", env=env.name)
    return outcome
