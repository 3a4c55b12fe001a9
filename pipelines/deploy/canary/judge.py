"""One canary stage judged against the baseline over the same window (runbook §7).

Two questions, each asked so that noise alone rarely aborts a good release and a real
regression is caught at the first stage that has enough traffic:

- errors: the one-sided two-proportion test says the canary fails more often (p < ALPHA),
  by more than ERROR_MARGIN and at least MIN_ERRORS times: with a clean baseline the test
  calls one stray 5xx in a hundred significant, and one is not a pattern;
- latency: the one-sided Mann-Whitney U test says canary latencies are stochastically
  larger (p < ALPHA), as Kayenta asks, *and* the canary's p95 exceeds the baseline's by
  more than P95_RATIO and LATENCY_FLOOR_S, so a significant but harmless shift (a fresh
  process a millisecond slower) does not abort. Where the target has no per-request
  latencies (CloudWatch), the p95 bound alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.deploy.canary.stats import mann_whitney_greater, percentile, two_proportions_greater
from pipelines.targets.base import CanaryWindow, ServedTraffic

ALPHA = 0.01
ERROR_MARGIN = 0.005  # half a percentage point of requests
MIN_ERRORS = 2
# At 100 % the stable side serves nothing and the canary is held to the baseline of the
# stage before, measured at half its load (and on ECS, a few canary tasks are compared with
# a whole fleet): load alone moves a p95 by a quarter on a busy machine. The bound sits
# above that and far below a real regression.
P95_RATIO = 1.5
LATENCY_FLOOR_S = 0.025
MIN_REQUESTS = 20  # per side: fewer cannot tell a good release from a bad one


@dataclass(frozen=True)
class Comparison:
    share: int
    window_s: float
    canary: dict[str, Any]
    baseline: dict[str, Any]
    checks: dict[str, tuple[bool, str]]
    # What leans against the canary without yet being significant: the stage holds longer
    # (stages.py) rather than promote on too little evidence or abort on noise.
    leaning: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks.values())

    @property
    def verdict(self) -> str:
        return "promote" if self.ok else "abort"

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, (ok, detail) in self.checks.items() if not ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "share_percent": self.share,
            "window_s": round(self.window_s, 2),
            "canary": self.canary,
            "baseline": self.baseline,
            "checks": {name: {"ok": ok, "detail": d} for name, (ok, d) in self.checks.items()},
            "verdict": self.verdict,
            "leaning": list(self.leaning),
        }


def _p95(side: ServedTraffic) -> float | None:
    if side.latencies_s:
        return percentile(side.latencies_s, 95)
    return side.p95_s


def _numbers(side: ServedTraffic) -> dict[str, Any]:
    p95 = _p95(side)
    return {
        "requests": side.requests,
        "errors": side.errors,
        "error_rate": round(side.errors / side.requests, 5) if side.requests else None,
        "p50_ms": round(percentile(side.latencies_s, 50) * 1000, 1) if side.latencies_s else None,
        "p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
    }


def _errors(canary: ServedTraffic, baseline: ServedTraffic) -> tuple[bool, str]:
    test = two_proportions_greater(
        canary.errors, canary.requests, baseline.errors, baseline.requests
    )
    rates = (
        f"canary {canary.errors}/{canary.requests} ({100 * canary.errors / canary.requests:.2f} %)"
        f" vs baseline {baseline.errors}/{baseline.requests} "
        f"({100 * baseline.errors / baseline.requests:.2f} %), one-sided p={test.p_value:.2g}"
    )
    worse = test.p_value < ALPHA and test.statistic > ERROR_MARGIN and canary.errors >= MIN_ERRORS
    return not worse, rates


def _latency(canary: ServedTraffic, baseline: ServedTraffic) -> tuple[bool, str]:
    canary_p95, baseline_p95 = _p95(canary), _p95(baseline)
    if canary_p95 is None or baseline_p95 is None:
        return True, "no latencies recorded on one side; judged by errors alone"
    ratio = canary_p95 / baseline_p95 if baseline_p95 > 0 else float("inf")
    over_bound = ratio > P95_RATIO and canary_p95 - baseline_p95 > LATENCY_FLOOR_S
    detail = (
        f"p95 canary {canary_p95 * 1000:.1f} ms vs baseline {baseline_p95 * 1000:.1f} ms "
        f"(x{ratio:.2f}, bound x{P95_RATIO:g})"
    )
    if not (canary.latencies_s and baseline.latencies_s):
        return not over_bound, detail
    test = mann_whitney_greater(canary.latencies_s, baseline.latencies_s)
    detail += f"; Mann-Whitney U={test.statistic:.0f}, one-sided p={test.p_value:.2g}"
    return not (over_bound and test.p_value < ALPHA), detail


def compare(window: CanaryWindow) -> Comparison:
    canary, baseline = window.canary, window.baseline
    checks: dict[str, tuple[bool, str]] = {}
    leaning: list[str] = []
    enough = min(canary.requests, baseline.requests) >= MIN_REQUESTS
    checks["traffic"] = (
        enough,
        f"canary {canary.requests}, baseline {baseline.requests} requests "
        f"(at least {MIN_REQUESTS} each to judge)",
    )
    if not enough:
        leaning.append("traffic")
    else:
        checks["errors"] = _errors(canary, baseline)
        checks["latency"] = _latency(canary, baseline)
        canary_rate = canary.errors / canary.requests
        if checks["errors"][0] and canary_rate - baseline.errors / baseline.requests > ERROR_MARGIN:
            leaning.append("errors")
        canary_p95, baseline_p95 = _p95(canary), _p95(baseline)
        if (
            checks["latency"][0]
            and canary_p95 is not None
            and baseline_p95 is not None
            and canary_p95 > baseline_p95 * P95_RATIO
            and canary_p95 - baseline_p95 > LATENCY_FLOOR_S
        ):
            leaning.append("latency")
    return Comparison(
        window.share,
        window.end - window.start,
        _numbers(canary),
        _numbers(baseline),
        checks,
        tuple(leaning),
    )
