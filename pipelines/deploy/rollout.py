"""Deploy steps 5 and 6: staging (snapshot, migrate, roll out, smoke) and production
(verified pre-deploy snapshot, migrate, health-gated rollout of the same artifact)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from pipelines.deploy import provenance
from pipelines.deploy.canary.delivery import canary_rollout
from pipelines.deploy.canary.report import add_to_release_notes
from pipelines.deploy.report import record_server_metrics
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.ledger import Ledger
from pipelines.targets.base import Environment, RolloutResult, TargetError
from pipelines.traffic.smoke import run_smoke


def _environment(ctx: StepContext, name: str) -> Environment:
    return ctx.target.environment(name)


def _describe_plan(
    ctx: StepContext, env_name: str, before: tuple[str, ...], after: tuple[str, ...] = ()
) -> StepPlan:
    env = _environment(ctx, env_name)
    release = ctx.release
    current = None
    with contextlib.suppress(TargetError):  # a target that is not up has no release yet
        current = env.current_release()
    target = release.id if release else "(release not built)"
    actions = (
        f"bring {env_name} up if it is not running",
        *before,
        f"migrate {env_name} to the release's head",
        f"roll out {target} over {current or 'nothing'}, gated by readiness",
        *after,
    )
    return StepPlan(f"{env_name}: {current or 'empty'} -> {target}", actions)


def _prepare(ctx: StepContext, env: Environment, verify: bool) -> dict[str, Any]:
    """Up, snapshot, migrate: the common head of steps 5 and 6. Each change starts only
    while the run still holds the environment's lock."""
    assert ctx.release is not None
    evidence: dict[str, Any] = {}
    env.up(bootstrap=False)
    ctx.check_locks()
    snapshot = env.snapshot(
        "pre-deploy", reason=f"before {ctx.release.id}", deploy_id=ctx.deploy_id
    )
    evidence["snapshot"] = snapshot
    ctx.event("snapshot", f"pre-deploy snapshot {snapshot['id']}", env.name)
    if verify:
        evidence["snapshot_verified"] = env.verify_snapshot(str(snapshot["id"]))
    ctx.check_locks()
    migrated = env.migrate(ctx.release)
    evidence["migrations"] = {"current": migrated.current, "head": migrated.head}
    ctx.event("migration", f"schema at {migrated.current} (head {migrated.head})", env.name)
    return evidence


def record_marks(ctx: StepContext, env_name: str, rollout: RolloutResult) -> None:
    """The rollout's own timestamps (each replica started, ready, drained; a circuit breaker's
    rollback) as the run's events."""
    for mark in rollout.marks:
        ctx.event(str(mark["kind"]), str(mark["label"]), env_name, float(mark["at"]))


class StagingStep:
    number = 5
    exit_code = exit_code_for(5)
    reads_commit_only = False
    name = "deploy.staging"
    title = "Deploy to staging and run the smoke suite"
    env_name = "staging"

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger

    def plan(self, ctx: StepContext) -> StepPlan:
        return _describe_plan(
            ctx,
            self.env_name,
            ("take a pre-deploy snapshot",),
            ("run the smoke suite (auth, inventory, orders)",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        refused = provenance.refused(ctx, self.ledger or ctx.target.ledger(), started)
        if refused:
            return refused
        env = _environment(ctx, self.env_name)
        assert ctx.release is not None
        try:
            evidence = _prepare(ctx, env, verify=False)
            ctx.check_locks()
            rollout = env.rollout(ctx.release, ctx.options.get("rollout_deadline_s"))
        except TargetError as exc:
            return StepResult(False, f"staging: {exc}").timed(started)
        record_marks(ctx, self.env_name, rollout)
        evidence["rollout"] = {
            "state": rollout.state.value,
            "reason": rollout.reason,
            "duration_s": round(rollout.duration_s, 2),
            "events": list(rollout.events),
        }
        if not rollout.ok:
            return StepResult(
                False, f"staging rollout {rollout.state.value}: {rollout.reason}", evidence
            ).timed(started)
        email, password = env.smoke_credentials(ctx.release)
        smoke = run_smoke(env.url, email, password)
        evidence["smoke"] = smoke.as_dict()
        ctx.facts["staging_snapshot"] = evidence["snapshot"]["id"]
        return StepResult(
            smoke.ok, f"staging runs {ctx.release.id}; {smoke.summary()}", evidence
        ).timed(started)


ROLLOUT_ENTRY = "rollout"  # the ledger's record of what step 6 changed, for step 7 alone


def _strategy(
    ctx: StepContext, env: Environment, previous: str | None, evidence: dict[str, Any]
) -> str:
    """The spec's strategy (or the run's option), unless a canary has nothing to compare with:
    the first release has no baseline, and after a contract the release before cannot serve
    on the migrated schema, so only a rollout at once helps (said in `canary_skipped`)."""
    strategy = str(ctx.options.get("rollout_strategy") or env.spec.rollout_strategy)
    if strategy != "canary":
        return strategy
    if previous is None:
        return "rolling"
    schema = env.operations.migration_status()
    if schema.compatible:
        return strategy
    why = schema.reason or f"schema at {schema.current}"
    evidence["canary_skipped"] = (
        f"{previous} cannot serve on the migrated schema ({why}); rolled out at once"
    )
    return "rolling"


class ProductionStep:
    """Step 6. What it changed (the release before, the snapshot, the restore command) is
    written to the ledger as soon as the rollout ends, so step 7 in another process, as CI
    runs it, rolls back to the right release."""

    number = 6
    exit_code = exit_code_for(6)
    reads_commit_only = False
    name = "deploy.production"
    title = "Promote the same artifact to production"
    env_name = "production"

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger

    def plan(self, ctx: StepContext) -> StepPlan:
        return _describe_plan(
            ctx,
            self.env_name,
            (
                "take a pre-deploy snapshot and verify it (exists, non-empty, checksum, "
                "pg_restore --list)",
            ),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        refused = provenance.refused(ctx, self.ledger or ctx.target.ledger(), started)
        if refused:
            return refused
        env = _environment(ctx, self.env_name)
        since = min((e.at for e in ctx.events), default=time.time())
        try:
            return self._promote(ctx, env, started)
        finally:  # step 7 reads them again over its bake; a deploy that stops here has these
            record_server_metrics(ctx, env, since)

    def _promote(self, ctx: StepContext, env: Environment, started: float) -> StepResult:
        assert ctx.release is not None
        try:
            evidence = _prepare(ctx, env, verify=True)
        except TargetError as exc:
            return StepResult(False, f"production: {exc}; nothing was rolled out").timed(started)
        ctx.facts["production_snapshot"] = evidence["snapshot"]["id"]
        ctx.facts["restore_command"] = env.restore_command(str(evidence["snapshot"]["id"]))
        previous = env.current_release()
        ctx.facts["production_previous_release"] = previous
        ctx.check_locks()
        deadline = ctx.options.get("rollout_deadline_s")
        evidence["strategy"] = strategy = _strategy(ctx, env, previous, evidence)
        if strategy == "canary":
            canary = canary_rollout(ctx, env, ctx.release, deadline)
            evidence["canary"] = canary.outcome.as_dict()
            add_to_release_notes(ctx.reports, evidence["canary"])
            rollout = canary.rollout
        else:
            rollout = env.rollout(ctx.release, deadline)
        record_marks(ctx, self.env_name, rollout)
        (self.ledger or ctx.target.ledger()).append(
            ROLLOUT_ENTRY,
            self.env_name,
            deploy_id=ctx.deploy_id,
            release=ctx.release.id,
            previous_release=previous,
            snapshot=ctx.facts["production_snapshot"],
            restore_command=ctx.facts["restore_command"],
            schema=evidence["migrations"],
            ok=rollout.ok,
            state=rollout.state.value,
        )
        evidence["rollout"] = {
            "state": rollout.state.value,
            "reason": rollout.reason,
            "previous": previous,
            "duration_s": round(rollout.duration_s, 2),
            "events": list(rollout.events),
        }
        if not rollout.ok:
            keeps = f"; {previous} keeps serving" if previous else ""
            return StepResult(
                False,
                f"production rollout {rollout.state.value}: {rollout.reason}{keeps}",
                evidence,
            ).timed(started)
        through = f"; {canary.outcome.summary()}" if "canary" in evidence else ""
        return StepResult(
            True,
            f"production runs {ctx.release.id} (rollout {rollout.duration_s:.1f} s{through})",
            evidence,
        ).timed(started)
