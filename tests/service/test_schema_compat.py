"""Readiness across schema changes: code serves on its own head, or on a database ahead of
it by expand revisions only, decided from the database alone (the code does not ship the
newer revisions). Real Alembic upgrades on a real PostgreSQL, from a copy of the migrations
with revisions added."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from service.migrate import COMPAT_TABLE, alembic_config, compatibility, expected_head, serves_from
from tests.schema_helpers import (
    ADD_NOTE,
    DROP_NOTE,
    HEAD,
    HEAD_SERVES_FROM,
    LATER_REV,
    NEXT_REV,
    add_revision,
    copy_migrations,
)
from tests.service.conftest import INTERNAL, AppFactory, client_for


def newer_release(tmp_path: Path) -> Path:
    """This code's migrations plus an expand (NEXT_REV) and the contract that completes it
    (LATER_REV)."""
    migrations = copy_migrations(tmp_path / "migrations")
    add_revision(migrations, ADD_NOTE, "expand", rev=NEXT_REV, down=HEAD)
    add_revision(migrations, DROP_NOTE, "contract", rev=LATER_REV, down=NEXT_REV)
    return migrations


async def upgrade(database_url: str, migrations: Path, revision: str) -> None:
    config = alembic_config(database_url)
    config.set_main_option("script_location", str(migrations))
    await asyncio.to_thread(command.upgrade, config, revision)


async def recorded(database_url: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f"SELECT revision, phase, serves_from FROM {COMPAT_TABLE} ORDER BY revision"  # noqa: S608
        )
    finally:
        await conn.close()
    return [(r["revision"], r["phase"], r["serves_from"]) for r in rows]


async def schema_check(app: Any) -> tuple[int, dict[str, Any]]:
    async with client_for(app) as client:
        response = await client.get("/api/_internal/ready", headers=INTERNAL)
    return response.status_code, response.json()["checks"]["schema"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("phase", "parent", "expected"),
    [
        ("expand", "0001", "0001"),  # keeps its parent's
        ("expand", None, "0001"),  # parent applied before phases were recorded: the parent
        ("contract", "0001", "0002"),  # starts anew
        (None, "0001", "0002"),  # undeclared counts as a contract
    ],
)
def test_serves_from(phase: str | None, parent: str | None, expected: str) -> None:
    assert serves_from(phase, "0002", "0001", parent) == expected


@pytest.mark.unit
def test_compatibility_verdicts() -> None:
    head = expected_head()
    assert compatibility(head, head, None) == (True, "")
    assert compatibility("9002", head, head) == (True, "")
    ok, reason = compatibility("9003", head, "9003")
    assert not ok and "needs code at 9003 or later" in reason
    ok, reason = compatibility("9003", head, None)
    assert not ok and "unrecorded" in reason
    assert compatibility(None, head, None) == (False, "migrations never ran")


@pytest.mark.integration
async def test_each_applied_revision_records_its_phase_and_oldest_serving_head(
    fresh_database: str, tmp_path: Path
) -> None:
    await upgrade(fresh_database, newer_release(tmp_path), "head")
    rows = await recorded(fresh_database)
    assert rows[0] == ("0001", "expand", "0001")
    assert rows[-3:] == [
        (HEAD, "expand", HEAD_SERVES_FROM),
        (NEXT_REV, "expand", HEAD_SERVES_FROM),
        (LATER_REV, "contract", LATER_REV),
    ]


@pytest.mark.integration
async def test_an_older_release_stays_ready_across_an_expand_and_not_across_its_contract(
    app_factory: AppFactory, fresh_database: str, tmp_path: Path
) -> None:
    migrations = newer_release(tmp_path)
    app = await app_factory()  # this code: at HEAD
    await upgrade(fresh_database, migrations, NEXT_REV)
    status, schema = await schema_check(app)
    assert status == 200, schema
    assert schema == {
        "ok": True,
        "expected": HEAD,
        "current": NEXT_REV,
        "serves_from": HEAD_SERVES_FROM,
    }

    await upgrade(fresh_database, migrations, LATER_REV)
    status, schema = await schema_check(app)
    assert status == 503
    assert schema["ok"] is False and schema["serves_from"] == LATER_REV
    assert f"needs code at {LATER_REV} or later" in schema["reason"]


@pytest.mark.integration
async def test_an_unknown_unrecorded_revision_is_not_ready(
    app_factory: AppFactory, fresh_database: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '0000'")
    finally:
        await conn.close()
    status, schema = await schema_check(await app_factory())
    assert status == 503 and "unrecorded" in schema["reason"]


@pytest.mark.integration
async def test_migrating_with_an_older_release_leaves_an_expand_alone_and_refuses_a_contract(
    fresh_database: str, tmp_path: Path
) -> None:
    from service.migrate import SchemaAheadError
    from service.migrate import upgrade as upgrade_with_this_code

    migrations = newer_release(tmp_path)
    await upgrade(fresh_database, migrations, NEXT_REV)
    await asyncio.to_thread(upgrade_with_this_code, fresh_database)  # nothing to apply
    assert [r for r, _, _ in await recorded(fresh_database)][-2:] == [HEAD, NEXT_REV]

    await upgrade(fresh_database, migrations, LATER_REV)
    with pytest.raises(SchemaAheadError, match=f"at {LATER_REV}, past this code's head {HEAD}"):
        await asyncio.to_thread(upgrade_with_this_code, fresh_database)
