"""The two tests a canary stage is judged by, in pure Python (no scipy in the deploy path).

- `mann_whitney_greater`: the one-sided Mann-Whitney U test, as Kayenta uses it: is a
  latency drawn from the canary more likely to be larger than one from the baseline? Normal
  approximation with the tie correction and a continuity correction (scipy's
  `mannwhitneyu(..., alternative="greater", method="asymptotic")` gives the same numbers);
  a stage holds hundreds of samples, where the approximation is exact enough.
- `two_proportions_greater`: the one-sided pooled two-proportion z-test: is the canary's
  error rate higher than the baseline's?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TestResult:
    statistic: float  # U for Mann-Whitney, the difference of rates for proportions
    z: float
    p_value: float


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) of `values`, and the tie term sum(t^3 - t) over tied groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    ties = 0.0
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for index in order[start : end + 1]:
            result[index] = average
        size = end - start + 1
        ties += size**3 - size
        start = end + 1
    return result, ties


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> TestResult:
    """H1: x is stochastically greater than y. U is x's statistic (how many of the pairs
    (x_i, y_j) have x_i > y_j, ties counting one half)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs at least one sample on each side")
    combined_ranks, ties = ranks([*x, *y])
    u = sum(combined_ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value equal: no evidence either way
        return TestResult(u, 0.0, 1.0)
    z = (u - mean - 0.5) / math.sqrt(variance)
    return TestResult(u, z, normal_sf(z))


def two_proportions_greater(
    failures_x: int, total_x: int, failures_y: int, total_y: int
) -> TestResult:
    """H1: the failure rate behind x is higher than the one behind y (pooled z-test)."""
    if total_x <= 0 or total_y <= 0:
        raise ValueError("the proportion test needs at least one request on each side")
    rate_x, rate_y = failures_x / total_x, failures_y / total_y
    pooled = (failures_x + failures_y) / (total_x + total_y)
    variance = pooled * (1 - pooled) * (1 / total_x + 1 / total_y)
    if variance <= 0:  # no failures at all (or nothing but failures) on both sides
        return TestResult(rate_x - rate_y, 0.0, 1.0)
    z = (rate_x - rate_y) / math.sqrt(variance)
    return TestResult(rate_x - rate_y, z, normal_sf(z))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
