"""The deploy report carries the service's own metrics: what the local agent's monitor stored
for each scrape, read through the target's Operations capability into the JSON, drawn as the
"server: ..." series of the HTML timeline. A target that cannot say leaves them out and the
report says why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipelines.deploy.report import SERVER_FACT, record_server_metrics, write_report
from pipelines.deploy.steps import StepContext
from pipelines.reports import timeline
from pipelines.targets.base import Release
from pipelines.targets.local.metrics_scrape import (
    AVAILABILITY,
    ERROR_RATE,
    P95_LATENCY,
    REQUEST_RATE,
    MetricStore,
)
from pipelines.targets.local.target import LocalTarget

pytestmark = pytest.mark.unit


def context(tmp_path: Path) -> StepContext:
    return StepContext(
        target=LocalTarget(tmp_path / "state"),
        sha="0123456789abcdef",
        root=tmp_path,
        reports=tmp_path / "reports" / "d1",
        release=Release("r-1", "0.1.0", "0123456789abcdef", str(tmp_path), "2026-12-03"),
        deploy_id="d1",
    )


def test_the_scrapes_since_the_run_began_land_in_the_report(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    env = ctx.target.environment("production")
    now = time.time()
    store = MetricStore(env.layout.alarms / "datapoints.jsonl")
    store.put(REQUEST_RATE, 12.0, now - 100)  # before the run: not this deploy's
    for at, rate, errors, p95 in ((now - 8, 20.0, 0.0, 0.02), (now - 6, 18.0, 0.25, 0.05)):
        store.put(REQUEST_RATE, rate, at)
        store.put(ERROR_RATE, errors, at)
        store.put(P95_LATENCY, p95, at)
        store.put(AVAILABILITY, 1.0, at)  # not drawn
    record_server_metrics(ctx, env, since=now - 10)
    written = write_report(ctx, {}, {}, ok=False, started=now - 10)
    data = json.loads(written.with_suffix(".json").read_text())
    assert [(p["requests_per_s"], p["error_rate"], p["p95_s"]) for p in data["server"]] == [
        (20.0, 0.0, 0.02),
        (18.0, 0.25, 0.05),
    ]
    assert data["server"][1]["period_s"] == pytest.approx(2.0)
    html = written.with_suffix(".html").read_text()
    assert timeline.SERVER_P95 in html and "2 readings of the service" in html


def test_a_target_that_cannot_read_them_leaves_a_reason_not_a_failure(tmp_path: Path) -> None:
    from botocore.stub import Stubber

    from tests.pipelines.targets.aws.conftest import client, environment

    cloudwatch = client("cloudwatch")
    ctx = context(tmp_path)
    with Stubber(cloudwatch) as cw:
        cw.add_client_error("get_metric_data", "AccessDenied", "not authorized", 403)
        env = environment(
            {"cloudwatch": cloudwatch},
            load_balancer_arn_suffix="app/drydock-production/50dc6c495c0c9188",
        )
        record_server_metrics(ctx, env, since=time.time() - 60)
        cw.assert_no_pending_responses()
    assert SERVER_FACT not in ctx.facts
    written = write_report(ctx, {}, {}, ok=True, started=time.time())
    data = json.loads(written.with_suffix(".json").read_text())
    assert data["server"] == [] and "AccessDenied" in data["server_missing"]
    assert "AccessDenied" in written.with_suffix(".html").read_text()
