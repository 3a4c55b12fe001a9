"""The reports' HTML without a browser: self-contained, the expected series and markers in
the figures, drill trend read from the reports on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.reports import deploy, drill, timeline
from tests.pipelines.reports import samples

pytestmark = pytest.mark.unit


def test_deploy_html_is_self_contained(tmp_path: Path) -> None:
    path = deploy.write(samples.deploy_data(), tmp_path / "report.html")
    text = path.read_text()
    assert "Plotly.newPlot" in text
    # Nothing is fetched at view time: no script or stylesheet from anywhere.
    assert not re.search(r'<script[^>]+src="http', text)
    assert not re.search(r'<link[^>]+href="http', text)
    assert "bake failed: p95" in text  # the steps table


def test_timeline_draws_each_series_and_one_marker_trace_per_event_kind() -> None:
    data = samples.deploy_data()
    fig = timeline.figure("t", data["traffic"], data["events"])
    names = [trace.name for trace in fig.data]
    assert names[:5] == [
        timeline.REQUESTS,
        timeline.FAILED,
        timeline.P50,
        timeline.P95,
        timeline.ERROR_RATE,
    ]
    assert names[5:] == [timeline.EVENT_PREFIX + k for k in samples.DEPLOY_EVENT_KINDS]
    assert len(fig.layout.shapes) == len(data["events"])  # one line per event
    error_rate = fig.data[4].y
    assert max(error_rate) == pytest.approx(100 * 7 / 20)  # 7 of 20 failed in those seconds
    assert min(error_rate) == 0


def test_the_services_own_metrics_are_series_of_their_own_in_the_same_panels() -> None:
    data = samples.deploy_data()
    fig = timeline.figure("t", data["traffic"], data["events"], server=data["server"])
    by_name = {trace.name: trace for trace in fig.data}
    names = [trace.name for trace in fig.data]
    assert names[5:8] == [timeline.SERVER_REQUESTS, timeline.SERVER_P95, timeline.SERVER_ERROR_RATE]
    assert names[8:] == [timeline.EVENT_PREFIX + k for k in samples.DEPLOY_EVENT_KINDS]
    # Same panels as the client's series: requests, latency, error rate.
    for server, client in (
        (timeline.SERVER_REQUESTS, timeline.REQUESTS),
        (timeline.SERVER_P95, timeline.P95),
        (timeline.SERVER_ERROR_RATE, timeline.ERROR_RATE),
    ):
        assert by_name[server].yaxis == by_name[client].yaxis
        assert by_name[server].line.dash == "dash"
    p95 = list(by_name[timeline.SERVER_P95].y)
    assert p95[4] is None and p95[0] == pytest.approx(25.0)  # ms; the idle scrape is a gap
    assert max(e for e in by_name[timeline.SERVER_ERROR_RATE].y if e is not None) == (
        pytest.approx(100 / 3)
    )
    # A deploy report without them (step 7 never ran) draws the client's alone, and says so.
    bare = {**data, "server": []}
    assert timeline.SERVER_P95 not in deploy.html(bare)
    assert "none recorded (step 7 did not run)" in deploy.html(bare)
    assert "20 readings of the service" in deploy.html(data)


def test_bake_window_is_paired_from_its_events() -> None:
    events = [
        {"at": 10.0, "kind": "bake_start", "label": ""},
        {"at": 15.0, "kind": "alarm", "label": ""},
        {"at": 40.0, "kind": "bake_end", "label": ""},
        {"at": 50.0, "kind": "bake_start", "label": ""},  # a bake cut short by a failure
        {"at": 55.0, "kind": "rollback", "label": ""},
    ]
    windows = timeline.windows_from_events(events, "bake_start", "bake_end", "bake")
    assert [(w.start, w.end) for w in windows] == [(10.0, 40.0), (50.0, 55.0)]


def test_drill_trend_reads_sizes_from_the_reports_on_disk(tmp_path: Path) -> None:
    report, history = samples.drill_data(tmp_path)
    history.append({"id": "gone", "started_at": "x", "report": str(tmp_path / "missing.json")})
    drills = drill.past_drills(history)
    assert [d["size_mb"] for d in drills] == [2.5, 5.0, 7.5, None]
    fig = drill.trend_figure(drills)
    assert [t.name for t in fig.data] == [drill.RTO_TRACE, drill.RPO_TRACE, drill.SIZE_TRACE]
    phases = drill.phases_figure(report)
    assert [t.name for t in phases.data][:5] == ["dump", "restore", "verify", "replica", "smoke"]
    assert phases.layout.shapes[0].x0 == report["rto_s"]


def test_pitr_page_draws_the_restore_phases_to_the_rto_and_the_trend(tmp_path: Path) -> None:
    report, history = samples.pitr_data(tmp_path)
    phases = drill.pitr_phases(report)
    assert [(p["name"], p["seconds"]) for p in phases] == [
        ("base backup copy", 4.0),
        ("WAL staging", 0.5),
        ("replay", 3.5),
        ("replica ready", 5.0),  # the rest of the 13 s RTO
    ]
    figure = drill.phases_figure({"phases": phases, "rto_s": report["rto_s"]})
    assert sum(t.x[0] for t in figure.data if t.type == "bar") == pytest.approx(13.0)
    drills = drill.past_pitr_drills(history)
    assert [d["replay_mb_s"] for d in drills] == [40.0, 41.0, 42.0]  # from each JSON on disk
    trend = drill.trend_figure(drills, (drill.REPLAY_TRACE, "replay_mb_s", "MB/s"))
    assert [t.name for t in trend.data] == [drill.RTO_TRACE, drill.RPO_TRACE, drill.REPLAY_TRACE]
    assert list(trend.data[0].y) == [9.0, 11.0, 13.0]
    # pitr_report.write drew the page next to the JSON and Markdown, with the RPO on it.
    page = Path(report["paths"]["html"])
    assert page == tmp_path / "pitr-2.html" and page.exists()
    text = page.read_text()
    assert "RPO 0.40 s" in text and "Plotly.newPlot" in text and "Trend over 3 PITR" in text


def test_the_pitr_summary_prints_where_the_page_is(tmp_path: Path) -> None:
    from pipelines.backups.pitr_report import PitrDrillReport, write

    report = PitrDrillReport("pitr-x", "local", "staging", "2026-12-03T10:00:00.00Z", rto_s=5.0)
    write(report, tmp_path)
    assert f"plots:  {tmp_path / 'pitr-x.html'}" in report.summary()
    assert (tmp_path / "pitr-x.html").exists()


def test_a_failed_pitr_drill_marks_its_last_phase_and_lists_the_problem() -> None:
    report = {
        "id": "pitr-bad",
        "ok": False,
        "restore": {"durations": {"copy_s": 1.0, "stage_s": 0.2}},
        "rto_s": None,
        "failure": "replay stopped: WAL segment 0000000100000000000000A3 missing",
        "mismatches": [],
    }
    phases = drill.pitr_phases(report)
    assert [(p["name"], p["ok"]) for p in phases] == [
        ("base backup copy", True),
        ("WAL staging", False),
    ]
    text = drill.pitr_html(report, [])
    assert "segment 0000000100000000000000A3 missing" in text and "FAILED" in text
