"""Client-side traffic per second: what a deploy, drill or game-day report draws, and what a
canary stage compares. Built from the load generator's samples, bucketed by the second each
request started in."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipelines.traffic.loadgen import Sample


@dataclass(frozen=True)
class Second:
    t: int  # epoch second the requests started in
    requests: int
    failed: int
    p50_ms: float
    p95_ms: float

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of values already sorted ascending."""
    if not values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q * len(values)))
    return values[rank - 1]


def per_second(samples: Iterable[Sample]) -> list[Second]:
    """One row per second that had requests, in time order. Seconds without any request are
    left out rather than shown as zero traffic: the reader sees a gap, not a fake dip."""
    buckets: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        buckets[int(sample.at)].append(sample)
    rows = []
    for second in sorted(buckets):
        bucket = buckets[second]
        latencies = sorted(1000 * s.latency_s for s in bucket)
        rows.append(
            Second(
                t=second,
                requests=len(bucket),
                failed=sum(s.failed for s in bucket),
                p50_ms=round(percentile(latencies, 0.50), 2),
                p95_ms=round(percentile(latencies, 0.95), 2),
            )
        )
    return rows
