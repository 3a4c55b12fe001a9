"""Deploy step 7: bake production under synthetic traffic and judge it against the SLOs,
the alarms, the error log and the ledger's p95 baseline (runbook sections 7 and 10).

A failed bake rolls the code back to the release that served before, keeps the pre-deploy
snapshot, and prints the exact restore command. Data is never restored automatically. Run
alone (`invoke deploy.verify`, a CI job of its own), the step reads what step 6 changed
from the ledger; a release the schema has moved past is refused by the target, which says
how to restore instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.deploy import provenance
from pipelines.deploy.report import TRAFFIC_FACT, record_server_metrics
from pipelines.deploy.rollout import ROLLOUT_ENTRY, record_marks
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.ledger import Ledger
from pipelines.targets.base import Environment, Observation, TargetError
from pipelines.traffic.synthetic import run_bake
from pipelines.traffic.timeline import per_second

REGRESSION = 0.20  # runbook section 10: p95 more than 20 % over the baseline...
CONSECUTIVE = 3  # ...for three consecutive deploys fails even under the SLO
BASELINE_DEPLOYS = 5
NOISE_FLOOR_S = 0.002  # below 2 ms of difference, a "regression" is measurement noise
ERROR_LOG_LINES = 5


@dataclass(frozen=True)
class Judgement:
    checks: dict[str, tuple[bool, str]]
    regression: bool
    streak: int
    baseline_s: float | None

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks.values())

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, (ok, detail) in self.checks.items() if not ok]


def baseline(history: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    """Median p95 of the last successful production deploys, and how many of the most recent
    ones in a row were regressions."""
    deploys = [e for e in history if e.get("ok") and e.get("p95_s") is not None]
    recent = [float(e["p95_s"]) for e in deploys[-BASELINE_DEPLOYS:]]
    streak = 0
    for entry in reversed(deploys):
        if not entry.get("p95_regression"):
            break
        streak += 1
    return (statistics.median(recent) if recent else None), streak


def judge(
    obs: Observation,
    slo_p95_s: float,
    slo_error_rate: float,
    history: Sequence[dict[str, Any]],
    error_log_limit: int = ERROR_LOG_LINES,
) -> Judgement:
    base, streak = baseline(history)
    p95 = obs.p95_s
    regression = bool(
        base is not None
        and p95 is not None
        and p95 > base * (1 + REGRESSION)
        and p95 - base > NOISE_FLOOR_S
    )
    streak = streak + 1 if regression else 0
    p95_text = f"{p95 * 1000:.1f} ms" if p95 is not None else "no traffic"
    checks = {
        "traffic": (obs.requests > 0, f"{obs.requests} requests in the window"),
        "p95": (p95 is not None and p95 < slo_p95_s, f"{p95_text} (SLO {slo_p95_s * 1000:g} ms)"),
        "error rate": (
            obs.error_rate < slo_error_rate,
            f"{obs.error_rate:.2%} of {obs.requests} (SLO {slo_error_rate:.2%})",
        ),
        "alarms": (
            not obs.alarms_in_alarm,
            ", ".join(obs.alarms_in_alarm) + " in ALARM"
            if obs.alarms_in_alarm
            else "none in ALARM",
        ),
        "error log": (
            obs.error_log_lines <= error_log_limit,
            f"{obs.error_log_lines} error lines (limit {error_log_limit})",
        ),
        "p95 trend": (
            streak < CONSECUTIVE,
            "no baseline yet"
            if base is None
            else f"{p95_text} vs baseline {base * 1000:.1f} ms; "
            f"{streak} consecutive regression(s) (fails at {CONSECUTIVE})",
        ),
    }
    return Judgement(checks, regression, streak, base)


class VerifyStep:
    number = 7
    exit_code = exit_code_for(7)
    reads_commit_only = False
    name = "deploy.verify"
    title = "Bake production under synthetic traffic and verify"
    env_name = "production"

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def bake_seconds(self, ctx: StepContext) -> float:
        env = ctx.target.environment(self.env_name)
        configured = ctx.options.get("bake_s")
        return float(configured) if configured else float(env.bake_window_s)

    def plan(self, ctx: StepContext) -> StepPlan:
        env = ctx.target.environment(self.env_name)
        base, streak = baseline(self.ledger.entries(self.env_name, "deploy"))
        base_text = f"{base * 1000:.1f} ms" if base is not None else "none yet"
        return StepPlan(
            f"bake {self.bake_seconds(ctx):g} s under synthetic traffic",
            (
                f"p95 < {env.spec.slo_latency_p95_seconds * 1000:g} ms, "
                f"error rate < {env.spec.slo_error_rate_percent:g} %, "
                f"no alarm in ALARM, <= {ERROR_LOG_LINES} error log lines",
                f"p95 within {REGRESSION:.0%} of the baseline ({base_text}); "
                f"{streak} regression(s) in a row so far",
                "on failure: roll the code back, keep the snapshot, print the restore command",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        refused = provenance.refused(ctx, self.ledger, started)
        if refused:
            return refused
        env = ctx.target.environment(self.env_name)
        since = min((e.at for e in ctx.events), default=time.time())
        try:
            return self._bake(ctx, env, since, started)
        finally:  # after a rollback too: the timeline shows the service recover
            record_server_metrics(ctx, env, since)

    def _bake(self, ctx: StepContext, env: Environment, since: float, started: float) -> StepResult:
        seconds = self.bake_seconds(ctx)
        assert ctx.release is not None
        try:
            email, password = env.smoke_credentials(ctx.release)
            ctx.event("bake_start", f"bake {seconds:g} s", self.env_name)
            load, cleanup = run_bake(env.url, email, password, seconds)
            ctx.event("bake_end", f"bake {seconds:g} s", self.env_name)
            ctx.facts[TRAFFIC_FACT] = [vars(s) for s in per_second(load.samples)]
            observation = env.observe(seconds + 1)
            self._alarm_events(ctx, env, since)
        except TargetError as exc:
            # Production could not be judged: the safe verdict is the release before.
            rollback = self._roll_back(ctx, env)
            return StepResult(
                False,
                f"bake could not be judged: {exc}. Code rolled back: {rollback}. "
                f"{self._restore_hint(ctx)}",
                {"rollback": rollback},
            ).timed(started)
        verdict = judge(
            observation,
            env.spec.slo_latency_p95_seconds,
            env.spec.slo_error_rate_percent / 100,
            self.ledger.entries(self.env_name, "deploy"),
        )
        ctx.facts["p95_s"] = observation.p95_s
        ctx.facts["p95_regression"] = verdict.regression
        ctx.facts["p95_baseline_s"] = verdict.baseline_s
        evidence: dict[str, Any] = {
            "bake_s": seconds,
            "observation": vars(observation) | {"error_rate": observation.error_rate},
            "synthetic": load.summary(),
            "cleanup": cleanup,
            "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in verdict.checks.items()},
            "baseline_p95_s": verdict.baseline_s,
            "regression_streak": verdict.streak,
        }
        if verdict.ok:
            warning = (
                (f"p95 regressed more than 20 % over the baseline ({verdict.streak} in a row)",)
                if verdict.regression
                else ()
            )
            return StepResult(
                True,
                f"bake passed: {verdict.checks['p95'][1]}, {verdict.checks['error rate'][1]}",
                evidence,
                warning,
            ).timed(started)
        evidence["rollback"] = self._roll_back(ctx, env)
        return StepResult(
            False,
            "bake failed: "
            + "; ".join(verdict.failures())
            + f". Code rolled back: {evidence['rollback']}. {self._restore_hint(ctx)}",
            evidence,
        ).timed(started)

    def _alarm_events(self, ctx: StepContext, env: Any, since: float) -> None:
        for change in env.operations.alarm_transitions(since):
            ctx.event("alarm", f"{change.alarm} -> {change.new}", self.env_name, change.at)

    def _step6(self, ctx: StepContext, current: str | None) -> dict[str, Any]:
        """What step 6 changed: from this process, else the ledger's newest rollout record
        of the release production runs now."""
        if "production_previous_release" in ctx.facts:
            return {
                "previous_release": ctx.facts["production_previous_release"],
                "restore_command": ctx.facts.get("restore_command"),
            }
        for entry in reversed(self.ledger.entries(self.env_name, ROLLOUT_ENTRY)):
            if entry.get("release") == current and entry.get("ok"):
                return dict(entry)
        return {}

    def _restore_hint(self, ctx: StepContext) -> str:
        restore = ctx.facts.get("restore_command") or "invoke backup.list --env production"
        return f"Data was not touched; if the schema must go back too: {restore}"

    def _roll_back(self, ctx: StepContext, env: Any) -> str:
        try:
            current = env.current_release()
            recorded = self._step6(ctx, current)
            if recorded.get("restore_command"):
                ctx.facts.setdefault("restore_command", recorded["restore_command"])
            if "previous_release" in recorded and recorded["previous_release"] is None:
                return f"nothing to roll back to: {current} is the first release production ran"
            # Without a record, the target's own history knows the release before.
            ctx.event(
                "rollback",
                f"bake failed: back to {recorded.get('previous_release')}",
                self.env_name,
            )
            result = env.rollback(recorded.get("previous_release"))
            record_marks(ctx, self.env_name, result)
        except TargetError as exc:
            return f"rollback FAILED: {exc}"
        previous = result.release
        return (
            f"back on {previous} ({result.state.value} in {result.duration_s:.1f} s)"
            if result.ok
            else f"rollback {result.state.value}: {result.reason}"
        )
