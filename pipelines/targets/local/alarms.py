"""CloudWatch metric alarms, evaluated locally with CloudWatch's documented semantics.

A rule looks at the last ``evaluation_periods`` (N) datapoints of one metric, one datapoint
per ``period``, and goes to ALARM when ``datapoints_to_alarm`` (M) of them breach the
threshold. Like CloudWatch, each evaluation reads a slightly larger *evaluation range*
(N + 2 periods: the range of the examples in "Configuring how CloudWatch alarms treat missing
data") and handles gaps as that page's tables do:

* at least N real datapoints in the range: the newest N decide; the treatment is not used;
* fewer: the gaps are filled, as few times as possible and newest gaps first, with
  ``breaching`` / ``notBreaching``; with ``missing`` and ``ignore`` nothing is filled: M real
  breaching datapoints give ALARM, any real non-breaching one gives OK, and otherwise
  ``ignore`` keeps the current state while ``missing`` gives INSUFFICIENT_DATA (or ALARM when
  the oldest evaluated datapoint is a real breaching one).

Only complete periods are evaluated. Transitions are appended to a JSONL history with a
CloudWatch-style reason, and handed to notifiers.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pipelines.targets.local.metrics_scrape import (
    AVAILABILITY,
    ERROR_RATE,
    P95_LATENCY,
    STATISTICS,
    MetricStore,
    security_event_metric,
)

log = logging.getLogger(__name__)


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")


@dataclass(frozen=True)
class AlarmRule:
    """One metric alarm, with PutMetricAlarm's parameters."""

    name: str
    description: str
    metric: str
    statistic: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str = "missing"

    def __post_init__(self) -> None:
        problems = []
        if self.statistic not in STATISTICS:
            problems.append(f"statistic {self.statistic!r} is not one of {sorted(STATISTICS)}")
        if self.comparison not in COMPARISONS:
            problems.append(f"comparison {self.comparison!r} is not one of {sorted(COMPARISONS)}")
        if self.treat_missing_data not in TREATMENTS:
            problems.append(f"treat_missing_data {self.treat_missing_data!r} not in {TREATMENTS}")
        if self.period < 1:
            problems.append(f"period must be >= 1 second, got {self.period}")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            problems.append(
                f"need 1 <= datapoints_to_alarm ({self.datapoints_to_alarm}) <= "
                f"evaluation_periods ({self.evaluation_periods})"
            )
        if self.period * self.evaluation_periods > 86400:
            problems.append("evaluation_periods * period must not exceed one day")
        if problems:
            raise ValueError(f"alarm {self.name!r}: " + "; ".join(problems))

    @property
    def evaluation_range(self) -> int:
        return self.evaluation_periods + 2

    def breaches(self, value: float) -> bool:
        return COMPARISONS[self.comparison][0](value, self.threshold)


def decide(
    rule: AlarmRule, breaching: Sequence[bool | None], current: AlarmState
) -> tuple[AlarmState, list[int]]:
    """The new state from one flag per period of the evaluation range (oldest first; None is
    a missing datapoint), and the indexes of the real datapoints that were evaluated."""
    n, m, treat = rule.evaluation_periods, rule.datapoints_to_alarm, rule.treat_missing_data
    real = [i for i, flag in enumerate(breaching) if flag is not None]
    if len(real) >= n:
        used = real[-n:]
        hits = sum(1 for i in used if breaching[i])
        return (AlarmState.ALARM if hits >= m else AlarmState.OK), used
    fills = n - len(real)
    hits = sum(1 for i in real if breaching[i])
    if treat == "breaching":
        return (AlarmState.ALARM if hits + fills >= m else AlarmState.OK), real
    if treat == "notBreaching" or hits >= m or hits < len(real):
        return (AlarmState.ALARM if hits >= m else AlarmState.OK), real
    if treat == "ignore":
        return current, real
    gaps = [i for i, flag in enumerate(breaching) if flag is None][-fills:]
    oldest_is_real = bool(real) and real[0] < min(gaps)
    return (AlarmState.ALARM if oldest_is_real else AlarmState.INSUFFICIENT_DATA), real


@dataclass(frozen=True)
class StateChange:
    """One history record, the counterpart of a CloudWatch StateUpdate history item."""

    timestamp: str
    alarm: str
    old_state: str
    new_state: str
    reason: str
    reason_data: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    def notify(self, rule: AlarmRule, change: StateChange) -> None: ...


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _reason(
    rule: AlarmRule,
    state: AlarmState,
    flags: list[bool | None],
    values: dict[int, float],
    used: list[int],
    starts: list[float],
) -> str:
    """A StateReason worded like CloudWatch's."""
    treat = rule.treat_missing_data
    if state is AlarmState.INSUFFICIENT_DATA:
        missing = sum(1 for f in flags if f is None)
        return (
            f"Insufficient Data: {len(values)} datapoints were received for {len(flags)} "
            f"periods and {missing} missing datapoints were treated as [{treat}]."
        )
    hits = sum(1 for i in used if flags[i])
    shown = ", ".join(f"{values[i]:.6g} ({_iso(starts[i])})" for i in reversed(used))
    text = (
        f"Threshold Crossed: {hits} out of the last {len(used)} datapoints [{shown}] were "
        f"{COMPARISONS[rule.comparison][1]} the threshold ({rule.threshold:.6g}) "
    )
    m = rule.datapoints_to_alarm
    if state is AlarmState.ALARM:
        text += f"(minimum {m} datapoints for OK -> ALARM transition)."
    else:
        text += f"(fewer than the {m} needed for ALARM)."
    if fills := rule.evaluation_periods - len(used):
        text += f" {fills} missing datapoints were treated as [{treat}]."
    return text


class AlarmEvaluator:
    """Evaluates rules against a MetricStore; records and notifies state transitions.

    The state of each alarm survives restarts: it is read back from the history file."""

    def __init__(
        self,
        rules: Iterable[AlarmRule],
        store: MetricStore,
        history_path: Path,
        notifiers: Sequence[Notifier] = (),
    ) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.store = store
        self.history_path = Path(history_path)
        self.notifiers = list(notifiers)
        self.states = dict.fromkeys(self.rules, AlarmState.INSUFFICIENT_DATA)
        for change in self.history():
            if change.alarm in self.states:
                self.states[change.alarm] = AlarmState(change.new_state)

    def evaluate(self, now: float) -> list[StateChange]:
        """Evaluate every rule at ``now`` (epoch seconds); returns the transitions made."""
        return [c for rule in self.rules.values() if (c := self._evaluate(rule, now))]

    def history(self, alarm: str | None = None) -> list[StateChange]:
        """Recorded transitions, oldest first; a torn last line (crash mid-write) is skipped."""
        try:
            lines = self.history_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        changes = []
        for number, line in enumerate(lines, 1):
            try:
                change = StateChange(**json.loads(line))
            except (ValueError, TypeError):
                log.warning(
                    "alarm history %s line %d is not a record; skipped", self.history_path, number
                )
                continue
            if alarm is None or change.alarm == alarm:
                changes.append(change)
        return changes

    def _evaluate(self, rule: AlarmRule, now: float) -> StateChange | None:
        period, span = rule.period, rule.evaluation_range
        end = math.floor(now / period) * period  # start of the current, incomplete period
        starts: list[float] = [end - (span - i) * period for i in range(span)]
        points = self.store.datapoints(rule.metric, period, rule.statistic, starts[0], end)
        values = {i: points[s] for i, s in enumerate(starts) if s in points}
        flags: list[bool | None] = [
            rule.breaches(values[i]) if i in values else None for i in range(span)
        ]
        old = self.states[rule.name]
        new, used = decide(rule, flags, old)
        if new is old:
            return None
        change = StateChange(
            timestamp=_iso(now),
            alarm=rule.name,
            old_state=old.value,
            new_state=new.value,
            reason=_reason(rule, new, flags, values, used, starts),
            reason_data={
                "version": "1.0",
                "queryDate": _iso(now),
                "startDate": _iso(starts[0]),
                "statistic": rule.statistic,
                "period": period,
                "recentDatapoints": [values[i] for i in sorted(values)],
                "evaluatedDatapoints": [
                    {"timestamp": _iso(starts[i]), "value": values[i]} for i in used
                ],
                "threshold": rule.threshold,
            },
        )
        self._append(change)
        self.states[rule.name] = new
        for notifier in self.notifiers:
            try:
                notifier.notify(rule, change)
            except Exception:  # a broken notifier must not stop evaluation
                log.exception("notifier %r failed for alarm %s", notifier, rule.name)
        return change

    def _append(self, change: StateChange) -> None:
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(asdict(change), sort_keys=True) + "\n").encode()
        # one O_APPEND write per record, so concurrent writers never interleave inside a line
        fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def notification(rule: AlarmRule, change: StateChange) -> dict[str, Any]:
    """The message a notifier sends, shaped like CloudWatch's SNS alarm notification."""
    return {
        "AlarmName": rule.name,
        "AlarmDescription": rule.description,
        "NewStateValue": change.new_state,
        "OldStateValue": change.old_state,
        "NewStateReason": change.reason,
        "StateChangeTime": change.timestamp,
        "Trigger": {
            "MetricName": rule.metric,
            "Statistic": rule.statistic,
            "Period": rule.period,
            "EvaluationPeriods": rule.evaluation_periods,
            "DatapointsToAlarm": rule.datapoints_to_alarm,
            "ComparisonOperator": rule.comparison,
            "Threshold": rule.threshold,
            "TreatMissingData": rule.treat_missing_data,
        },
    }


class LogNotifier:
    """Logs each transition; ALARM at WARNING, the others at INFO."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def notify(self, rule: AlarmRule, change: StateChange) -> None:
        level = logging.WARNING if change.new_state == AlarmState.ALARM else logging.INFO
        self.logger.log(
            level,
            "alarm %s: %s -> %s: %s",
            rule.name,
            change.old_state,
            change.new_state,
            change.reason,
        )


class WebhookNotifier:
    """POSTs each transition as JSON to ``url``; delivery failures are logged, never raised."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def notify(self, rule: AlarmRule, change: StateChange) -> None:
        import httpx

        try:
            response = httpx.post(self.url, json=notification(rule, change), timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning(
                "webhook %s: could not deliver %s -> %s for alarm %s: %s",
                self.url,
                change.old_state,
                change.new_state,
                rule.name,
                exc,
            )


def slo_rules(
    *,
    p95_threshold_seconds: float,
    error_rate_threshold: float,
    availability_target: float,
    period_seconds: int,
    evaluation_periods: int,
    datapoints_to_alarm: int,
    prefix: str = "",
) -> list[AlarmRule]:
    """The three SLO alarms: p95 latency, 5xx error rate, and availability.

    No traffic is not a latency or error breach (``notBreaching``); no availability datapoint
    means nobody could count healthy replicas, which is treated as ``breaching``."""
    common: dict[str, Any] = {
        "period": period_seconds,
        "evaluation_periods": evaluation_periods,
        "datapoints_to_alarm": datapoints_to_alarm,
    }
    return [
        AlarmRule(
            name=f"{prefix}p95-latency",
            description=f"p95 latency above {p95_threshold_seconds * 1000:g} ms",
            metric=P95_LATENCY,
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=p95_threshold_seconds,
            treat_missing_data="notBreaching",
            **common,
        ),
        AlarmRule(
            name=f"{prefix}error-rate",
            description=f"5xx responses above {error_rate_threshold:.2%} of requests",
            metric=ERROR_RATE,
            statistic="Average",
            comparison="GreaterThanThreshold",
            threshold=error_rate_threshold,
            treat_missing_data="notBreaching",
            **common,
        ),
        AlarmRule(
            name=f"{prefix}availability",
            description=f"healthy replicas below {availability_target:.2%} of desired",
            metric=AVAILABILITY,
            statistic="Minimum",
            comparison="LessThanThreshold",
            threshold=availability_target,
            treat_missing_data="breaching",
            **common,
        ),
    ]


# The security events with an alarm on their spikes, and the alarm's name: refresh-token
# reuse is the token-theft signal; lockouts in numbers are guessing across many accounts.
SECURITY_ALARMS = {
    "refresh_reused": "security-refresh-reuse",
    "account_locked": "security-account-lockout",
}


def security_rules(
    *, refresh_reuse_threshold: int, lockout_threshold: int, period_seconds: int
) -> list[AlarmRule]:
    """An alarm when one period counts `threshold` or more of an event (the metric filters'
    alarms on AWS, infra/alarms.py). A period without a datapoint had no scrape, which is not
    an attack (``notBreaching``); the availability alarm speaks for replicas nobody reached."""
    thresholds = {"refresh_reused": refresh_reuse_threshold, "account_locked": lockout_threshold}
    what = {
        "refresh_reused": "refresh-token reuses (a stolen refresh token in use)",
        "account_locked": "accounts locked after failed logins (guessing at scale)",
    }
    return [
        AlarmRule(
            name=name,
            description=f"{thresholds[event]} or more {what[event]} in {period_seconds} s",
            metric=security_event_metric(event),
            statistic="Sum",
            comparison="GreaterThanOrEqualToThreshold",
            threshold=thresholds[event],
            period=period_seconds,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data="notBreaching",
        )
        for event, name in SECURITY_ALARMS.items()
    ]
