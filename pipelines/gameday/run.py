"""`invoke gameday`: each scenario under synthetic traffic, scored, then one summary table and
the reports (JSON, Markdown, HTML) under reports/gamedays/."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.gameday import bad_deploy, bad_release, client, scenarios, score
from pipelines.gameday.report import write
from pipelines.gameday.watch import Look, Watch, look
from pipelines.targets import get_target
from pipelines.targets.base import Environment, Faults, FaultUnavailable, Target, TargetError
from pipelines.traffic.timeline import per_second

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "gamedays"
ENVIRONMENTS = ("staging", "production")


def command(env: str, names: Sequence[str], target: str = "local", reports: str = "") -> int:
    """Exit 0 when every scenario passed, 1 when one failed, 2 for bad input."""
    if env not in ENVIRONMENTS:
        print(f"gameday: --env must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
        return 2
    try:
        chosen = get_target(target)
        outcome = run(
            chosen.environment(env),
            names,
            Path(reports) if reports else REPORTS,
            target=chosen,
        )
    except (scenarios.ScenarioError, TargetError) as exc:
        print(f"gameday: {exc}")
        return 2
    return 0 if outcome["passed"] else 1


def run(
    env: Environment,
    names: Sequence[str] = (),
    reports: Path = REPORTS,
    log: Callable[[str], None] = print,
    target: Target | None = None,
    timing: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """`target` builds and deploys the bad releases; without it their scenarios skip.
    `timing` replaces the file's waits (`max_wait_s`, `quiet_s`...), for an environment
    whose alarms evaluate faster than the defaults assume."""
    faults = env.faults
    plan = scenarios.with_timing(scenarios.load(known_faults=faults.kinds), timing or {})
    chosen = scenarios.select(plan, names)
    first = look(env)
    if first.load_balancer or first.database:  # up, maybe still settling: worth a wait
        log(f"gameday on {env.name}: waiting for it to be healthy (up to {plan.max_wait_s:g} s)")
        first = _settle(env, plan.max_wait_s)
    if not first.healthy:
        raise TargetError(
            f"{env.name} is not healthy before the game day ({score.describe(first)}). "
            f"Bring it up first: `invoke env.up --env {env.name}`, then `invoke env.status`."
        )
    email, password = env.smoke_credentials()
    shopper = client.prepare(env.url, email, password)
    started = time.time()
    results: list[dict[str, Any]] = []
    try:
        for number, scenario in enumerate(chosen, 1):
            log(f"[{number}/{len(chosen)}] {scenario.name}: {scenario.description}")
            results.append(play(env, faults, scenario, plan, shopper, target, reports / "deploys"))
            log("    " + line(results[-1]["score"]))
    finally:
        cleanup = client.cleanup(env.url, shopper)
    data = {
        "environment": env.name,
        "started_at": started,
        "finished_at": time.time(),
        "passed": all(r["score"]["passed"] for r in results),
        "scenarios": results,
        "cleanup": cleanup,
    }
    paths = write(data, reports)
    log("\n" + table(results))
    log(f"reports: {paths['markdown']}\n         {paths['html']}")
    return data


def play(
    env: Environment,
    faults: Faults,
    scenario: scenarios.Scenario,
    plan: scenarios.Plan,
    shopper: client.Shopper,
    target: Target | None = None,
    deploys: Path = REPORTS / "deploys",
) -> dict[str, Any]:
    # The scenario before may still be settling; one that never recovered fails this one too.
    settled = _settle(env, plan.max_wait_s)
    if not settled.healthy:
        return failed_to_start(
            scenario, time.time(), f"not healthy before the fault: {score.describe(settled)}"
        )
    ledger = client.OrderLedger()
    watch = Watch(env).start()
    budget_s = (
        plan.traffic_before_s + scenario.hold_s + plan.max_wait_s + plan.quiet_s + plan.settle_s
    ) + 30
    load = client.traffic(env.url, shopper, ledger, budget_s)
    time.sleep(plan.traffic_before_s)
    before = watch.looks[-1] if watch.looks else settled
    fault_at = time.time()
    step: dict[str, Any] = {}
    try:
        detail, healed_at = _break(env, faults, scenario, step, target, deploys)
    except TargetError as exc:
        with contextlib.suppress(TargetError):
            faults.heal(scenario.fault)  # whatever half of it happened
        load.stop()
        watch.stop()
        if isinstance(exc, FaultUnavailable):
            return failed_to_start(scenario, fault_at, "", skipped=str(exc))
        return failed_to_start(scenario, fault_at, f"the fault could not be made: {exc}")
    deadline = fault_at + scenario.hold_s + plan.max_wait_s + plan.quiet_s
    recovered = None
    # Healthy, and still healthy `quiet_s` later: long enough for an alarm the fault's
    # datapoints will still trip to have done so.
    while time.time() < deadline:
        time.sleep(0.5)
        recovered = score.recovered_at(list(watch.looks), max(healed_at, fault_at + 1.0))
        if recovered is not None and time.time() - recovered >= plan.quiet_s:
            break
    time.sleep(plan.settle_s)
    report = load.stop()
    looks = watch.stop()
    until = recovered if recovered is not None else time.time()
    transitions = list(env.operations.alarm_transitions(fault_at - plan.traffic_before_s))
    expected, unexpected = score.split_failures(scenario, report.samples, fault_at, until)
    lost = client.missing_orders(env.database.url("app"), ledger.ids)
    detected = score.detected_at(scenario, fault_at, before, looks, transitions, step)
    result = score.judge(
        score.Score(
            scenario=scenario.name,
            fault_detail=detail,
            fault_at=fault_at,
            healed_at=healed_at,
            detection_s=None if detected is None else round(detected - fault_at, 2),
            recovery_s=None if recovered is None else round(recovered - fault_at, 2),
            requests=report.requests,
            failed_expected=expected,
            failed_unexpected=unexpected,
            acknowledged_orders=len(ledger.ids),
            orders_lost=len(lost),
        ),
        scenario,
        looks[-1] if looks else None,
    )
    if step.get("problem"):
        result.reasons.append(step["problem"])
    marks = [
        (fault_at, "fault", detail),
        (healed_at if healed_at > fault_at else None, "heal", "fault ended"),
        (detected, "detected", scenario.detect),
        (recovered, "recovered", "all replicas ready, no alarm in ALARM"),
        *((t.at, "alarm", f"{t.alarm} -> {t.new}") for t in transitions),
    ]
    events: list[dict[str, Any]] = [
        {"at": at, "kind": kind, "label": label} for at, kind, label in marks if at
    ]
    # A bad release's deploy report (its own timeline), when the scenario deployed one.
    extra: dict[str, Any] = {"deploy_report": step["report"]} if step.get("report") else {}
    return extra | {
        "scenario": asdict(scenario),
        "score": asdict(result) | {"passed": result.passed},
        "budget": asdict(scenario.budget),
        "lost_order_ids": lost[:50],
        "events": sorted(events, key=lambda e: float(e["at"])),
        "traffic": [vars(s) for s in per_second(report.samples)],
        "errors": dict(report.errors),
    }


def failed_to_start(
    scenario: scenarios.Scenario, at: float, reason: str, skipped: str = ""
) -> dict[str, Any]:
    reasons = [reason] if reason else []
    result = score.Score(scenario.name, "", at, at, None, None, 0, 0, 0, 0, 0, reasons, skipped)
    return {
        "scenario": asdict(scenario),
        "score": asdict(result) | {"passed": result.passed},
        "budget": asdict(scenario.budget),
        "lost_order_ids": [],
        "events": [],
        "traffic": [],
        "errors": {},
    }


def _break(
    env: Environment,
    faults: Faults,
    scenario: scenarios.Scenario,
    step: dict[str, Any],
    target: Target | None = None,
    deploys: Path = REPORTS / "deploys",
) -> tuple[str, float]:
    """Inject the fault, run the scenario's step on the broken system (its outcome goes in
    `step`), and after the hold heal it. Returns what broke and when it ended."""
    if scenario.fault == "rotate-jwt-key":
        outcome = env.operations.rotate_secret("jwt")
        if not outcome.ok:
            raise TargetError(f"{scenario.name}: rotation did not finish: {outcome.reason}")
        return f"rotated jwt: {outcome.kid}", time.time()
    if scenario.fault in bad_release.KINDS:
        if target is None:
            raise FaultUnavailable(f"{scenario.name}: no way to build a release here")
        if scenario.fault in bad_release.DEPLOYED:
            return bad_deploy.deploy(env, target, scenario.fault, deploys, step), time.time()
        return bad_release.roll_out(env, target, scenario.fault, step), time.time()
    detail = faults.inject(scenario.fault)
    if scenario.then:
        _step(env, scenario, step)
        detail = f"{detail}; {scenario.then}: {step.get('error') or 'succeeded'}"
    if scenario.hold_s <= 0:
        return detail, time.time()
    time.sleep(scenario.hold_s)
    healed = faults.heal(scenario.fault)
    return f"{detail}; {healed}" if healed else detail, time.time()


def _step(env: Environment, scenario: scenarios.Scenario, step: dict[str, Any]) -> None:
    """The step must fail, and its message must say why (`step_must_fail_with`)."""
    try:
        if scenario.then == "snapshot":
            env.backups.take("manual", reason=f"game day: {scenario.name}", physical=False)
    except TargetError as exc:
        step["failed_at"], step["error"] = time.time(), str(exc)
        wanted = scenario.step_must_fail_with
        if wanted and wanted not in str(exc):
            step["problem"] = f"{scenario.then} failed without saying {wanted!r}: {exc}"
        return
    step["problem"] = f"{scenario.then} succeeded on a broken system"


def _settle(env: Environment, seconds: float) -> Look:
    deadline = time.time() + seconds
    latest = look(env)
    while not latest.healthy and time.time() < deadline:
        time.sleep(0.5)
        latest = look(env)
    return latest


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def verdict(s: dict[str, Any]) -> str:
    if s.get("skipped"):
        return "SKIP"
    return "PASS" if s["passed"] else "FAIL"


def line(s: dict[str, Any]) -> str:
    if s.get("skipped"):
        return f"SKIPPED: {s['skipped']}"
    verdict = "PASS" if s["passed"] else "FAIL: " + "; ".join(s["reasons"])
    return (
        f"detected {_seconds(s['detection_s'])} s, recovered {_seconds(s['recovery_s'])} s, "
        f"failed {s['failed_expected']} expected + {s['failed_unexpected']} unexpected of "
        f"{s['requests']}, orders lost {s['orders_lost']}/{s['acknowledged_orders']}  {verdict}"
    )


def table(results: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'scenario':<16} {'detect s':>9} {'budget':>7} {'recover s':>10} {'budget':>7} "
        f"{'failed exp/unexp':>17} {'orders lost':>12}  verdict"
    )
    rows = [header, "-" * len(header)]
    for result in results:
        s, b = result["score"], result["budget"]
        rows.append(
            f"{s['scenario']:<16} {_seconds(s['detection_s']):>9} "
            f"{_seconds(b['detection_s']):>7} {_seconds(s['recovery_s']):>10} "
            f"{b['recovery_s']:>7g} {s['failed_expected']:>8}/{s['failed_unexpected']:<8} "
            f"{s['orders_lost']:>5}/{s['acknowledged_orders']:<6}  " + verdict(s)
        )
    passed = sum(r["score"]["passed"] and not r["score"].get("skipped") for r in results)
    skipped = [r["score"] for r in results if r["score"].get("skipped")]
    rows.append(
        f"\n{passed}/{len(results)} scenarios passed"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    rows += [f"  {s['scenario']} skipped: {s['skipped']}" for s in skipped]
    rows += [
        f"  {r['score']['scenario']}: {'; '.join(r['score']['reasons'])}"
        for r in results
        if not r["score"]["passed"]
    ]
    return "\n".join(rows)
