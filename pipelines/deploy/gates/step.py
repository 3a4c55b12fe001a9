"""Deploy step 1, CI green: accept a green gate record for the commit (record.py), or in
GitHub Actions the ci job's result, or, where asked (the local default), run the gates here.

In GitHub Actions the deploy workflow downloads the record its `ci` job wrote; if it is
missing there, the job's own result may stand in for it (`github_ci_result`).

The local target accepts a record of the gates without the end-to-end tests, and runs them
that way; AWS needs a record with them (record.py), unless the deploy asks for them anyway
(`invoke deploy --e2e`, the `e2e_gates` option).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.deploy.gates.commands import Gate
from pipelines.deploy.gates.record import (
    DirtyTreeError,
    Verdict,
    check,
    head_sha,
    ran_e2e,
    record_path,
    verify_record,
)
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for

# Set by the deploy workflow from `needs.ci.result`; see .github/workflows/deploy.yml.
CI_RESULT_ENV = "DRYDOCK_CI_RESULT"


def github_ci_result(sha: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """In GitHub Actions, the deploy workflow's `ci` job (`needs: ci`) gates the commit the
    workflow runs for; its result is passed in CI_RESULT_ENV. Only that exact sha counts."""
    if environ.get("GITHUB_ACTIONS") != "true" or environ.get("GITHUB_SHA") != sha:
        return None
    if environ.get(CI_RESULT_ENV) != "success":
        return None
    run = environ.get("GITHUB_RUN_ID", "?")
    return f"GitHub Actions run {run}: the ci job passed for {sha[:12]}"


class CiGreenStep:
    number = 1
    name = "gates.ci"
    title = "CI green"
    exit_code = exit_code_for(1)
    reads_commit_only = True

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        run_if_missing: bool = False,
        gates: Sequence[Gate] | None = None,
        coverage: int = 90,
    ) -> None:
        self.environ = environ
        # DESIGN's "or run the gates": off by default, since it runs the whole suite.
        self.run_if_missing = run_if_missing
        self.gates = gates
        self.coverage = coverage

    def _runs_gates(self, ctx: StepContext) -> bool:
        return self.run_if_missing or bool(ctx.options.get("run_gates"))

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @staticmethod
    def needs_e2e(ctx: StepContext) -> bool:
        asked = ctx.options.get("e2e_gates")
        return bool(asked) if asked is not None else getattr(ctx.target, "name", "") != "local"

    def _verify(self, ctx: StepContext) -> Verdict:
        return verify_record(
            ctx.root, ctx.sha, self.coverage, self._environ(), need_e2e=self.needs_e2e(ctx)
        )

    def _decide(self, ctx: StepContext) -> tuple[Verdict, str | None]:
        verdict = self._verify(ctx)
        from_ci = None if verdict.ok else github_ci_result(ctx.sha, self._environ())
        return verdict, from_ci

    def plan(self, ctx: StepContext) -> StepPlan:
        verdict, from_ci = self._decide(ctx)
        if verdict.ok:
            return StepPlan(verdict.reason, ("accept the record",))
        if from_ci:
            return StepPlan(f"{verdict.reason}; accepting {from_ci}", ("accept the CI result",))
        if self._runs_gates(ctx):
            which = "" if self.needs_e2e(ctx) else ", without the end-to-end tests"
            return StepPlan(
                verdict.reason, (f"run the gates (invoke check) on this checkout{which}",)
            )
        return StepPlan(
            verdict.reason,
            blockers=(f"{verdict.reason}: run `invoke check` on a clean checkout of {ctx.sha}",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        verdict, from_ci = self._decide(ctx)
        if not verdict.ok and not from_ci and self._runs_gates(ctx):
            refused = self._run_gates(ctx)
            if refused:
                return StepResult(False, refused).timed(started)
            verdict = self._verify(ctx)
        recorded_sha = verdict.reused_from or ctx.sha
        evidence: dict[str, Any] = {"record": str(record_path(ctx.root, recorded_sha))}
        if verdict.record is not None:
            fields = ("green", "coverage_percent", "finished", "host", "content_key")
            evidence.update({k: verdict.record.get(k) for k in fields})
            evidence["e2e"] = ran_e2e(verdict.record)
        if verdict.reused_from:
            evidence["reused_from"] = verdict.reused_from
        ctx.facts["gates"] = evidence
        if verdict.ok:
            record = verdict.record or {}
            without = "" if ran_e2e(record) else " (without the end-to-end tests)"
            summary = (
                f"{verdict.reason}{without}: coverage {record.get('coverage_percent')} %, "
                f"finished {record.get('finished')} on {record.get('host')}"
            )
            return StepResult(True, summary, evidence, verdict.warnings).timed(started)
        if from_ci:
            evidence["accepted"] = from_ci
            return StepResult(True, f"accepted {from_ci}", evidence, (verdict.reason,)).timed(
                started
            )
        return StepResult(
            False,
            f"{verdict.reason}; run `invoke check` on a clean checkout of {ctx.sha} first",
            evidence,
        ).timed(started)

    def _run_gates(self, ctx: StepContext) -> str | None:
        """Run `check` for the release's sha (a progress line, not pytest's own output, while
        the steps beside it print too); the reason it cannot, if it cannot."""
        head = head_sha(ctx.root)
        if head != ctx.sha:
            return f"the checkout is at {head[:12]}, not {ctx.sha[:12]}: check out {ctx.sha} first"
        try:
            check(ctx.root, self.coverage, self.gates, e2e=self.needs_e2e(ctx))
        except DirtyTreeError as exc:
            return f"cannot run the gates: {exc}"
        return None
