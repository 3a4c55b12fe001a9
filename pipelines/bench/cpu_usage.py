"""How busy the machine's cores were while a bench ran, read from /proc/stat.

A process-tree count (`time`, rusage) misses what the tests start in their own sessions:
replicas, agents, Caddy, PostgreSQL. The machine-wide count has them all, so it is only
meaningful with nothing else running, which is how the benches are run anyway.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
# Four bands of the machine's capacity: under a quarter of its cores busy, up to a half, ...
BANDS = (0.25, 0.5, 0.75, 1.0)


def busy_and_total(stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all cores from the text of /proc/stat. Idle and iowait
    are idle; guest time is already inside user and nice, so it is not added again."""
    fields = [int(value) for value in stat.splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return total - idle, total


@dataclass
class CpuUsage:
    """Samples /proc/stat every `every_s` while in a `with` block."""

    every_s: float = 1.0
    stat_path: Path = PROC_STAT
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, cores busy)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _read(self) -> tuple[float, int, int]:
        busy, total = busy_and_total(self.stat_path.read_text())
        return time.monotonic(), busy, total

    def _sample(self) -> None:
        before = self._read()
        while not self._stop.wait(self.every_s):
            now = self._read()
            ticks = now[2] - before[2]
            if ticks > 0:
                busy_share = (now[1] - before[1]) / ticks
                self.samples.append((now[0] - before[0], busy_share * self.cores))
            before = now

    def __enter__(self) -> CpuUsage:
        if self.stat_path.exists():
            self._thread = threading.Thread(target=self._sample, name="cpu-usage", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def timeline(self) -> list[tuple[float, float]]:
        """(seconds since the start, cores busy) for every sample: where the idle time was."""
        points: list[tuple[float, float]] = []
        elapsed = 0.0
        for span, busy in self.samples:
            elapsed += span
            points.append((round(elapsed, 1), round(busy, 2)))
        return points

    def summary(self) -> dict[str, Any]:
        """CPU seconds used, mean cores busy, and the seconds spent in each band of the
        machine's capacity. Empty where /proc/stat is not there to read."""
        if not self.samples:
            return {}
        seconds = sum(span for span, _ in self.samples)
        cpu_s = sum(span * busy for span, busy in self.samples)
        bands: dict[str, float] = {}
        low = 0.0
        for high in BANDS:
            label = f"{round(low * 100)}-{round(high * 100)} %"
            bands[label] = round(
                sum(
                    span
                    for span, busy in self.samples
                    if low <= busy / self.cores < high or (high == 1.0 and busy >= self.cores)
                ),
                1,
            )
            low = high
        return {
            "cores": self.cores,
            "cpu_s": round(cpu_s, 1),
            "mean_cores_busy": round(cpu_s / seconds, 2) if seconds else 0.0,
            "seconds_by_share_of_cores_busy": bands,
        }
