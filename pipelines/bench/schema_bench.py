"""`invoke bench.schema`: promote a release with an expand migration to production, then roll
it back across that migration, each under signed-in reads of the table it changes, through
the load balancer, on scratch environments. Records the rollout seconds, the requests, the
failures and the p95 during each change (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.bench.results import write as write_results
from pipelines.targets.local.scratch import scratch_environments
from pipelines.traffic.loadgen import Load, LoadReport, get
from service.migrate import expected_head

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = '''"""items: an optional note"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "note")
'''


def expand_commit(workdir: Path) -> Path:
    """A clone of this repository with one more commit: a nullable column and its expand
    revision, and a new version."""
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    schema = clone / "service" / "schema.py"
    anchor = '    Column("price_cents", Integer, nullable=False),\n'
    schema.write_text(
        schema.read_text().replace(anchor, anchor + '    Column("note", Text, nullable=True),\n')
    )
    # On top of whatever head the checkout has: the next revision id after it.
    head = expected_head()
    revision = f"{int(head) + 1:04d}"
    (clone / "service" / "migrations" / "versions" / f"{revision}_items_note.py").write_text(
        MIGRATION.format(revision=revision, down_revision=head)
    )
    init = clone / "service" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.'))
    identity = ["-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run(["git", "-C", str(clone), "add", "--all"], check=True)
    subprocess.run(
        ["git", "-C", str(clone), *identity, "commit", "--quiet", "-m", "feat(items): a note"],
        check=True,
    )
    return clone


def measured(report: LoadReport, seconds: float, state: str) -> dict[str, Any]:
    return {
        "rollout_s": round(seconds, 2),
        "state": state,
        "requests": report.requests,
        "failed": report.failures,
        "p95_ms": round(report.p95_ms, 2) if report.p95_ms is not None else None,
        "statuses": dict(report.statuses),
    }


def run() -> dict[str, Any]:
    from pipelines import operations, releases
    from pipelines.deploy.rollout import ProductionStep
    from pipelines.deploy.runner import execute
    from pipelines.deploy.steps import StepContext
    from pipelines.targets.local.target import LocalTarget

    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}}
    settings = {"drydock:localDrainSeconds": 2, "drydock:localAlarmPeriodSeconds": 5}
    with (
        tempfile.TemporaryDirectory(prefix="drydock-bench-schema-") as tmp,
        scratch_environments("drydock-bench-schema-", **settings) as scratch,
    ):
        production = scratch.environment("production")
        target = LocalTarget()
        before = production.current_release()
        release = releases.build(target.root / "releases", "HEAD", root=expand_commit(Path(tmp)))
        email, password = production.ensure_smoke_admin()
        import httpx

        token = httpx.post(
            f"{production.url}/api/auth/login",
            json={"email": email, "password": password},
            timeout=10,
        ).json()["access_token"]
        read = get("/api/inventory?limit=5", headers={"Authorization": f"Bearer {token}"})

        ledger = target.ledger()
        ctx = StepContext(
            target=target,
            sha=release.git_sha,
            root=ROOT,
            reports=Path(tmp) / "reports",
            release=release,
            deploy_id="bench-schema",
        )
        print("bench.schema: promote a release with an expand migration, under load", flush=True)
        with Load(production.url, read, workers=3, max_seconds=300, pause_s=0.01) as load:
            code = execute(ctx, ledger, [ProductionStep(ledger)])
        step = json.loads((Path(tmp) / "reports" / "report.json").read_text())["steps"]["6"]
        rollout = step["evidence"]["rollout"]
        results["promote"] = {
            **measured(load.report, rollout["duration_s"], rollout["state"]),
            "exit_code": code,
            "migration": step["evidence"]["migrations"],
            "step_s": step["duration_s"],
        }
        print("bench.schema: roll back across the migration, under load", flush=True)
        started = time.monotonic()
        with Load(production.url, read, workers=3, max_seconds=300, pause_s=0.01) as load:
            message = operations.rollback("production", before, ledger=ledger)
        results["rollback"] = {
            **measured(load.report, time.monotonic() - started, "completed"),
            "message": message,
            "serving": production.current_release(),
        }
    return results


def summary(results: dict[str, Any]) -> str:
    lines = ["", "bench.schema: an expand migration, promoted and rolled back under load"]
    for name in ("promote", "rollback"):
        r = results[name]
        lines.append(
            f"  {name:<9} {r['rollout_s']:6.1f} s  {r['requests']:>6} requests, "
            f"{r['failed']} failed, p95 {r['p95_ms']} ms"
        )
    return "\n".join(lines)


def main(out: str = "reports/bench-schema.json") -> int:
    results = run()
    write_results(results, out, summary(results))
    ok = results["promote"]["exit_code"] == 0 and not any(
        results[n]["failed"] for n in ("promote", "rollback")
    )
    return 0 if ok else 1
