"""The canary's statistics on known distributions: equal, shifted, heavy-tailed; and the
judgement built on them."""

from __future__ import annotations

import random

import pytest

from pipelines.deploy.canary.judge import compare
from pipelines.deploy.canary.stats import (
    mann_whitney_greater,
    percentile,
    ranks,
    two_proportions_greater,
)
from pipelines.targets.base import CanaryWindow, ServedTraffic


def normal(seed: int, n: int, mean: float, sd: float) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0005, rng.gauss(mean, sd)) for _ in range(n)]


def pareto(seed: int, n: int, scale: float, alpha: float) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.paretovariate(alpha) for _ in range(n)]


def test_ranks_average_ties_and_count_them() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == ([3.5, 1.0, 3.5, 2.0], 6.0)


def test_small_sample_with_ties_matches_the_textbook_value() -> None:
    # U counts pairs x_i > y_j (ties one half): 19 of the 24 pairs. scipy's asymptotic
    # method with continuity correction gives p = 0.07102490567421486 for these lists.
    result = mann_whitney_greater([1, 2, 2, 3, 3, 3], [2, 2, 1, 1])
    assert result.statistic == 19.0
    assert result.p_value == pytest.approx(0.07102490567421486, rel=1e-12)


def test_equal_distributions_are_not_called_different() -> None:
    rejections = sum(
        mann_whitney_greater(normal(s, 200, 0.05, 0.01), normal(s + 1000, 800, 0.05, 0.01)).p_value
        < 0.01
        for s in range(50)
    )
    assert rejections <= 3  # 1 % expected; 3 of 50 would already be unusual


def test_a_shift_of_one_standard_deviation_is_found() -> None:
    result = mann_whitney_greater(normal(1, 100, 0.06, 0.01), normal(2, 900, 0.05, 0.01))
    assert result.p_value < 1e-10
    assert result.z > 6


def test_the_test_is_one_sided_a_faster_canary_passes() -> None:
    result = mann_whitney_greater(normal(1, 100, 0.04, 0.01), normal(2, 900, 0.05, 0.01))
    assert result.p_value > 0.99


def test_heavy_tails_on_both_sides_are_not_a_regression() -> None:
    result = mann_whitney_greater(pareto(3, 300, 0.02, 1.5), pareto(4, 1200, 0.02, 1.5))
    assert result.p_value > 0.01


def test_a_heavier_tail_in_the_canary_is_found() -> None:
    result = mann_whitney_greater(pareto(5, 300, 0.02, 1.1), normal(6, 1200, 0.025, 0.003))
    assert result.p_value < 1e-6


def test_identical_values_give_no_evidence() -> None:
    assert mann_whitney_greater([0.01] * 10, [0.01] * 30).p_value == 1.0
    with pytest.raises(ValueError, match="at least one sample"):
        mann_whitney_greater([], [1.0])


def test_two_proportions() -> None:
    assert two_proportions_greater(5, 100, 0, 900).p_value < 1e-6
    assert two_proportions_greater(1, 100, 9, 900).p_value == pytest.approx(0.5)
    assert two_proportions_greater(0, 100, 0, 900).p_value == 1.0
    # By hand: rates 0.06 and 0.025, pooled 22/600, variance
    # (22/600)(578/600)(1/200 + 1/400) = 2.6492e-4, z = 0.035 / 0.016276 = 2.1504.
    result = two_proportions_greater(12, 200, 10, 400)
    assert result.z == pytest.approx(2.15037, abs=1e-4)
    assert result.p_value == pytest.approx(0.015763, abs=1e-5)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 95) == pytest.approx(1.95)


def test_against_scipy_where_it_is_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    for seed in range(5):
        x = [round(v, 3) for v in pareto(seed, 150, 0.02, 1.3)]  # rounding makes ties
        y = [round(v, 3) for v in normal(seed + 50, 400, 0.03, 0.01)]
        ours = mann_whitney_greater(x, y)
        theirs = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
        assert ours.statistic == pytest.approx(float(theirs.statistic))
        assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-9, abs=1e-300)


def side(latencies: list[float], errors: int = 0) -> ServedTraffic:
    return ServedTraffic(len(latencies), errors, latencies)


def window(canary: ServedTraffic, baseline: ServedTraffic) -> CanaryWindow:
    return CanaryWindow(10, 100.0, 120.0, canary, baseline)


def test_a_good_canary_is_promoted() -> None:
    verdict = compare(window(side(normal(1, 100, 0.02, 0.005)), side(normal(2, 900, 0.02, 0.005))))
    assert verdict.ok and verdict.verdict == "promote", verdict.failures()
    assert set(verdict.checks) == {"traffic", "errors", "latency"}
    assert verdict.leaning == ()


def test_five_percent_errors_on_half_the_requests_abort() -> None:
    verdict = compare(
        window(side(normal(1, 200, 0.02, 0.005), errors=5), side(normal(2, 1800, 0.02, 0.005)))
    )
    assert verdict.verdict == "abort"
    assert verdict.failures()[0].startswith("errors: canary 5/200 (2.50 %)")


def test_one_stray_error_does_not_abort() -> None:
    verdict = compare(
        window(side(normal(1, 100, 0.02, 0.005), errors=1), side(normal(2, 900, 0.02, 0.005)))
    )
    assert verdict.ok, verdict.failures()
    assert verdict.leaning == ("errors",)  # not a verdict yet: the stage holds longer


def test_a_hundred_milliseconds_on_a_quarter_of_requests_aborts() -> None:
    slow = normal(1, 200, 0.02, 0.005)
    slow = [v + 0.1 if i % 4 == 0 else v for i, v in enumerate(slow)]
    verdict = compare(window(side(slow), side(normal(2, 1800, 0.02, 0.005))))
    assert not verdict.checks["latency"][0]
    assert "Mann-Whitney" in verdict.checks["latency"][1]


def test_a_significant_but_tiny_shift_passes() -> None:
    verdict = compare(
        window(side(normal(1, 300, 0.021, 0.002)), side(normal(2, 2700, 0.02, 0.002)))
    )
    assert verdict.ok, verdict.failures()


def test_too_little_traffic_is_an_abort_that_says_so() -> None:
    verdict = compare(window(side([0.01] * 5), side([0.01] * 500)))
    assert verdict.failures() == [
        "traffic: canary 5, baseline 500 requests (at least 20 each to judge)"
    ]
    assert verdict.leaning == ("traffic",)


def test_aggregates_only_are_judged_by_the_p95_bound() -> None:
    good = compare(window(ServedTraffic(500, 0, p95_s=0.05), ServedTraffic(5000, 2, p95_s=0.048)))
    slow = compare(window(ServedTraffic(500, 0, p95_s=0.15), ServedTraffic(5000, 2, p95_s=0.05)))
    assert good.ok and not slow.ok
    assert slow.as_dict()["checks"]["latency"]["ok"] is False


def test_a_slow_tail_on_too_few_samples_leans_without_failing() -> None:
    canary = [0.02] * 18 + [0.3, 0.3, 0.3]  # p95 far over the bound, the rank test unmoved
    verdict = compare(window(side(canary), side(normal(2, 900, 0.02, 0.001))))
    assert verdict.ok, verdict.failures()
    assert verdict.leaning == ("latency",)
