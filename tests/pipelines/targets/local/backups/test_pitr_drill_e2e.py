"""The point-in-time recovery drill against a whole running local environment: orders
written through its load balancer, its WAL streamed by the agent's pg_receivewal, a restore
to a moment among the orders beside the live cluster, verified to the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.targets.local.backups import pitr_drill
from pipelines.targets.local.backups.receiver import WalReceiver
from pipelines.targets.local.ledger import FileLedger
from tests.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_pitr_drill_of_the_live_environment(local_staging: LocalStack, tmp_path: Path) -> None:
    env = local_staging.environment
    assert WalReceiver(env).pid() is not None, "the agent does not keep the WAL archive"
    ledger = FileLedger(local_staging.state_dir / "ledger.jsonl")
    lines: list[str] = []
    report = pitr_drill.run_pitr_drill(
        env, reports_dir=tmp_path, log=lines.append, ledger=ledger, ready_timeout_s=90
    )
    assert report.ok, report.summary() + "\n" + "\n".join(lines)
    assert 0 < report.orders_expected < report.orders_written  # orders on both sides of T
    assert report.orders_in_copy == report.orders_expected
    assert report.rpo_s is not None and report.rpo_s >= 0
    assert report.rto_s is not None and report.recovered_to
    saved = json.loads(Path(report.paths["json"]).read_text())
    assert saved["ok"] is True and saved["point"] == report.point
    assert Path(report.paths["markdown"]).read_text().startswith("# Point-in-time recovery")
    page = Path(report.paths["html"]).read_text()  # the phases to the RTO, the trend
    assert "Phases against the RTO" in page and "replay" in page and "Plotly.newPlot" in page
    assert f"plots:  {report.paths['html']}" in lines[-1]
    assert ledger.entries(env="staging", kind="pitr-drill")[-1]["ok"] is True
    assert not list(env.layout.postgres.parent.glob("pitr-*")), "the copy was left behind"
