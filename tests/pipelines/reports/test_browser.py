"""Each kind of report rendered in headless Chromium: the charts draw, with the expected
series and event markers, and a screenshot of each lands under reports/screenshots/.
Skips, saying why, where no Chromium is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.reports import deploy, drill, gameday, timeline
from tests import chromium
from tests.pipelines.reports import samples

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium.executable() is None, reason=chromium.why_missing()),
]

SCREENSHOTS = Path(__file__).resolve().parents[3] / "reports" / "screenshots"
TRAFFIC_SERIES = [
    timeline.REQUESTS,
    timeline.FAILED,
    timeline.P50,
    timeline.P95,
    timeline.ERROR_RATE,
]
SERVER_SERIES = [timeline.SERVER_REQUESTS, timeline.SERVER_P95, timeline.SERVER_ERROR_RATE]


def test_deploy_timeline_renders_client_and_server_series_and_every_event_kind(
    tmp_path: Path,
) -> None:
    page = deploy.write(samples.deploy_data(), tmp_path / "deploy.html")
    dom = chromium.dump_dom(page)
    assert chromium.charts(dom) == 1
    assert chromium.legend(dom) == TRAFFIC_SERIES + SERVER_SERIES + [
        timeline.EVENT_PREFIX + kind for kind in samples.DEPLOY_EVENT_KINDS
    ]
    # The bake window is shaded and labelled in each of the three panels.
    assert chromium.annotations(dom).count("bake window") == 3
    chromium.screenshot(page, SCREENSHOTS / "deploy.png")


def test_drill_report_renders_phases_and_trend(tmp_path: Path) -> None:
    report, history = samples.drill_data(tmp_path)
    page = drill.write(report, drill.past_drills(history), tmp_path / "drill.html")
    dom = chromium.dump_dom(page)
    assert chromium.charts(dom) == 2
    names = chromium.legend(dom)
    # plotly lists a stacked bar's legend in stacking order, top first: compare as sets.
    assert set(names[:6]) == {"dump", "restore", "verify", "replica", "smoke", "RTO 14.0 s"}
    assert names[6:] == [drill.RTO_TRACE, drill.RPO_TRACE, drill.SIZE_TRACE]
    chromium.screenshot(page, SCREENSHOTS / "drill.png")


def test_gameday_report_renders_one_timeline_per_scenario_with_the_fault_shaded(
    tmp_path: Path,
) -> None:
    data = samples.gameday_data(("kill-replica", "lb-crash", "db-outage"))
    page = gameday.write(data, tmp_path / "gameday.html")
    dom = chromium.dump_dom(page)
    assert chromium.charts(dom) == 3
    per_chart = TRAFFIC_SERIES + [
        timeline.EVENT_PREFIX + kind for kind in ("fault", "detected", "recovered")
    ]
    assert chromium.legend(dom) == per_chart * 3
    shaded = [a for a in chromium.annotations(dom) if a.startswith("fault: ")]
    # each chart labels its fault window once per panel
    assert shaded == [
        f"fault: {n}" for n in ("kill-replica", "lb-crash", "db-outage") for _ in "123"
    ]
    chromium.screenshot(page, SCREENSHOTS / "gameday.png", height=3000)


def test_pitr_report_renders_phases_against_the_rto_and_the_trend(tmp_path: Path) -> None:
    report, _ = samples.pitr_data(tmp_path)
    page = Path(report["paths"]["html"])  # written by the drill's own record
    dom = chromium.dump_dom(page)
    assert chromium.charts(dom) == 2
    names = chromium.legend(dom)
    assert set(names[:5]) == {
        "base backup copy",
        "WAL staging",
        "replay",
        "replica ready",
        "RTO 13.0 s",
    }
    assert names[5:] == [drill.RTO_TRACE, drill.RPO_TRACE, drill.REPLAY_TRACE]
    chromium.screenshot(page, SCREENSHOTS / "pitr.png")
