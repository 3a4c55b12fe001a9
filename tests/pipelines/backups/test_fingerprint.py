"""The fingerprint and `compare` on real PostgreSQL: every kind of difference a restored
copy can have is named, with the table and how it differs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from pipelines.backups import fingerprint
from pipelines.postgres.tools import ConnInfo, drop_database
from tests.conftest import PgServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCHEMA = """
CREATE ROLE fp_reader NOLOGIN;
CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text,
                       balance numeric(12, 2), seen timestamptz DEFAULT now());
CREATE TABLE places (id int PRIMARY KEY, spot point, doc json);
CREATE TABLE settings (name text PRIMARY KEY, value text);
CREATE TABLE events (at timestamptz, what text);
GRANT SELECT ON accounts TO fp_reader;
INSERT INTO accounts (email, balance) SELECT 'a' || g, g * 1.5 FROM generate_series(1, 5000) g;
INSERT INTO places SELECT g, point(g, g), '{"g": 1}' FROM generate_series(1, 50) g;
INSERT INTO settings VALUES ('mode', 'on'), ('level', '3');
INSERT INTO events SELECT now(), 'e' || g FROM generate_series(1, 20) g;
"""


def run(url: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def pair(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    """A source database and an identical copy of it."""
    admin = ConnInfo.from_url(pg_server.url())
    run(pg_server.url(), "DROP ROLE IF EXISTS fp_reader")
    for name in ("fp_source", "fp_copy"):
        drop_database(admin, name)
    run(pg_server.url(), "CREATE DATABASE fp_source")
    run(pg_server.url("fp_source"), SCHEMA)
    run(pg_server.url(), "CREATE DATABASE fp_copy TEMPLATE fp_source")
    yield pg_server.url("fp_source"), pg_server.url("fp_copy")
    for name in ("fp_source", "fp_copy"):
        drop_database(admin, name)
    run(pg_server.url(), "DROP ROLE IF EXISTS fp_reader")


def source_fingerprint(url: str) -> fingerprint.Fingerprint:
    taken = asyncio.run(fingerprint.take_async(url, buckets=True))
    return fingerprint.Fingerprint.from_json(taken.to_json())  # as a manifest holds it


def test_identical_copy_matches_and_methods_fit_the_types(pair: tuple[str, str]) -> None:
    source, copy = pair
    expected = source_fingerprint(source)
    methods = {name: table.method for name, table in expected.tables.items()}
    assert methods == {
        "public.accounts": "record-hash",
        "public.events": "ordered-text",  # no primary key
        "public.places": "text-hash",  # point and json have no hash function
        "public.settings": "record-hash",
    }
    assert expected.tables["public.accounts"].bounds == [1, 5000]
    assert expected.tables["public.settings"].buckets == []  # text key: no ranges
    assert expected.sequences["public.accounts_id_seq"].column_max == 5000
    assert "public.accounts: SELECT to fp_reader" in expected.grants
    _, mismatches = fingerprint.verify(expected, copy)
    assert mismatches == []


def test_every_difference_is_named(pair: tuple[str, str]) -> None:
    source, copy = pair
    expected = source_fingerprint(source)
    run(
        copy,
        """
        UPDATE accounts SET balance = 0 WHERE id = 4321;
        DELETE FROM settings WHERE name = 'level';
        UPDATE places SET spot = point(0, 0) WHERE id = 7;
        UPDATE events SET what = 'changed' WHERE what = 'e3';
        REVOKE SELECT ON accounts FROM fp_reader;
        CREATE TABLE extra (id int PRIMARY KEY);
        SELECT setval('accounts_id_seq', 10);
        """,
    )
    _, mismatches = fingerprint.verify(expected, copy)
    lines = {str(m) for m in mismatches}
    assert "table public.accounts: content differs: rows with id from 4298 to 4375" in lines
    assert "table public.settings: 1 rows in the copy, 2 in the source" in lines
    assert "table public.places: content differs: rows with id from 7 to 7" in lines
    assert "table public.events: content differs" in lines
    assert "table public.extra: in the copy but not in the source" in lines
    assert "public.accounts: missing in the copy: SELECT to fp_reader" in lines
    assert "sequence public.accounts_id_seq: at 10 in the copy, 5000 in the source" in lines
    assert any("the next insert would collide" in line for line in lines)
    kinds = {m.kind for m in mismatches}
    assert {"content", "row count", "unexpected table", "grant missing", "sequence behind"} <= kinds


def test_missing_table_and_schema_head(pair: tuple[str, str]) -> None:
    source, copy = pair
    run(
        source,
        "CREATE TABLE alembic_version (version_num text PRIMARY KEY); "
        "INSERT INTO alembic_version VALUES ('0002')",
    )
    run(
        copy,
        "CREATE TABLE alembic_version (version_num text PRIMARY KEY); "
        "INSERT INTO alembic_version VALUES ('0001'); DROP TABLE places",
    )
    expected = source_fingerprint(source)
    lines = [str(m) for m in fingerprint.verify(expected, copy)[1]]
    assert "alembic_version: copy is at 0001, source at 0002" in lines
    assert "table public.places: missing from the copy (50 rows in the source)" in lines
    # A missing table's own privileges are not reported on top of it.
    assert not [line for line in lines if line.startswith("public.places:")]
