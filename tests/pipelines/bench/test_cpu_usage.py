"""The bench's count of busy cores, from a /proc/stat the test writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.bench.cpu_usage import CpuUsage, busy_and_total


def _stat(user: int, system: int, idle: int, iowait: int = 0) -> str:
    # user nice system idle iowait irq softirq steal guest guest_nice, then per-core lines
    return f"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def _write(path: Path, text: str) -> None:
    # the sampler reads while the test writes: replace the file whole, as the kernel does
    scratch = path.with_suffix(".new")
    scratch.write_text(text)
    scratch.replace(path)


def test_busy_ticks_leave_out_idle_and_iowait_and_do_not_count_guest_twice() -> None:
    assert busy_and_total(_stat(user=300, system=100, idle=500, iowait=100)) == (400, 1000)


def test_a_half_busy_two_core_machine_reads_as_one_core_in_the_middle_band(
    tmp_path: Path,
) -> None:
    stat = tmp_path / "stat"
    stat.write_text(_stat(user=0, system=0, idle=0))
    usage = CpuUsage(every_s=0.05, stat_path=stat, cores=2)
    with usage:
        for tick in range(1, 6):
            # each step: 100 ticks over both cores, 50 of them busy
            _write(stat, _stat(user=40 * tick, system=10 * tick, idle=50 * tick))
            deadline = time.monotonic() + 2
            while len(usage.samples) < tick and time.monotonic() < deadline:
                time.sleep(0.01)
    summary = usage.summary()
    assert summary["cores"] == 2
    assert summary["mean_cores_busy"] == pytest.approx(1.0)
    bands = summary["seconds_by_share_of_cores_busy"]
    assert bands["25-50 %"] == 0 and bands["0-25 %"] == 0
    assert bands["50-75 %"] == pytest.approx(sum(span for span, _ in usage.samples), abs=0.1)
    assert summary["cpu_s"] == pytest.approx(sum(span for span, _ in usage.samples), abs=0.1)


def test_a_fully_busy_machine_counts_in_the_top_band(tmp_path: Path) -> None:
    usage = CpuUsage(cores=2, stat_path=tmp_path / "stat")
    usage.samples = [(1.0, 2.0), (1.0, 1.9), (2.0, 0.2)]
    bands = usage.summary()["seconds_by_share_of_cores_busy"]
    assert bands == {"0-25 %": 2.0, "25-50 %": 0.0, "50-75 %": 0.0, "75-100 %": 2.0}
    assert usage.summary()["mean_cores_busy"] == pytest.approx((2.0 + 1.9 + 0.4) / 4, abs=0.01)
    assert usage.timeline() == [(1.0, 2.0), (2.0, 1.9), (4.0, 0.2)]


def test_without_proc_stat_there_is_nothing_to_report(tmp_path: Path) -> None:
    with CpuUsage(every_s=0.01, stat_path=tmp_path / "absent") as usage:
        time.sleep(0.03)
    assert usage.summary() == {}
