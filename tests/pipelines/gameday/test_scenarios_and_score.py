"""The scenarios file and the scoring, on data: a bad entry is refused with its name and
field; failures split by the scenario's rule; the verdict names every budget missed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.gameday import scenarios, score
from pipelines.gameday.watch import Look
from pipelines.targets.base import AlarmTransition
from pipelines.targets.local.faults import LocalFaults
from pipelines.traffic.loadgen import Sample

pytestmark = pytest.mark.unit

FAULT_AT = 1000.0


def healthy_look(at: float, **changes: object) -> Look:
    fields: dict[str, object] = {
        "at": at,
        "ready": 2,
        "wanted": 2,
        "replicas": ((0, 10, "ready"), (1, 11, "ready")),
        "load_balancer": True,
        "database": True,
        "alarms_in_alarm": (),
        "pids": (("load_balancer", 50), ("database", 60)),
    }
    fields.update(changes)
    return Look(**fields)  # type: ignore[arg-type]


def test_the_committed_file_loads_against_the_local_faults() -> None:
    plan = scenarios.load(known_faults=LocalFaults.kinds)
    names = [s.name for s in plan.scenarios]
    assert {"kill-replica", "hang-replica", "db-outage", "lb-crash"} <= set(names)
    disk_full = scenarios.select(plan, ["backups-disk-full"])[0]
    assert (disk_full.then, disk_full.detect) == ("snapshot", "step")
    assert scenarios.select(plan, ["lb-crash"])[0].detect == "load_balancer"
    with pytest.raises(scenarios.ScenarioError, match="no scenario named nope"):
        scenarios.select(plan, ["nope"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('fault = "unplug-the-moon"', "fault 'unplug-the-moon' is not one of"),
        ('detect = "vibes"', "detect 'vibes' is not one of"),
        ("budget = { recovery_s = 5 }", "the budget needs detection_s"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_scenario_and_field(
    tmp_path: Path, entry: str, message: str
) -> None:
    good = {
        "fault": 'fault = "kill-replica"',
        "detect": 'detect = "replica"',
        "budget": "budget = { detection_s = 5, recovery_s = 30 }",
    }
    key = entry.split(" =")[0]
    lines = [entry if k == key else v for k, v in good.items()]
    path = tmp_path / "s.toml"
    path.write_text('[[scenario]]\nname = "broken"\nexpected = "window"\n' + "\n".join(lines))
    with pytest.raises(scenarios.ScenarioError) as excinfo:
        scenarios.load(path, known_faults=LocalFaults.kinds)
    assert "scenario 'broken'" in str(excinfo.value)
    assert message in str(excinfo.value)


def test_failures_split_by_in_flight_and_by_window() -> None:
    plan = scenarios.load(known_faults=LocalFaults.kinds)
    kill, outage = scenarios.select(plan, ["kill-replica", "db-outage"])
    samples = [
        Sample(FAULT_AT - 0.1, 0.3, 0, "POST /api/orders", "RemoteProtocolError"),  # in flight
        Sample(FAULT_AT + 0.02, 0.01, 502, "POST /api/orders", None),  # a stale connection
        Sample(FAULT_AT + 2.0, 0.01, 503, "GET /api/inventory", None),  # during the fault
        Sample(FAULT_AT + 30.0, 0.01, 500, "GET /api/inventory", None),  # after recovery
        Sample(FAULT_AT + 3.0, 0.01, 200, "GET /api/inventory", None),  # fine
    ]
    assert score.split_failures(kill, samples, FAULT_AT, FAULT_AT + 10) == (2, 2)
    assert score.split_failures(outage, samples, FAULT_AT, FAULT_AT + 10) == (3, 1)


def test_a_load_balancer_restarted_between_two_looks_is_still_detected() -> None:
    lb_crash = scenarios.select(scenarios.load(), ["lb-crash"])[0]
    before = healthy_look(FAULT_AT - 1)
    looks = [
        healthy_look(FAULT_AT + 0.5),
        healthy_look(FAULT_AT + 1.0, pids=(("load_balancer", 99), ("database", 60))),
    ]
    assert score.detected_at(lb_crash, FAULT_AT, before, looks, []) == FAULT_AT + 1.0
    assert score.detected_at(lb_crash, FAULT_AT, before, looks[:1], []) is None


def test_the_verdict_names_each_budget_missed_and_lost_orders() -> None:
    lb_crash = scenarios.select(scenarios.load(), ["lb-crash"])[0]
    last = healthy_look(FAULT_AT + 90, load_balancer=False)
    result = score.judge(
        score.Score("lb-crash", "kill -9 Caddy", FAULT_AT, FAULT_AT, None, None, 500, 3, 2, 40, 1),
        lb_crash,
        last,
    )
    assert not result.passed
    assert result.reasons == [
        "the fault was never detected (load_balancer)",
        "never recovered: the load balancer (Caddy) is not running",
        "2 unexpected failed requests (budget 0)",
        "1 of 40 acknowledged orders are not in the database",
    ]
    assert score.recovered_at([last, healthy_look(FAULT_AT + 95)], FAULT_AT) == FAULT_AT + 95


def test_recovery_is_the_start_of_the_last_healthy_stretch() -> None:
    """An alarm that trips after a first healthy look moves recovery to after it clears."""
    looks = [
        healthy_look(FAULT_AT + 1, ready=1),
        healthy_look(FAULT_AT + 5),  # looks healthy: the alarm has not caught up yet
        healthy_look(FAULT_AT + 20, alarms_in_alarm=("p95-latency",)),
        healthy_look(FAULT_AT + 40),
        healthy_look(FAULT_AT + 60),
    ]
    assert score.recovered_at(looks, FAULT_AT) == FAULT_AT + 40
    assert score.recovered_at(looks[:3], FAULT_AT) is None


def test_a_fault_this_host_cannot_make_is_skipped_with_its_reason() -> None:
    from pipelines.gameday import report, run

    disk_full = scenarios.select(scenarios.load(), ["backups-disk-full"])[0]
    why = "production: backups-disk-full needs root on Linux to mount a tmpfs; skipped"
    result = run.failed_to_start(disk_full, FAULT_AT, "", skipped=why)
    assert result["score"]["passed"] and result["score"]["skipped"] == why
    summary = run.table([result])
    assert "SKIP" in summary and "0/1 scenarios passed, 1 skipped" in summary and why in summary
    data = {"environment": "production", "started_at": 0, "finished_at": 1, "scenarios": [result]}
    assert f"skipped: {why}" in report.markdown(data)


def transition(at: float, alarm: str, new: str = "ALARM") -> AlarmTransition:
    return AlarmTransition(at, alarm, "OK", new, "threshold crossed")


def test_a_bad_deploy_is_detected_by_the_pipeline_or_an_slo_alarm_whichever_came_first() -> None:
    errors = scenarios.select(scenarios.load(), ["bad-release-errors"])[0]
    assert (errors.fault, errors.detect, errors.expected) == (
        "bad-release-errors",
        "step_or_alarm",
        "window",
    )
    alarms = [
        transition(FAULT_AT - 5, "error-rate"),  # before the fault: not this one's doing
        transition(FAULT_AT + 3, "security-lockouts"),  # an attack is not the release
        transition(FAULT_AT + 25, "error-rate"),
    ]
    step = {"failed_at": FAULT_AT + 40}
    assert score.detected_at(errors, FAULT_AT, None, [], alarms, step) == FAULT_AT + 25
    assert score.detected_at(errors, FAULT_AT, None, [], alarms[:2], step) == FAULT_AT + 40
    assert score.detected_at(errors, FAULT_AT, None, [], alarms[:2], {}) is None
    unready = scenarios.select(scenarios.load(), ["bad-release-unready"])[0]
    assert score.detected_at(unready, FAULT_AT, None, [], alarms, step) == FAULT_AT + 40


def test_step_or_alarm_needs_a_step(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[scenario]]\nname = "x"\nfault = "kill-replica"\ndetect = "step_or_alarm"\n'
        'expected = "window"\nbudget = { detection_s = 5, recovery_s = 30 }\n'
    )
    with pytest.raises(scenarios.ScenarioError, match="detect is 'step_or_alarm', so it needs"):
        scenarios.load(path, known_faults=LocalFaults.kinds)


def test_the_pipeline_decided_at_its_first_abort_or_rollback_after_the_start() -> None:
    from pipelines.deploy.steps import Event
    from pipelines.gameday.bad_deploy import decided_at

    events = [
        Event(FAULT_AT - 60, "rollback", "an earlier deploy's"),
        Event(FAULT_AT + 2, "snapshot", "pre-deploy"),
        Event(FAULT_AT + 9, "replica_ready", "slot 0"),
        Event(FAULT_AT + 31, "rollback", "bake failed"),
        Event(FAULT_AT + 33, "replica_start", "slot 0"),
    ]
    assert decided_at(events, FAULT_AT) == FAULT_AT + 31
    assert decided_at([*events, Event(FAULT_AT + 20, "canary_abort", "10 %")], FAULT_AT) == (
        FAULT_AT + 20
    )
    assert decided_at(events[1:3], FAULT_AT) is None


def test_a_bad_deploys_report_is_named_in_the_game_days_markdown() -> None:
    from pipelines.gameday import report, run

    errors = scenarios.select(scenarios.load(), ["bad-release-errors"])[0]
    result = run.failed_to_start(errors, FAULT_AT, "") | {"deploy_report": "/r/deploy/report.md"}
    data = {"environment": "production", "started_at": 0, "finished_at": 1, "scenarios": [result]}
    assert "its deploy report, with the timeline: `/r/deploy/report.md`" in report.markdown(data)


def test_timing_replaces_the_files_waits_and_refuses_what_it_does_not_know() -> None:
    plan = scenarios.load()
    faster = scenarios.with_timing(plan, {"quiet_s": 20, "max_wait_s": 30})
    assert (faster.quiet_s, faster.max_wait_s) == (20.0, 30.0)
    assert faster.scenarios == plan.scenarios and faster.settle_s == plan.settle_s
    with pytest.raises(scenarios.ScenarioError, match="unknown game day timing hold_s"):
        scenarios.with_timing(plan, {"hold_s": 1})
    with pytest.raises(scenarios.ScenarioError, match="quiet_s must be seconds >= 0"):
        scenarios.with_timing(plan, {"quiet_s": -1})
