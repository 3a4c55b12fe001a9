"""Releases that change the schema, end to end on the local target, under constant load
through the load balancer: an expand release is promoted and rolled back across its
migration, a faulty release is caught by step 7 run in a process of its own (as the CI
workflow runs it) and rolled back to the release before, and a contract whose expand is not
yet live in production is refused with nothing changed, and once a contract has run, the
release before it is refused a rollback before anything changes.

The load reads the table the schema change touches, signed in, through the load balancer: a
release that could not serve on the schema it finds would show as failed requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pipelines import operations
from pipelines.deploy.migrations.check import MigrationsStep
from pipelines.deploy.rollout import ProductionStep
from pipelines.deploy.runner import execute
from pipelines.deploy.steps import exit_code_for
from pipelines.targets.base import Release, TargetError
from pipelines.targets.local.environment import STACK_DIR_ENV, LocalEnvironment
from pipelines.targets.local.layout import STATE_ENV
from pipelines.targets.local.runtime import NAMES
from pipelines.targets.local.scratch import Scratch, scratch_environments
from pipelines.targets.local.target import LocalTarget
from pipelines.traffic.loadgen import Load, get
from tests.e2e.test_deploy import ROOT, build_release, bump_version, context
from tests.schema_helpers import (
    ADD_NOTE,
    DROP_NOTE,
    HEAD,
    HEAD_SERVES_FROM,
    LATER_REV,
    NEXT_REV,
    revision_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NOTE_COLUMN = '    Column("note", Text, nullable=True),\n'
EXPAND_FILE = f"service/migrations/versions/{NEXT_REV}_items_note.py"
CONTRACT_FILE = f"service/migrations/versions/{LATER_REV}_drop_items_note.py"


def with_note(schema: str) -> str:
    """service/schema.py with the nullable `items.note` the expand adds."""
    anchor = '    Column("price_cents", Integer, nullable=False),\n'
    assert anchor in schema
    return schema.replace(anchor, anchor + NOTE_COLUMN, 1)


def expand_edits() -> dict[str, Callable[[str], str]]:
    return {
        "service/__init__.py": bump_version,
        "service/schema.py": with_note,
        EXPAND_FILE: lambda _: revision_text(ADD_NOTE, "expand", NEXT_REV, HEAD),
    }


def fault_on(flags: str) -> str:
    return flags.replace(
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        False,',
        'Flag(\n        "ORDERS_FAULT_INJECTION",\n        True,',
    )


@pytest.fixture(scope="module")
def site() -> Iterator[Scratch]:
    """Production of its own: these releases move its schema, which no other test expects."""
    with scratch_environments(
        "drydock-schema-",
        **{
            "drydock:localDrainSeconds": 2,
            "drydock:localAlarmPeriodSeconds": 5,
            "drydock:localBakeWindowSeconds": 10,
            # Production's canary, with the suite's short stage windows (tests/conftest.py):
            # an expand release goes through it as it would in production.
            "drydock:localCanaryStepSeconds": 8,
        },
    ) as scratch:
        scratch.environment("production")
        yield scratch


@pytest.fixture
def production(site: Scratch) -> LocalEnvironment:
    return site.environment("production")


def items_load(env: LocalEnvironment) -> Load:
    """Signed-in reads of the items table through the load balancer: the table the schema
    change touches, read by whichever release serves."""
    email, password = env.ensure_smoke_admin()
    token = httpx.post(
        f"{env.url}/api/auth/login", json={"email": email, "password": password}, timeout=10
    ).json()["access_token"]
    read = get("/api/inventory?limit=5", headers={"Authorization": f"Bearer {token}"})
    return Load(env.url, read, workers=3, max_seconds=300, pause_s=0.01)


def schema_of(env: LocalEnvironment) -> dict[str, object]:
    internal = {"Authorization": f"Bearer {env.secrets.get(NAMES.metrics)}"}
    checks = httpx.get(f"{env.url}/api/_internal/ready", headers=internal, timeout=5).json()[
        "checks"
    ]
    return dict(checks["schema"])


# Replicas of a new release start slower under coverage, beside the suite's other
# environments: a deadline for the rollout, not a measure of it.
ROLLOUT_DEADLINE_S = 90


def promote(release: Release, tmp: Path, **options: object) -> int:
    ledger = LocalTarget().ledger()
    ctx = context(release, tmp, rollout_deadline_s=ROLLOUT_DEADLINE_S, **options)
    return execute(ctx, ledger, [ProductionStep(ledger)])


def test_an_expand_release_is_promoted_then_rolled_back_across_its_migration(
    production: LocalEnvironment, tmp_path: Path
) -> None:
    before = production.current_release()
    release = build_release(tmp_path, "feat(items): a note on items", expand_edits())

    with items_load(production) as promoting:
        assert promote(release, tmp_path) == 0, (tmp_path / "reports" / "report.md").read_text()
    assert promoting.report.failures == 0, promoting.report.summary()
    assert production.current_release() == release.id
    assert schema_of(production)["current"] == NEXT_REV

    with items_load(production) as rolling_back:
        message = operations.rollback("production", None)
    assert rolling_back.report.failures == 0, rolling_back.report.summary()
    assert rolling_back.report.requests > 50
    assert production.current_release() == before
    assert f"schema stays at {NEXT_REV}" in message and "the data was not touched" in message
    # The release before serves on the newer schema, as its readiness says.
    assert schema_of(production) == {
        "ok": True,
        "expected": HEAD,
        "current": NEXT_REV,
        "serves_from": HEAD_SERVES_FROM,
    }
    print(f"\npromote: {promoting.report.summary()}\nrollback: {rolling_back.report.summary()}")


def test_a_faulty_release_is_caught_by_step_7_in_its_own_process_and_rolled_back(
    production: LocalEnvironment, site: Scratch, tmp_path: Path
) -> None:
    before = production.current_release()
    edits = {**expand_edits(), "service/flags.py": fault_on}
    release = build_release(tmp_path, "feat(orders): a note, and a fault", edits)
    with items_load(production) as load:
        # Rolled out at once (under the canary, step 6 stops it first): only the bake tells.
        assert promote(release, tmp_path, rollout_strategy="rolling") == 0
        assert production.current_release() == release.id
        # deploy.verify as .github/workflows/deploy.yml runs it: a job of its own.
        verify = subprocess.run(
            [sys.executable, "-m", "invoke", "deploy.verify", "--yes", "--bake", "10"],
            cwd=ROOT,
            env={**os.environ, STATE_ENV: str(site.state_dir), STACK_DIR_ENV: str(site.stack_dir)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    output = verify.stdout + verify.stderr
    assert verify.returncode == exit_code_for(7), output
    assert f"Code rolled back: back on {before}" in output
    assert "first release" not in output
    assert "backup.restore --snapshot production-pre-deploy-" in output
    assert load.report.failures == 0, load.report.summary()
    assert production.current_release() == before


def test_a_contract_before_its_expand_is_live_is_refused_and_nothing_changes(
    production: LocalEnvironment, tmp_path: Path
) -> None:
    before, schema = production.current_release(), schema_of(production)["current"]
    snapshots = [s.id for s in production.backups.list()]
    release = build_release(
        tmp_path,
        "refactor(items): the note, added and dropped in one release",
        {
            **expand_edits(),
            "service/schema.py": lambda text: text,  # dropped again: the models are as before
            CONTRACT_FILE: lambda _: revision_text(DROP_NOTE, "contract", LATER_REV, NEXT_REV),
        },
    )
    migrations = Path(release.artifact) / "service" / "migrations"
    ledger = LocalTarget().ledger()
    with items_load(production) as load:
        code = execute(
            context(release, tmp_path, rollout_deadline_s=ROLLOUT_DEADLINE_S),
            ledger,
            [MigrationsStep(migrations=migrations), ProductionStep(ledger)],
        )
    assert code == exit_code_for(3)
    report = (tmp_path / "reports" / "report.md").read_text()
    assert f"revision {LATER_REV} is a contract" in report
    assert f"Deploy a release whose migrations end at {NEXT_REV} first" in report
    assert load.report.failures == 0, load.report.summary()
    assert production.current_release() == before
    assert schema_of(production)["current"] == schema
    assert [s.id for s in production.backups.list()] == snapshots


def test_after_a_contract_the_release_before_it_is_refused_before_anything_changes(
    production: LocalEnvironment, tmp_path: Path
) -> None:
    """Expand, then contract: production then runs code past LATER_REV, and the expand
    release (head NEXT_REV) cannot serve on a schema without its column. The rollback is refused up
    front with the restore to use instead; it never starts a rollout that cannot turn
    ready."""
    expand = build_release(tmp_path, "feat(items): a note on items", expand_edits())
    assert promote(expand, tmp_path) == 0
    contract = build_release(
        tmp_path,  # the same clone: the contract is a commit after the expand
        "refactor(items): drop the note",
        {
            "service/__init__.py": lambda text: text.replace('"9.9.', '"9.8.9.'),
            "service/schema.py": lambda text: text.replace(NOTE_COLUMN, ""),
            CONTRACT_FILE: lambda _: revision_text(DROP_NOTE, "contract", LATER_REV, NEXT_REV),
        },
    )
    assert promote(contract, tmp_path) == 0
    assert schema_of(production)["current"] == LATER_REV
    step = json.loads((tmp_path / "reports" / "report.json").read_text())["steps"]["6"]
    assert step["evidence"]["strategy"] == "rolling"  # the expand code cannot serve on it
    assert "cannot serve on the migrated schema" in step["evidence"]["canary_skipped"]

    with items_load(production) as load, pytest.raises(TargetError) as refused:
        operations.rollback("production", expand.id)
    message = str(refused.value)
    assert "refused before any change" in message and f"needs code at {LATER_REV}" in message
    assert "backup.restore --snapshot production-pre-deploy-" in message
    assert f"{contract.id} keeps serving" in message
    assert load.report.failures == 0, load.report.summary()
    assert production.current_release() == contract.id
    [entry] = [e for e in LocalTarget().ledger().entries("production", "rollback")][-1:]
    assert entry["ok"] is False and entry["release"] == expand.id
