"""What a restored copy must match: per-table row counts and content hashes, sequences,
extensions, privileges and the schema head.

Each table is read in one sequential pass: its row count and two 64-bit row hashes
(`hash_record_extended` with seeds 0 and 1: binary, no text conversion) combined with XOR.
Every row's hash covers its primary key, so the digest changes when any row's content, key
or presence changes, and needs no sort: it costs a small share of a restore (see
docs/BENCHMARKS.md). Column types without a hash function fall back to hashing the row's
text; a table without a primary key is hashed as its rows' text in row order.

At dump time the source is also cut into 64 ranges of its leading integer key (hashed the
same way, in the same pass); when a copy's digest differs, the copy is cut along the same
ranges, and `compare` names the first range that differs. Several connections share the
work; given an exported snapshot (`pg_export_snapshot()`) they all read exactly what
`pg_dump --snapshot` dumps. Row text depends on session settings, so they are pinned.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import asyncpg

from pipelines.backups import fingerprint_sql as q

MASK = (1 << 64) - 1

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
class Bucket:
    number: int
    low: int  # leading key values from low to high (inclusive)
    high: int
    rows: int
    digest: str


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    digest: str
    key: list[str]
    method: str
    bounds: list[int] | None = None  # [min, max] of the leading integer key, when bucketed
    buckets: list[Bucket] = field(default_factory=list)


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
                    **{**t, "buckets": [Bucket(**b) for b in t.get("buckets", [])]}
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


def _hex(count: int, h0: int, h1: int) -> str:
    return f"{count}:{h0 & MASK:016x}{h1 & MASK:016x}"


def _edges(lo: int, hi: int, number: int) -> tuple[int, int]:
    """The key values width_bucket puts in bucket `number` of lo..hi."""
    width = hi + 1 - lo
    return (
        lo - (-(number - 1) * width // q.BUCKETS),
        lo - (-number * width // q.BUCKETS) - 1,
    )


async def _hash_table(
    conn: asyncpg.Connection, table: q.Table, bucket: bool, bounds: list[int] | None
) -> TableFingerprint:
    method = await q.method_for(conn, table)
    if method == q.ORDERED_TEXT:
        row = await conn.fetchrow(q.digest_query(table, method))
        return TableFingerprint(row["n"], f"{row['n']}:{row['md5']}", table.key, method)
    if (bucket or bounds) and table.leading_integer:
        if bounds is None:
            found = await conn.fetchrow(q.bounds_query(table))
            bounds = None if found["lo"] is None else [found["lo"], found["hi"]]
        if bounds is not None:
            lo, hi = bounds
            buckets, n, h0, h1 = [], 0, 0, 0
            for row in await conn.fetch(q.buckets_query(table, method), lo, hi):
                low, high = _edges(lo, hi, row["b"])
                buckets.append(
                    Bucket(row["b"], low, high, row["n"], _hex(row["n"], row["h0"], row["h1"]))
                )
                n, h0, h1 = n + row["n"], h0 ^ row["h0"], h1 ^ row["h1"]
            return TableFingerprint(n, _hex(n, h0, h1), table.key, method, bounds, buckets)
    row = await conn.fetchrow(q.digest_query(table, method))
    return TableFingerprint(row["n"], _hex(row["n"], row["h0"], row["h1"]), table.key, method)


async def _open(url: str, snapshot: str | None) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.execute(q.SESSION)
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return conn


async def _worker(
    url: str,
    snapshot: str | None,
    queue: asyncio.Queue[q.Table],
    bucket: bool,
    bounds: dict[str, list[int]],
) -> dict[str, TableFingerprint]:
    conn = await _open(url, snapshot)
    done: dict[str, TableFingerprint] = {}
    try:
        while not queue.empty():
            table = queue.get_nowait()
            done[table.name] = await _hash_table(conn, table, bucket, bounds.get(table.name))
    finally:
        await conn.close()
    return done


async def take_async(
    url: str,
    *,
    snapshot: str | None = None,
    jobs: int = 2,
    buckets: bool = False,
    bounds: dict[str, list[int]] | None = None,
) -> Fingerprint:
    """Fingerprint the database at `url` (a superuser or owner URL: it reads every table).

    With `snapshot`, every connection imports that exported snapshot, so the result
    describes exactly what a `pg_dump --snapshot` of it contains. `buckets` cuts every
    table with a leading integer key in ranges; `bounds` cuts the named tables along the
    ranges another fingerprint used.
    """
    started = time.monotonic()
    conn = await _open(url, snapshot)
    try:
        # Sequences first: they are not transactional, and pg_dump reads them later, so a
        # sound copy holds at least these values.
        sequences = {}
        for row in await q.sequences(conn):
            biggest = await q.column_max(conn, row["tsql"], row["csql"]) if row["col"] else None
            sequences[row["name"]] = SequenceState(row["last"], row["col"], biggest)
        tables = await q.tables(conn)
        database = await conn.fetchval("SELECT current_database()")
        version = await conn.fetchval("SHOW server_version")
        head = None
        if await conn.fetchval("SELECT to_regclass('public.alembic_version')") is not None:
            head = await conn.fetchval("SELECT version_num FROM public.alembic_version")
        extensions = {
            r["extname"]: r["extversion"]
            for r in await conn.fetch("SELECT extname, extversion FROM pg_extension")
        }
        grants = await q.grants(conn)
    finally:
        await conn.close()
    queue: asyncio.Queue[q.Table] = asyncio.Queue()
    for table in sorted(tables, key=lambda t: -t.pages):  # biggest first balances the jobs
        queue.put_nowait(table)
    workers = max(1, min(jobs, len(tables)))
    results = await asyncio.gather(
        *(_worker(url, snapshot, queue, buckets, bounds or {}) for _ in range(workers))
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


def take(url: str, *, jobs: int = 2, buckets: bool = False) -> Fingerprint:
    return asyncio.run(take_async(url, jobs=jobs, buckets=buckets))


def verify(expected: Fingerprint, url: str, *, jobs: int = 2) -> tuple[Fingerprint, list[Mismatch]]:
    """The copy at `url` against `expected`; a table whose content differs is then cut along
    the ranges `expected` recorded, so the mismatch names where it differs."""
    copy = take(url, jobs=jobs)
    found = compare(expected, copy)
    bounds: dict[str, list[int]] = {}
    for mismatch in found:
        name = mismatch.object.removeprefix("table ")
        recorded = expected.tables[name].bounds if mismatch.kind == "content" else None
        if recorded:
            bounds[name] = recorded
    if bounds:
        located = asyncio.run(take_async(url, jobs=jobs, bounds=bounds))
        tables = {**copy.tables, **{n: located.tables[n] for n in bounds}}
        copy = Fingerprint(**{**copy.__dict__, "tables": tables})
        found = compare(expected, copy)
    return copy, found


# -- comparing -----------------------------------------------------------------


def _first_difference(source: TableFingerprint, copy: TableFingerprint) -> str:
    """Where two tables of equal row count differ, as a range of the leading key."""
    if source.buckets and copy.buckets and source.bounds == copy.bounds:
        ours = {b.number: b for b in copy.buckets}
        theirs = {b.number: b for b in source.buckets}
        for number in sorted(set(ours) | set(theirs)):
            if ours.get(number) != theirs.get(number):
                edge = theirs.get(number) or ours[number]
                return f"content differs: rows with {source.key[0]} from {edge.low} to {edge.high}"
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
