"""Deploy step 3: each revision's declared phase must match its SQL, a contract waits for
production to run code past its expand, a model change without a migration is blocked, and
pending revisions are listed per environment.

Revisions are written into a temporary copy of `service/migrations`, never into the real one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.deploy.migrations import check as migrations_check
from pipelines.deploy.migrations.check import MigrationCheckError, MigrationsStep
from pipelines.deploy.migrations.sql import own_checks
from pipelines.deploy.steps import StepContext, exit_code_for
from pipelines.targets.local.target import LocalTarget
from service.schema import metadata
from tests.conftest import PgServer
from tests.schema_helpers import (
    ADD_NOTE,
    DROP_NOTE,
    HEAD,
    LATER_REV,
    NEXT_REV,
    add_revision,
    copy_migrations,
)


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    return copy_migrations(tmp_path / "migrations")


def ctx_for(tmp_path: Path) -> StepContext:
    return StepContext(
        target=LocalTarget(state_dir=tmp_path / "state"),
        sha="0" * 40,
        root=tmp_path,
        reports=tmp_path / "reports",
    )


# --------------------------------------------------------------------------- destructive SQL


@pytest.mark.unit
def test_own_checks_flag_what_breaks_running_code_or_locks_tables() -> None:
    sql = """
        ALTER TABLE items DROP COLUMN name;
        DROP TABLE rate_limits;
        ALTER TABLE items ALTER COLUMN sku TYPE VARCHAR(10);
        ALTER TABLE items ADD COLUMN colour TEXT NOT NULL;
        ALTER TABLE items ALTER COLUMN name SET NOT NULL;
        CREATE INDEX ix_items_stock ON items (stock);
        TRUNCATE items;
        ALTER TABLE items ADD COLUMN size TEXT DEFAULT 'm' NOT NULL;
        CREATE INDEX CONCURRENTLY ix_items_name ON items (name);
        CREATE TABLE widgets (id BIGINT NOT NULL, n INTEGER);
        CREATE INDEX ix_widgets_n ON widgets (n);
        ALTER TABLE widgets ADD COLUMN m INTEGER NOT NULL;
    """
    found = [(op.kind, op.statement.split()[0]) for op in own_checks("0002", sql)]
    assert [kind for kind, _ in found] == [
        "drop-column",
        "drop-table",
        "type-change",
        "not-null-without-default",
        "set-not-null",
        "non-concurrent-index",
        "truncate",
    ]


@pytest.mark.integration
def test_a_drop_declared_as_expand_is_refused_naming_the_operation_and_the_file(
    migrations: Path,
) -> None:
    path = add_revision(migrations, 'op.drop_column("items", "name")', phase="expand")
    found = migrations_check.review(migrations, with_diff=False)
    assert found.blocked_revisions == [NEXT_REV] and not found.ok
    [op] = found.destructive[NEXT_REV]
    assert (op.kind, op.detector) == ("drop-column", "squawk:ban-drop-column")
    [blocker] = found.blockers()
    assert "declares expand" in blocker and "drop-column" in blocker and str(path) in blocker
    assert 'phase = "contract"' in blocker
    assert found.destructive["0001"] == []


@pytest.mark.integration
def test_a_drop_declared_as_contract_passes(migrations: Path) -> None:
    add_revision(migrations, 'op.drop_column("items", "name")', phase="contract")
    found = migrations_check.review(migrations, with_diff=False)
    assert found.ok and found.blocked_revisions == []
    assert [op.kind for op in found.destructive[NEXT_REV]] == ["drop-column"]
    assert found.classified(found.revisions[-1]) == "contract"


@pytest.mark.integration
def test_an_additive_revision_declared_as_contract_is_refused(migrations: Path) -> None:
    add_revision(migrations, ADD_NOTE, phase="contract")
    found = migrations_check.review(migrations, with_diff=False)
    [blocker] = found.blockers()
    assert "declares contract but only adds" in blocker and 'phase = "expand"' in blocker


@pytest.mark.integration
def test_a_revision_without_a_phase_is_refused_with_the_phase_its_sql_has(
    migrations: Path,
) -> None:
    add_revision(migrations, ADD_NOTE, phase=None)
    [blocker] = migrations_check.review(migrations, with_diff=False).blockers()
    assert "declares no phase" in blocker and 'phase = "expand"' in blocker


@pytest.mark.integration
def test_a_blocking_index_is_refused_in_either_phase(migrations: Path) -> None:
    for phase in ("expand", "contract"):
        add_revision(migrations, 'op.create_index("ix_items_stock", "items", ["stock"])', phase)
        [blocker] = migrations_check.review(migrations, with_diff=False).blockers()
        assert "non-concurrent-index" in blocker and "postgresql_concurrently" in blocker


@pytest.mark.unit
def test_tightening_an_existing_table_is_a_contract() -> None:
    sql = """
        ALTER TABLE items ADD CONSTRAINT ck_items_stock CHECK (stock >= 0);
        CREATE TABLE widgets (id BIGINT NOT NULL);
        ALTER TABLE widgets ADD CONSTRAINT uq_widgets_id UNIQUE (id);
    """
    assert [op.kind for op in own_checks("0002", sql)] == ["add-constraint"]


@pytest.mark.unit
def test_the_contract_gate_waits_for_production_to_run_the_expand(migrations: Path) -> None:
    add_revision(migrations, ADD_NOTE, "expand", rev=NEXT_REV, down=HEAD)
    add_revision(migrations, DROP_NOTE, "contract", rev=LATER_REV, down=NEXT_REV)
    found = migrations_check.revisions(migrations)
    # production's database and code at HEAD: the expand and its contract in one release
    [refusal] = migrations_check.contract_gate(found, HEAD, HEAD)
    assert f"revision {LATER_REV} is a contract" in refusal
    assert f"end at {NEXT_REV} first" in refusal
    assert refusal.endswith("Nothing was changed")
    # production already runs code with NEXT_REV: the contract may go out
    assert migrations_check.contract_gate(found, NEXT_REV, NEXT_REV) == []
    # nothing runs in production yet: nothing can trip over it
    assert migrations_check.contract_gate(found, None, None) == []
    # code from another history
    [unknown] = migrations_check.contract_gate(found, HEAD, "9999")
    assert "do not contain" in unknown


@pytest.mark.integration
def test_squawk_and_own_checks_together(migrations: Path) -> None:
    body = """
op.alter_column("items", "sku", type_=sa.String(10), existing_type=sa.Text())
op.add_column("items", sa.Column("colour", sa.Text(), nullable=False))
op.create_index("ix_items_stock", "items", ["stock"])
op.execute("TRUNCATE login_failures")
op.create_table("widgets", sa.Column("id", sa.BigInteger(), primary_key=True))
op.create_index("ix_widgets_id", "widgets", ["id"])
"""
    add_revision(migrations, body, phase="contract")
    found = migrations_check.review(migrations, with_diff=False)
    detected = {op.kind: op.detector for op in found.destructive[NEXT_REV]}
    assert detected == {
        "type-change": "squawk:changing-column-type",
        "not-null-without-default": "squawk:adding-required-field",
        "non-concurrent-index": "squawk:require-concurrent-index-creation",
        "truncate": "drydock",  # squawk only bans TRUNCATE ... CASCADE
    }
    assert all("widgets" not in op.statement for op in found.destructive[NEXT_REV])
    assert any(a.detector.startswith("squawk:") for a in found.advisories)


@pytest.mark.integration
def test_two_heads_are_refused(migrations: Path, tmp_path: Path) -> None:
    add_revision(migrations, "pass", rev=f"{NEXT_REV}a")
    add_revision(migrations, "pass", rev=f"{NEXT_REV}b")
    with pytest.raises(MigrationCheckError, match="2 heads"):
        migrations_check.revisions(migrations)
    result = MigrationsStep(migrations=migrations).run(ctx_for(tmp_path))
    assert not result.ok and "merge" in result.summary


# --------------------------------------------------------------------------- autogenerate diff


@pytest.fixture
async def empty_database(pg_server: PgServer) -> str:
    return await pg_server.create_database("migcheck")


def _with_new_column() -> sa.MetaData:
    changed = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["items"].append_column(sa.Column("colour", sa.Text(), nullable=True))
    return changed


@pytest.mark.integration
async def test_a_model_change_without_a_migration_is_blocked(
    migrations: Path, empty_database: str, tmp_path: Path
) -> None:
    step = MigrationsStep(migrations, empty_database, target_metadata=_with_new_column())
    ctx = ctx_for(tmp_path)
    result = await asyncio.to_thread(step.run, ctx)
    assert not result.ok and step.exit_code == exit_code_for(3) == 13
    assert result.evidence["autogenerate_diff"] == ["add_column items.colour"]
    assert "alembic revision --autogenerate" in result.summary
    assert (tmp_path / "reports" / "migrations.json").exists()


@pytest.mark.integration
async def test_current_models_and_migrations_agree(
    migrations: Path, empty_database: str, tmp_path: Path
) -> None:
    step = MigrationsStep(migrations, empty_database)
    ctx = ctx_for(tmp_path)
    result = await asyncio.to_thread(step.run, ctx)
    assert result.ok, result.summary
    assert result.evidence["autogenerate_diff"] == []
    assert result.evidence["pending"] == {
        "staging": {"state": "not running"},
        "production": {"state": "not running"},
    }
    assert ctx.facts["migrations"]["revisions"][0]["revision"] == "0001"


@pytest.mark.integration
async def test_the_default_diff_runs_on_a_throwaway_postgresql(tmp_path: Path) -> None:
    step = MigrationsStep()
    plan = await asyncio.to_thread(step.plan, ctx_for(tmp_path))
    assert f"head {HEAD}" in plan.summary and not plan.blockers
    assert "staging: not running" in " ".join(plan.actions)
    result = await asyncio.to_thread(step.run, ctx_for(tmp_path))
    assert result.ok, result.summary


@pytest.mark.integration
def test_pending_revisions_are_read_from_a_running_environment(tmp_path: Path) -> None:
    from pipelines.targets.base import MigrationStatus

    class Database:
        def migration_status(self, artifact: str | None = None) -> MigrationStatus:
            assert artifact == "/releases/0.2.0"
            return MigrationStatus("0001", "0002", ("0002",))

    class Environment:
        database = Database()

    class Target:
        name = "aws"

        def environment(self, name: str) -> Environment:
            if name == "production":
                raise RuntimeError("stack outputs unreadable: pulumi not logged in")
            return Environment()

    pending = migrations_check.pending_by_environment(Target(), "/releases/0.2.0")  # type: ignore[arg-type]
    assert pending["staging"] == {
        "state": "up",
        "current": "0001",
        "head": "0002",
        "pending": ["0002"],
    }
    assert pending["production"]["state"] == "unreachable"
    assert "pulumi not logged in" in pending["production"]["reason"]
