"""The scenarios file, read and checked: a mistake names the scenario and the field, and
nothing runs."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FILE = Path(__file__).with_name("scenarios.toml")
DETECTORS = ("replica", "load_balancer", "database", "step", "step_or_alarm", "none")
STEPS = ("snapshot",)
EXPECTED = ("in_flight", "window", "none")
# Faults made through the protocol on any target: a rotation, a bad release rolled out or
# deployed.
OPERATIONS = ("rotate-jwt-key", "bad-release-unready", "bad-release-errors")
# The fault is a step (a rollout, a deploy): detect = "step" needs no `then`.
STEP_FAULTS = ("bad-release-unready", "bad-release-errors")
STEP_DETECTORS = ("step", "step_or_alarm")


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Budget:
    detection_s: float | None
    recovery_s: float
    unexpected_failures: int


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fault: str
    hold_s: float
    detect: str
    expected: str
    budget: Budget
    then: str = ""
    step_must_fail_with: str = ""


@dataclass(frozen=True)
class Plan:
    scenarios: tuple[Scenario, ...]
    traffic_before_s: float
    settle_s: float
    max_wait_s: float
    quiet_s: float


def load(path: Path = FILE, known_faults: Sequence[str] = ()) -> Plan:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    defaults = data.get("defaults", {})
    faults = (*known_faults, *OPERATIONS) if known_faults else ()  # () checks no names
    scenarios = tuple(_scenario(path, entry, faults) for entry in data.get("scenario", []))
    names = [s.name for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScenarioError(f"{path}: scenario names used twice: {', '.join(duplicates)}")
    return Plan(
        scenarios,
        float(defaults.get("traffic_before_s", 3)),
        float(defaults.get("settle_s", 3)),
        float(defaults.get("max_wait_s", 90)),
        float(defaults.get("quiet_s", 35)),
    )


TIMING = ("traffic_before_s", "settle_s", "max_wait_s", "quiet_s")


def with_timing(plan: Plan, timing: Mapping[str, float]) -> Plan:
    unknown = sorted(set(timing) - set(TIMING))
    if unknown:
        raise ScenarioError(f"unknown game day timing {', '.join(unknown)}; known: {TIMING}")
    bad = sorted(k for k, v in timing.items() if not v >= 0)
    if bad:
        raise ScenarioError(f"game day timing {', '.join(bad)} must be seconds >= 0")
    seconds = {k: float(timing.get(k, getattr(plan, k))) for k in TIMING}
    return replace(
        plan,
        traffic_before_s=seconds["traffic_before_s"],
        settle_s=seconds["settle_s"],
        max_wait_s=seconds["max_wait_s"],
        quiet_s=seconds["quiet_s"],
    )


def select(plan: Plan, names: Sequence[str]) -> tuple[Scenario, ...]:
    if not names:
        return plan.scenarios
    known = {s.name: s for s in plan.scenarios}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ScenarioError(
            f"no scenario named {', '.join(unknown)}; the scenarios are {', '.join(known)} ({FILE})"
        )
    return tuple(known[n] for n in names)


def _scenario(path: Path, entry: Mapping[str, Any], faults: Sequence[str]) -> Scenario:
    name = str(entry.get("name") or "?")
    where = f"{path}: scenario {name!r}"
    missing = [k for k in ("name", "fault", "detect", "expected", "budget") if k not in entry]
    if missing:
        raise ScenarioError(f"{where}: missing {', '.join(missing)}")
    if faults and entry["fault"] not in faults:
        raise ScenarioError(f"{where}: fault {entry['fault']!r} is not one of {', '.join(faults)}")
    detect = str(entry["detect"])
    if detect not in DETECTORS and not detect.startswith("alarm:"):
        raise ScenarioError(
            f"{where}: detect {detect!r} is not one of {', '.join(DETECTORS)} or alarm:<NAME>"
        )
    then = str(entry.get("then", ""))
    if then and then not in STEPS:
        raise ScenarioError(f"{where}: then {then!r} is not one of {', '.join(STEPS)}")
    if detect in STEP_DETECTORS and not then and entry["fault"] not in STEP_FAULTS:
        raise ScenarioError(f"{where}: detect is {detect!r}, so it needs a step (then = ...)")
    if entry["expected"] not in EXPECTED:
        raise ScenarioError(f"{where}: expected must be one of {', '.join(EXPECTED)}")
    budget = entry["budget"]
    if "recovery_s" not in budget:
        raise ScenarioError(f"{where}: budget needs recovery_s")
    if detect != "none" and "detection_s" not in budget:
        raise ScenarioError(f"{where}: detect is {detect!r}, so the budget needs detection_s")
    return Scenario(
        name=name,
        description=str(entry.get("description", "")),
        fault=str(entry["fault"]),
        hold_s=float(entry.get("hold_s", 0)),
        detect=detect,
        expected=str(entry["expected"]),
        budget=Budget(
            float(budget["detection_s"]) if "detection_s" in budget else None,
            float(budget["recovery_s"]),
            int(budget.get("unexpected_failures", 0)),
        ),
        then=then,
        step_must_fail_with=str(entry.get("step_must_fail_with", "")),
    )
