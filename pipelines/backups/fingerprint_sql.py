"""The catalog and hashing queries behind `pipelines.backups.fingerprint`.

Identifiers are built with `quote_ident` and types come from `format_type`, so the dynamic
SQL here never carries input; values are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

BUCKETS = 64
INTEGER_TYPES = ("smallint", "integer", "bigint")
RECORD_HASH = "record-hash"  # hash_record_extended: binary, no text conversion
TEXT_HASH = "text-hash"  # hashtextextended(t::text): for column types without a hash
ORDERED_TEXT = "ordered-text"  # md5 of the rows' text in row order: tables without a key
SESSION = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0"
)


@dataclass(frozen=True)
class Table:
    name: str  # schema.table
    sql: str  # quoted for SQL
    key: list[str]  # quoted primary-key columns, in order
    leading_integer: bool  # the first key column is an integer: key ranges can bucket it
    pages: int


async def tables(conn: asyncpg.Connection) -> list[Table]:
    rows = await conn.fetch(
        r"""
        SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relpages,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql,
               ARRAY(
                   SELECT quote_ident(a.attname) FROM pg_index i
                   JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord
               ) AS key,
               (SELECT format_type(a.atttypid, NULL) FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = c.oid AND i.indisprimary) AS leading_type
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 2
        """
    )
    return [
        Table(
            row["name"],
            row["sql"],
            list(row["key"]),
            row["leading_type"] in INTEGER_TYPES,
            row["relpages"],
        )
        for row in rows
    ]


def _hashes(method: str) -> tuple[str, str]:
    if method == RECORD_HASH:
        return "hash_record_extended(t, 0)", "hash_record_extended(t, 1)"
    return "hashtextextended(t::text, 0)", "hashtextextended(t::text, 1)"


def digest_query(table: Table, method: str) -> str:
    """One pass: the row count and two 64-bit XOR-combined row hashes (seeds 0 and 1).
    Every row's hash covers its key, so which row holds which content is what is hashed."""
    if method == ORDERED_TEXT:
        return (
            "SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' "  # noqa: S608
            f"ORDER BY t::text COLLATE \"C\"), '')) AS md5 FROM {table.sql} t"
        )
    h0, h1 = _hashes(method)
    return (
        f"SELECT count(*) AS n, coalesce(bit_xor({h0}), 0) AS h0, "  # noqa: S608
        f"coalesce(bit_xor({h1}), 0) AS h1 FROM {table.sql} t"
    )


def bounds_query(table: Table) -> str:
    return f"SELECT min({table.key[0]})::bigint AS lo, max({table.key[0]})::bigint AS hi FROM {table.sql}"  # noqa: S608, E501


def buckets_query(table: Table, method: str) -> str:
    """The same hashes per range of the leading key: `$1`..`$2` cut in BUCKETS ranges."""
    h0, h1 = _hashes(method)
    bucket = f"width_bucket({table.key[0]}::float8, $1::float8, $2::float8 + 1, {BUCKETS})"
    return (
        f"SELECT {bucket} AS b, count(*) AS n, bit_xor({h0}) AS h0, "  # noqa: S608
        f"bit_xor({h1}) AS h1 FROM {table.sql} t GROUP BY 1 ORDER BY 1"
    )


async def method_for(conn: asyncpg.Connection, table: Table) -> str:
    """record-hash unless a column type has no extended hash function (point, json...)."""
    if not table.key:
        return ORDERED_TEXT
    # A savepoint: the probe's error must not end the snapshot's transaction.
    await conn.execute("SAVEPOINT hash_probe")
    try:
        await conn.fetchval(
            f"SELECT hash_record_extended(t, 0) FROM {table.sql} t LIMIT 1"  # noqa: S608
        )
    except asyncpg.PostgresError:
        await conn.execute("ROLLBACK TO SAVEPOINT hash_probe")
        return TEXT_HASH
    await conn.execute("RELEASE SAVEPOINT hash_probe")
    return RECORD_HASH


async def sequences(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        r"""
        SELECT n.nspname || '.' || c.relname AS name, pg_sequence_last_value(c.oid) AS last,
               quote_ident(tn.nspname) || '.' || quote_ident(t.relname) AS tsql,
               tn.nspname || '.' || t.relname || '.' || a.attname AS col,
               quote_ident(a.attname) AS csql
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
             AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
             AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_class t ON t.oid = d.refobjid
        LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%' ORDER BY 1
        """
    )
    return rows


async def column_max(conn: asyncpg.Connection, table_sql: str, column_sql: str) -> int | None:
    value = await conn.fetchval(f"SELECT max({column_sql})::bigint FROM {table_sql}")  # noqa: S608
    return None if value is None else int(value)


async def grants(conn: asyncpg.Connection) -> list[str]:
    """Owners and privileges of tables, views, sequences and schemas, one line each."""
    rows = await conn.fetch(
        r"""
        SELECT n.nspname || '.' || c.relname AS object, pg_get_userbyid(c.relowner) AS owner,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS who,
               a.privilege_type AS what
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN LATERAL aclexplode(c.relacl) a ON true
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
        UNION ALL
        SELECT 'schema ' || n.nspname, pg_get_userbyid(n.nspowner),
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               a.privilege_type
        FROM pg_namespace n LEFT JOIN LATERAL aclexplode(n.nspacl) a ON true
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
        """
    )
    found = set()
    for row in rows:
        found.add(f"{row['object']}: owner {row['owner']}")
        if row["who"]:
            found.add(f"{row['object']}: {row['what']} to {row['who']}")
    return sorted(found)
