"""CloudWatch alarm semantics, state history and notifiers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.targets.local.alarms import (
    AlarmEvaluator,
    AlarmRule,
    AlarmState,
    LogNotifier,
    StateChange,
    WebhookNotifier,
    decide,
    slo_rules,
)
from pipelines.targets.local.metrics_scrape import MetricStore

from .conftest import Replica, free_port

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA
RETAIN = "retain"
T0 = 1_800_000_000.0  # a period boundary for every period used here
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


def rule(n: int = 3, m: int = 3, treat: str = "missing", **kw: object) -> AlarmRule:
    params: dict[str, object] = {
        "name": "latency",
        "description": "p95 too high",
        "metric": "p95",
        "statistic": "Maximum",
        "comparison": "GreaterThanThreshold",
        "threshold": 0.4,
        "period": 60,
        "evaluation_periods": n,
        "datapoints_to_alarm": m,
        "treat_missing_data": treat,
    }
    params.update(kw)
    return AlarmRule(**params)  # type: ignore[arg-type]


def flags(points: str) -> list[bool | None]:
    return [{"0": False, "X": True, "-": None}[p] for p in points.split()]


# "How alarm state is evaluated when data is missing", CloudWatch user guide: 5 datapoints
# retrieved (oldest first), 0 = not breaching, X = breaching, - = missing; one column per
# treatment in the order MISSING, IGNORE, BREACHING, NOT BREACHING.
DOCS_3_OF_3 = [
    ("0 - X - X", (OK, OK, OK, OK)),
    ("0 - - - -", (OK, OK, OK, OK)),
    ("- - - - -", (INSUFFICIENT, RETAIN, ALARM, OK)),
    ("0 X X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("- - - - X", (INSUFFICIENT, RETAIN, ALARM, OK)),
    ("X - - - -", (ALARM, RETAIN, ALARM, OK)),
]
DOCS_2_OF_3 = [
    ("0 - X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 0 X 0 X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 - X - -", (OK, OK, ALARM, OK)),
    ("- - - - 0", (OK, OK, ALARM, OK)),
    ("- - - - X", (INSUFFICIENT, RETAIN, ALARM, OK)),
]
CASES = [
    pytest.param(m, points, treat, expected, id=f"{m}of3-{points.replace(' ', '')}-{treat}")
    for m, table in ((3, DOCS_3_OF_3), (2, DOCS_2_OF_3))
    for points, row in table
    for treat, expected in zip(TREATMENTS, row, strict=True)
]


@pytest.mark.unit
@pytest.mark.parametrize("current", [OK, ALARM, INSUFFICIENT])
@pytest.mark.parametrize(("m", "points", "treat", "expected"), CASES)
def test_documented_missing_data_tables(
    m: int, points: str, treat: str, expected: AlarmState | str, current: AlarmState
) -> None:
    state, _ = decide(rule(3, m, treat), flags(points), current)
    assert state == (current if expected == RETAIN else expected)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("n", "m", "points", "expected"),
    [
        (3, 3, "0 X X X X", ALARM),  # newest 3 all breach
        (3, 3, "X X X X 0", OK),  # the newest is fine: one OK datapoint ends the alarm
        (5, 3, "0 0 X 0 X X 0", ALARM),  # M out of N: need not be consecutive
        (5, 3, "0 0 X 0 X 0 0", OK),
        (1, 1, "0 X 0", OK),
        (1, 1, "0 0 X", ALARM),
    ],
)
def test_m_out_of_n(n: int, m: int, points: str, expected: AlarmState) -> None:
    state, used = decide(rule(n, m), flags(points), INSUFFICIENT)
    assert state == expected
    assert len(used) == n


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"m": 4}, "datapoints_to_alarm"),
        ({"treat": "zero"}, "treat_missing_data"),
        ({"statistic": "p99"}, "statistic"),
        ({"comparison": "Above"}, "comparison"),
        ({"period": 0}, "period"),
        ({"period": 3600, "n": 25, "m": 1}, "one day"),
    ],
)
def test_invalid_rules_name_the_alarm_and_the_key(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=rf"alarm 'latency'.*{match}"):
        rule(**kw)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, str]] = []

    def notify(self, rule: AlarmRule, change: StateChange) -> None:
        self.changes.append((rule.name, change.old_state, change.new_state))


def feed(store: MetricStore, metric: str, values: list[float | None], period: int = 60) -> float:
    """One sample in the middle of each period from T0; returns the end of the last period."""
    for i, value in enumerate(values):
        if value is not None:
            store.put(metric, value, T0 + i * period + period / 2)
    return T0 + len(values) * period


@pytest.mark.unit
def test_evaluator_transitions_history_and_one_notification_each(tmp_path: Path) -> None:
    store, recorder = MetricStore(), Recorder()
    history = tmp_path / "alarms" / "history.jsonl"
    ev = AlarmEvaluator([rule(3, 2)], store, history, [recorder])
    assert ev.states["latency"] is INSUFFICIENT

    end = feed(store, "p95", [0.1, 0.2, 0.1])
    assert [c.new_state for c in ev.evaluate(end)] == ["OK"]
    assert ev.evaluate(end + 1) == []  # same data, same state: nothing recorded or sent

    end = feed(store, "p95", [0.1, 0.2, 0.1, 0.5, 0.3, 0.9])
    (change,) = ev.evaluate(end)
    assert (change.old_state, change.new_state) == ("OK", "ALARM")
    assert change.reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [0.9 (")
    assert "greater than the threshold (0.4)" in change.reason
    assert "(minimum 2 datapoints for OK -> ALARM transition)" in change.reason
    assert [d["value"] for d in change.reason_data["evaluatedDatapoints"]] == [0.5, 0.3, 0.9]

    end = feed(store, "p95", [0.1, 0.2, 0.1, 0.5, 0.3, 0.9, 0.1, 0.1])
    assert [c.new_state for c in ev.evaluate(end)] == ["OK"]

    assert recorder.changes == [
        ("latency", "INSUFFICIENT_DATA", "OK"),
        ("latency", "OK", "ALARM"),
        ("latency", "ALARM", "OK"),
    ]
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [(r["old_state"], r["new_state"]) for r in lines] == [
        ("INSUFFICIENT_DATA", "OK"),
        ("OK", "ALARM"),
        ("ALARM", "OK"),
    ]
    assert all(r["timestamp"].endswith("+00:00") and r["reason"] for r in lines)


@pytest.mark.unit
def test_state_survives_a_restart_without_renotifying(tmp_path: Path) -> None:
    store, history = MetricStore(), tmp_path / "history.jsonl"
    end = feed(store, "p95", [0.9, 0.9, 0.9])
    AlarmEvaluator([rule()], store, history).evaluate(end)
    with history.open("a") as fh:
        fh.write('{"torn": ')  # a crash in the middle of a write
    recorder = Recorder()
    again = AlarmEvaluator([rule()], store, history, [recorder])
    assert again.states["latency"] is ALARM
    assert again.evaluate(end) == []
    assert recorder.changes == []
    assert len(again.history("latency")) == 1


@pytest.mark.unit
def test_incomplete_period_and_aggregation(tmp_path: Path) -> None:
    store = MetricStore()
    ev = AlarmEvaluator([rule(1, 1, statistic="Average")], store, tmp_path / "h.jsonl")
    store.put("p95", 0.9, T0 + 10)
    store.put("p95", 0.1, T0 + 20)  # average 0.5 > 0.4
    store.put("p95", 0.0, T0 + 60)  # in the next, still incomplete period: not evaluated
    assert [c.new_state for c in ev.evaluate(T0 + 61)] == ["ALARM"]
    assert store.datapoints("p95", 60, "Maximum", T0, T0 + 60) == {T0: 0.9}
    assert store.datapoints("p95", 60, "SampleCount", T0, T0 + 120) == {T0: 2.0, T0 + 60: 1.0}


@pytest.mark.unit
def test_missing_data_goes_to_insufficient_data(tmp_path: Path) -> None:
    store = MetricStore()
    ev = AlarmEvaluator([rule(2, 2)], store, tmp_path / "h.jsonl")
    end = feed(store, "p95", [0.1, 0.1])
    assert [c.new_state for c in ev.evaluate(end)] == ["OK"]
    (change,) = ev.evaluate(end + 5 * 60)  # the datapoints have left the evaluation range
    assert change.new_state == "INSUFFICIENT_DATA"
    assert change.reason == (
        "Insufficient Data: 0 datapoints were received for 4 periods and 4 missing datapoints "
        "were treated as [missing]."
    )


@pytest.mark.unit
def test_slo_rules_from_plain_parameters() -> None:
    rules = slo_rules(
        p95_threshold_seconds=0.4,
        error_rate_threshold=0.01,
        availability_target=0.995,
        period_seconds=60,
        evaluation_periods=5,
        datapoints_to_alarm=3,
        prefix="staging-",
    )
    by_name = {r.name: r for r in rules}
    assert set(by_name) == {"staging-p95-latency", "staging-error-rate", "staging-availability"}
    p95, err, avail = (
        by_name[f"staging-{n}"] for n in ("p95-latency", "error-rate", "availability")
    )
    assert (p95.metric, p95.comparison, p95.threshold) == (
        "p95_latency_seconds",
        "GreaterThanThreshold",
        0.4,
    )
    assert (err.metric, err.threshold, err.treat_missing_data) == (
        "error_rate",
        0.01,
        "notBreaching",
    )
    assert (avail.comparison, avail.threshold) == ("LessThanThreshold", 0.995)
    assert avail.breaches(0.5)
    assert not avail.breaches(1.0)
    assert all((r.period, r.evaluation_periods, r.datapoints_to_alarm) == (60, 5, 3) for r in rules)
    assert "400 ms" in p95.description


@pytest.mark.unit
def test_log_notifier(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = MetricStore()
    ev = AlarmEvaluator([rule(1, 1)], store, tmp_path / "h.jsonl", [LogNotifier()])
    ev.evaluate(feed(store, "p95", [0.9]))
    (record,) = [r for r in caplog.records if "alarm latency" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "INSUFFICIENT_DATA -> ALARM" in record.getMessage()


@pytest.mark.integration
def test_webhook_is_delivered_to_a_real_server(
    tmp_path: Path, replicas: Callable[..., Replica]
) -> None:
    sink = replicas("hook")
    store = MetricStore()
    notifier = WebhookNotifier(f"{sink.url}/hook", timeout=2)
    ev = AlarmEvaluator([rule(1, 1)], store, tmp_path / "h.jsonl", [notifier])
    ev.evaluate(feed(store, "p95", [0.9]))
    ev.evaluate(feed(store, "p95", [0.9, 0.1]))
    assert [m["NewStateValue"] for m in sink.received] == ["ALARM", "OK"]
    message = sink.received[0]
    assert message["AlarmName"] == "latency"
    assert message["OldStateValue"] == "INSUFFICIENT_DATA"
    assert message["Trigger"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert message["Trigger"]["Threshold"] == 0.4
    assert message["NewStateReason"].startswith("Threshold Crossed")


@pytest.mark.integration
def test_webhook_failures_are_logged_not_raised(
    tmp_path: Path, replicas: Callable[..., Replica], caplog: pytest.LogCaptureFixture
) -> None:
    failing = replicas("broken")
    failing.status = 500
    recorder = Recorder()
    notifiers = [
        WebhookNotifier(f"{failing.url}/hook", timeout=2),
        WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", timeout=2),  # nothing listens
        recorder,
    ]
    store = MetricStore()
    ev = AlarmEvaluator([rule(1, 1)], store, tmp_path / "h.jsonl", notifiers)
    (change,) = ev.evaluate(feed(store, "p95", [0.9]))
    assert change.new_state == "ALARM"
    assert recorder.changes == [("latency", "INSUFFICIENT_DATA", "ALARM")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("could not deliver INSUFFICIENT_DATA -> ALARM" in w for w in warnings) == 2
