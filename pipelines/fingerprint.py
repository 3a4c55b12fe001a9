"""What a restored copy must match: per-table row counts and ordered content hashes,
sequences, extensions, privileges and the schema head.

Tables are hashed in key order, in chunks of `CHUNK_ROWS` rows found by keyset pagination on
the primary key, so no query builds a string near PostgreSQL's 1 GB limit and a difference
can be located to a key range. Several connections share the work; given an exported
snapshot (`pg_export_snapshot()`) they all read exactly what `pg_dump --snapshot` dumps.
Row text depends on session settings (time zone, float digits...), so they are pinned.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import asyncpg

CHUNK_ROWS = 100_000
SESSION = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0"
)

Kind = Literal[
    "schema head",
    "missing table",
    "unexpected table",
    "row count",
    "content",
    "sequence behind",
    "missing sequence",
    "extension",
    "grant missing",
    "grant unexpected",
]


@dataclass(frozen=True)
class Chunk:
    rows: int
    md5: str
    last_key: list[str]


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    digest: str
    key: list[str]
    chunks: list[Chunk] = field(default_factory=list)


@dataclass(frozen=True)
class SequenceState:
    last_value: int | None
    column: str | None = None  # "schema.table.column" it feeds, when owned
    column_max: int | None = None


@dataclass(frozen=True)
class Fingerprint:
    database: str
    server_version: str
    schema_head: str | None
    tables: dict[str, TableFingerprint]
    sequences: dict[str, SequenceState]
    extensions: dict[str, str]
    grants: list[str]
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(
            database=data["database"],
            server_version=data["server_version"],
            schema_head=data["schema_head"],
            tables={
                name: TableFingerprint(
                    t["rows"], t["digest"], t["key"], [Chunk(**c) for c in t["chunks"]]
                )
                for name, t in data["tables"].items()
            },
            sequences={n: SequenceState(**s) for n, s in data["sequences"].items()},
            extensions=data["extensions"],
            grants=data["grants"],
            seconds=data.get("seconds", 0.0),
        )


@dataclass(frozen=True)
class Mismatch:
    kind: Kind
    object: str
    detail: str

    def __str__(self) -> str:
        return f"{self.object}: {self.detail}"


# -- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    name: str  # schema.table, quoted for SQL in `sql`
    sql: str
    key: list[tuple[str, str, bool]]  # (quoted column, type, collatable)
    pages: int


async def _tables(conn: asyncpg.Connection) -> list[_Table]:
    rows = await conn.fetch(
        r"""
        SELECT c.oid, n.nspname, c.relname, c.relpages,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 2, 3
        """
    )
    tables = []
    for row in rows:
        key = await conn.fetch(
            """
            SELECT quote_ident(a.attname) AS col, format_type(a.atttypid, a.atttypmod) AS type,
                   a.attcollation <> 0 AS collatable
            FROM pg_index i
            JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord
            """,
            row["oid"],
        )
        tables.append(
            _Table(
                f"{row['nspname']}.{row['relname']}",
                row["sql"],
                [(k["col"], k["type"], k["collatable"]) for k in key],
                row["relpages"],
            )
        )
    return tables


def _chunk_query(table: _Table, first: bool) -> str:
    if not table.key:  # no primary key: the whole row orders it, in one chunk
        return (
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' "  # noqa: S608
            f"ORDER BY t::text COLLATE \"C\"), '')) AS md5, NULL::text[] AS last "
            f"FROM {table.sql} t"
        )
    cols = [f'{c} COLLATE "C"' if collatable else c for c, _, collatable in table.key]
    order = ", ".join(cols)
    keys = ", ".join(f"{c} AS k{i}" for i, (c, _, _) in enumerate(table.key))
    korder = ", ".join(
        f'k{i} COLLATE "C"' if collatable else f"k{i}"
        for i, (_, _, collatable) in enumerate(table.key)
    )
    kdesc = ", ".join(f"{part} DESC" for part in korder.split(", "))
    where = ""
    if not first:
        left = ", ".join(cols)
        right = ", ".join(f"${i + 2}::text::{t}" for i, (_, t, _) in enumerate(table.key))
        where = f"WHERE ({left}) > ({right})"
    last = ", ".join(f"k{i}::text" for i in range(len(table.key)))
    # Identifiers come from quote_ident and types from format_type; values are parameters.
    chunk = f"SELECT t::text AS r, {keys} FROM {table.sql} t {where} ORDER BY {order} LIMIT $1"  # noqa: S608
    digest = f"md5(coalesce(string_agg(r, E'\\n' ORDER BY {korder}), ''))"
    tail = f"(SELECT ARRAY[{last}] FROM c ORDER BY {kdesc} LIMIT 1)"  # noqa: S608
    return (
        f"WITH c AS MATERIALIZED ({chunk}) "  # noqa: S608
        f"SELECT count(*) AS n, {digest} AS md5, {tail} AS last FROM c"
    )


async def _hash_table(conn: asyncpg.Connection, table: _Table, chunk_rows: int) -> TableFingerprint:
    chunks: list[Chunk] = []
    first, rest = _chunk_query(table, True), _chunk_query(table, False)
    last: list[str] | None = None
    while True:
        if not table.key:
            row = await conn.fetchrow(first)
        elif last is None:
            row = await conn.fetchrow(first, chunk_rows)
        else:
            row = await conn.fetchrow(rest, chunk_rows, *last)
        if row["n"] == 0 and chunks:
            break
        chunks.append(Chunk(row["n"], row["md5"], list(row["last"] or [])))
        if not table.key or row["n"] < chunk_rows:
            break
        last = list(row["last"])
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(f"{chunk.rows}:{chunk.md5}\n".encode())
    return TableFingerprint(
        sum(c.rows for c in chunks),
        digest.hexdigest(),
        [c for c, _, _ in table.key],
        chunks,
    )


async def _sequences(conn: asyncpg.Connection) -> dict[str, SequenceState]:
    rows = await conn.fetch(
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
    found = {}
    for row in rows:
        column_max = None
        if row["col"]:
            query = f"SELECT max({row['csql']})::bigint FROM {row['tsql']}"  # noqa: S608 - quote_ident
            column_max = await conn.fetchval(query)
        found[row["name"]] = SequenceState(row["last"], row["col"], column_max)
    return found


async def _grants(conn: asyncpg.Connection) -> list[str]:
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
    grants = set()
    for row in rows:
        grants.add(f"{row['object']}: owner {row['owner']}")
        if row["who"]:
            grants.add(f"{row['object']}: {row['what']} to {row['who']}")
    return sorted(grants)


async def _worker(
    url: str, snapshot: str | None, queue: asyncio.Queue[_Table], chunk_rows: int
) -> dict[str, TableFingerprint]:
    conn = await asyncpg.connect(url)
    done: dict[str, TableFingerprint] = {}
    try:
        await conn.execute(SESSION)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if snapshot:
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            while not queue.empty():
                table = queue.get_nowait()
                done[table.name] = await _hash_table(conn, table, chunk_rows)
    finally:
        await conn.close()
    return done


async def take_async(
    url: str, *, snapshot: str | None = None, jobs: int = 2, chunk_rows: int = CHUNK_ROWS
) -> Fingerprint:
    """Fingerprint the database at `url` (a superuser or owner URL: it reads every table).

    With `snapshot`, every connection imports that exported snapshot, so the result
    describes exactly what a `pg_dump --snapshot` of it contains.
    """
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SESSION)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if snapshot:
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            # Sequences first: they are not transactional, and pg_dump reads them later, so
            # a sound copy holds at least these values.
            sequences = await _sequences(conn)
            tables = await _tables(conn)
            database = await conn.fetchval("SELECT current_database()")
            version = await conn.fetchval("SHOW server_version")
            head = None
            if await conn.fetchval("SELECT to_regclass('public.alembic_version')") is not None:
                head = await conn.fetchval("SELECT version_num FROM public.alembic_version")
            extensions = {
                r["extname"]: r["extversion"]
                for r in await conn.fetch("SELECT extname, extversion FROM pg_extension")
            }
            grants = await _grants(conn)
    finally:
        await conn.close()
    queue: asyncio.Queue[_Table] = asyncio.Queue()
    for table in sorted(tables, key=lambda t: -t.pages):  # biggest first balances the jobs
        queue.put_nowait(table)
    results = await asyncio.gather(
        *(_worker(url, snapshot, queue, chunk_rows) for _ in range(max(1, min(jobs, len(tables)))))
    )
    hashed = {name: fp for result in results for name, fp in result.items()}
    return Fingerprint(
        database=str(database),
        server_version=str(version),
        schema_head=head,
        tables={name: hashed[name] for name in sorted(hashed)},
        sequences=sequences,
        extensions=extensions,
        grants=grants,
        seconds=round(time.monotonic() - started, 3),
    )


def take(url: str, *, jobs: int = 2, chunk_rows: int = CHUNK_ROWS) -> Fingerprint:
    return asyncio.run(take_async(url, jobs=jobs, chunk_rows=chunk_rows))


# -- comparing -----------------------------------------------------------------


def _first_difference(source: TableFingerprint, copy: TableFingerprint) -> str:
    """Where two tables of equal row count first differ, as a key range."""
    key = ", ".join(source.key) or "row"
    after: list[str] = []
    for ours, theirs in zip(source.chunks, copy.chunks, strict=False):
        if ours != theirs:
            low = f"after ({', '.join(after)}) " if after else ""
            high = f"up to ({', '.join(ours.last_key)})" if ours.last_key else "to the end"
            return f"content differs: rows with ({key}) {low}{high}"
        after = ours.last_key
    return "content differs"


def compare(source: Fingerprint, copy: Fingerprint) -> list[Mismatch]:
    """Everything in which `copy` fails to reproduce `source`, one entry per problem."""
    found: list[Mismatch] = []
    if source.schema_head != copy.schema_head:
        found.append(
            Mismatch(
                "schema head",
                "alembic_version",
                f"copy is at {copy.schema_head or 'no revision'}, "
                f"source at {source.schema_head or 'no revision'}",
            )
        )
    for name, theirs in source.tables.items():
        ours = copy.tables.get(name)
        label = f"table {name}"
        if ours is None:
            found.append(
                Mismatch(
                    "missing table",
                    label,
                    f"missing from the copy ({theirs.rows} rows in the source)",
                )
            )
        elif ours.rows != theirs.rows:
            found.append(
                Mismatch(
                    "row count", label, f"{ours.rows} rows in the copy, {theirs.rows} in the source"
                )
            )
        elif ours.digest != theirs.digest:
            found.append(Mismatch("content", label, _first_difference(theirs, ours)))
    for name in sorted(set(copy.tables) - set(source.tables)):
        found.append(
            Mismatch("unexpected table", f"table {name}", "in the copy but not in the source")
        )
    for name, theirs_seq in source.sequences.items():
        ours_seq = copy.sequences.get(name)
        label = f"sequence {name}"
        if ours_seq is None:
            found.append(Mismatch("missing sequence", label, "missing from the copy"))
            continue
        if (theirs_seq.last_value or 0) > (ours_seq.last_value or 0):
            found.append(
                Mismatch(
                    "sequence behind",
                    label,
                    f"at {ours_seq.last_value} in the copy, {theirs_seq.last_value} in the source",
                )
            )
    for name, state in copy.sequences.items():
        if state.column_max is not None and (state.last_value or 0) < state.column_max:
            found.append(
                Mismatch(
                    "sequence behind",
                    f"sequence {name}",
                    f"at {state.last_value} but {state.column} already holds {state.column_max}: "
                    "the next insert would collide",
                )
            )
    for name, version in source.extensions.items():
        if copy.extensions.get(name) != version:
            have = copy.extensions.get(name)
            found.append(
                Mismatch(
                    "extension",
                    f"extension {name}",
                    f"version {have} in the copy, {version} in the source"
                    if have
                    else "missing from the copy",
                )
            )
    # A missing or unexpected table already says all about its own privileges.
    tables = {m.object.removeprefix("table ") for m in found if m.kind.endswith("table")}

    def grants(of: Fingerprint) -> set[str]:
        return {g for g in of.grants if g.split(": ", 1)[0] not in tables}

    ours_grants, theirs_grants = grants(copy), grants(source)
    found.extend(
        Mismatch(
            "grant missing", g.split(": ", 1)[0], f"missing in the copy: {g.split(': ', 1)[1]}"
        )
        for g in sorted(theirs_grants - ours_grants)
    )
    found.extend(
        Mismatch(
            "grant unexpected", g.split(": ", 1)[0], f"only in the copy: {g.split(': ', 1)[1]}"
        )
        for g in sorted(ours_grants - theirs_grants)
    )
    return found
