"""A scenario's score: detection, recovery, failed requests (expected or not), acknowledged
orders lost, and the verdict against the scenario's budget, with the reasons it failed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.gameday.scenarios import Scenario
from pipelines.gameday.watch import SECURITY_PREFIX, Look
from pipelines.targets.base import AlarmTransition
from pipelines.traffic.loadgen import Sample


@dataclass
class Score:
    scenario: str
    fault_detail: str
    fault_at: float
    healed_at: float
    detection_s: float | None
    recovery_s: float | None
    requests: int
    failed_expected: int
    failed_unexpected: int
    acknowledged_orders: int
    orders_lost: int
    reasons: list[str] = field(default_factory=list)
    skipped: str = ""  # why the fault could not be made here; a skip neither passes nor fails

    @property
    def passed(self) -> bool:
        return not self.reasons


def detected_at(
    scenario: Scenario,
    fault_at: float,
    before: Look | None,
    looks: Sequence[Look],
    transitions: Sequence[AlarmTransition],
    step: Mapping[str, Any] | None = None,
) -> float | None:
    """When the environment showed the fault, by the scenario's own measure. `step` is what
    the scenario's step recorded: when it failed (`failed_at`)."""
    after = [look for look in looks if look.at >= fault_at]
    failed_at = (step or {}).get("failed_at")
    if scenario.detect == "step":
        return None if failed_at is None else float(failed_at)
    if scenario.detect == "step_or_alarm":
        # Whichever came first: the pipeline refusing the release, or an SLO alarm.
        alarm = min(
            (
                t.at
                for t in transitions
                if t.new == "ALARM" and t.at >= fault_at and not t.alarm.startswith(SECURITY_PREFIX)
            ),
            default=None,
        )
        return min((float(at) for at in (failed_at, alarm) if at is not None), default=None)
    if scenario.detect.startswith("alarm:"):
        name = scenario.detect.removeprefix("alarm:")
        hits = [t.at for t in transitions if t.alarm == name and t.new == "ALARM"]
        return min((at for at in hits if at >= fault_at), default=None)
    baseline = set(before.replicas) if before else set()
    for look in after:
        # Down, or already back under a new pid: a restart faster than the probe still counts.
        restarted = before is not None and look.pid(scenario.detect) != before.pid(scenario.detect)
        if scenario.detect == "load_balancer" and (not look.load_balancer or restarted):
            return look.at
        if scenario.detect == "database" and (
            not look.database or restarted or look.ready < look.wanted
        ):
            return look.at
        if scenario.detect == "replica" and (
            look.ready < look.wanted
            or any(h != "ready" for _, _, h in look.replicas)
            or {(s, p) for s, p, _ in look.replicas} != {(s, p) for s, p, _ in baseline}
        ):
            return look.at
    return None


def recovered_at(looks: Sequence[Look], not_before: float) -> float | None:
    """The start of the healthy stretch that lasts to the last look, None if the last look is
    not healthy. An alarm goes to ALARM only some periods after its datapoints, so a first
    healthy look can come before the alarm does: only the final stretch counts."""
    after = [look for look in looks if look.at >= not_before]
    if not after or not after[-1].healthy:
        return None
    start = after[-1].at
    for look in reversed(after):
        if not look.healthy:
            break
        start = look.at
    return start


# A request the client sends just after a replica died can still go out over the load
# balancer's pooled connection to it; Caddy retries only a request it could not send, so a
# POST written to a connection the kill closed fails with 502. That is a request on the
# failed part, though the client started it a few milliseconds after the kill.
STALE_CONNECTION_S = 0.5


def split_failures(
    scenario: Scenario, samples: Sequence[Sample], fault_at: float, until: float
) -> tuple[int, int]:
    """(expected, unexpected) failed requests. `in_flight`: only requests under way on the
    failed part, which the client sees as those it started up to STALE_CONNECTION_S after
    the fault and that ended after it; `window`: any that ended after the fault and started
    before recovery."""
    expected = unexpected = 0
    for sample in samples:
        if not sample.failed:
            continue
        ended = sample.at + sample.latency_s
        if scenario.expected == "in_flight":
            explained = sample.at <= fault_at + STALE_CONNECTION_S and ended >= fault_at
        elif scenario.expected == "window":
            explained = ended >= fault_at and sample.at <= until
        else:
            explained = False
        if explained:
            expected += 1
        else:
            unexpected += 1
    return expected, unexpected


def judge(score: Score, scenario: Scenario, last: Look | None) -> Score:
    budget = scenario.budget
    if scenario.detect != "none" and budget.detection_s is not None:
        if score.detection_s is None:
            score.reasons.append(f"the fault was never detected ({scenario.detect})")
        elif score.detection_s > budget.detection_s:
            score.reasons.append(
                f"detection {score.detection_s:.1f} s over its budget of {budget.detection_s:g} s"
            )
    if score.recovery_s is None:
        score.reasons.append("never recovered: " + (describe(last) if last else "no status seen"))
    elif score.recovery_s > budget.recovery_s:
        score.reasons.append(
            f"recovery {score.recovery_s:.1f} s over its budget of {budget.recovery_s:g} s"
        )
    if score.failed_unexpected > budget.unexpected_failures:
        score.reasons.append(
            f"{score.failed_unexpected} unexpected failed requests "
            f"(budget {budget.unexpected_failures})"
        )
    if score.orders_lost:
        score.reasons.append(
            f"{score.orders_lost} of {score.acknowledged_orders} acknowledged orders are not "
            "in the database"
        )
    return score


def describe(look: Look) -> str:
    """What was still wrong at the last look, in words."""
    wrong = []
    if look.error:
        wrong.append(f"status failed: {look.error}")
    if not look.load_balancer:
        wrong.append("the load balancer (Caddy) is not running")
    if not look.database:
        wrong.append("PostgreSQL is not running")
    if look.ready < look.wanted:
        wrong.append(f"{look.ready}/{look.wanted} replicas ready")
    if look.alarms_in_alarm:
        wrong.append(f"in ALARM: {', '.join(look.alarms_in_alarm)}")
    return "; ".join(wrong) or "healthy only after the wait ended"
