"""Deploy step 7's judgement: SLOs, alarms, error lines, and the p95 baseline rule."""

from __future__ import annotations

import pytest

from pipelines.deploy.verify import CONSECUTIVE, baseline, judge
from pipelines.targets.base import Observation

pytestmark = pytest.mark.unit

SLO_P95, SLO_ERRORS = 0.4, 0.01


def observation(
    p95: float | None = 0.010,
    requests: int = 1000,
    errors: int = 0,
    alarms: tuple[str, ...] = (),
    error_lines: int = 0,
) -> Observation:
    return Observation(
        window_s=30,
        requests=requests,
        errors_5xx=errors,
        p95_s=p95,
        alarms_in_alarm=alarms,
        error_log_lines=error_lines,
    )


def deploys(*p95s: float, regressions: tuple[bool, ...] = ()) -> list[dict[str, object]]:
    flags = regressions or (False,) * len(p95s)
    return [{"ok": True, "p95_s": p, "p95_regression": r} for p, r in zip(p95s, flags, strict=True)]


def test_a_healthy_bake_passes() -> None:
    verdict = judge(observation(), SLO_P95, SLO_ERRORS, deploys(0.010, 0.011, 0.009))
    assert verdict.ok, verdict.failures()
    assert not verdict.regression


@pytest.mark.parametrize(
    ("obs", "failing"),
    [
        (observation(p95=0.5), "p95"),
        (observation(errors=20), "error rate"),
        (observation(alarms=("error-rate",)), "alarms"),
        (observation(error_lines=50), "error log"),
        (observation(requests=0, p95=None), "traffic"),
    ],
)
def test_each_breach_fails_and_is_named(obs: Observation, failing: str) -> None:
    verdict = judge(obs, SLO_P95, SLO_ERRORS, [])
    assert not verdict.ok
    assert any(f.startswith(failing) for f in verdict.failures()), verdict.failures()


def test_one_regression_warns_the_third_in_a_row_fails() -> None:
    history = deploys(0.010, 0.010, 0.010)
    first = judge(observation(p95=0.020), SLO_P95, SLO_ERRORS, history)
    assert first.ok and first.regression and first.streak == 1
    history += [{"ok": True, "p95_s": 0.020, "p95_regression": True}]
    history += [{"ok": True, "p95_s": 0.021, "p95_regression": True}]
    third = judge(observation(p95=0.022), SLO_P95, SLO_ERRORS, history)
    assert third.streak == CONSECUTIVE
    assert not third.ok, "three consecutive regressions fail even under the SLO"
    assert any(f.startswith("p95 trend") for f in third.failures())


def test_a_deploy_back_at_the_baseline_resets_the_streak() -> None:
    history = deploys(0.010, 0.020, 0.021, regressions=(False, True, True))
    verdict = judge(observation(p95=0.0105), SLO_P95, SLO_ERRORS, history)
    assert verdict.ok and verdict.streak == 0


def test_sub_noise_differences_are_not_regressions() -> None:
    verdict = judge(observation(p95=0.0015), SLO_P95, SLO_ERRORS, deploys(0.001, 0.001))
    assert not verdict.regression


def test_baseline_is_the_median_of_the_last_five_successful_deploys() -> None:
    history = deploys(1.0, 0.010, 0.012, 0.011, 0.013, 0.014)
    history.append({"ok": False, "p95_s": 5.0})
    base, streak = baseline(history)
    assert base == pytest.approx(0.012)
    assert streak == 0
