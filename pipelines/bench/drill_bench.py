"""`invoke bench.drill`: the restore drill on about 1 GB, against a bare dump and restore.

In one throwaway PostgreSQL 18 cluster (durable, as the local target's), the service's
schema is filled with several million rows (users, items, orders, order lines) by
`INSERT ... SELECT generate_series`. Then, in the same run and on the same data:

1. bare: `pg_dump -Fc` of the database, then `pg_restore -j 2` into a new database;
2. the drill, as `invoke drill.restore` runs it (fingerprinted dump, restore, verification,
   a replica of the service on the copy, the read-only smoke, RTO and RPO).

Goals checked: drill RTO <= 1.3 x the bare dump + restore; verification <= 25 % of the
drill's restore time; RPO reported. The results are printed and written as JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.bench.results import write as write_results
from pipelines.host.ports import free_port
from pipelines.postgres import tools as pgtools
from pipelines.postgres.cluster import Cluster, data_home

# Rows per gigabyte of table data (with their indexes the database is about 1.4x that).
ROWS_PER_GB = {"users": 800_000, "items": 400_000, "orders": 2_000_000, "order_lines": 5_000_000}

GENERATE = """
SET session_replication_role = replica;  -- no FK triggers while bulk loading
INSERT INTO users (email, password_hash, role, created_at)
SELECT 'user' || g || '@example.com',
       '$argon2id$v=19$m=65536,t=3,p=4$' || md5(g::text) || '$' || md5((g * 7)::text),
       CASE WHEN g % 1000 = 0 THEN 'admin' ELSE 'user' END,
       now() - (g % 86400) * interval '1 minute'
FROM generate_series(1, {users}) g;
INSERT INTO items (sku, name, price_cents, stock, version, updated_at)
SELECT 'SKU-' || lpad(g::text, 8, '0'), 'item number ' || g || ' ' || md5(g::text),
       100 + g % 10000, g % 500, 1 + g % 5, now() - (g % 1000) * interval '1 hour'
FROM generate_series(1, {items}) g;
INSERT INTO orders (user_id, status, total_cents, idempotency_key, request_hash, created_at)
SELECT 1 + g % {users}, 'placed', 1000 + g % 100000, md5(g::text), md5((g * 3)::text) ||
       md5((g * 5)::text), now() - (g % 100000) * interval '1 minute'
FROM generate_series(1, {orders}) g;
INSERT INTO order_lines (order_id, item_id, sku, quantity, unit_price_cents)
SELECT o, i, 'SKU-' || lpad(i::text, 8, '0'), 1 + o % 4, 100 + i % 10000
FROM (
    SELECT 1 + (g - 1) % {orders} AS o,
           1 + ((1 + (g - 1) % {orders}) * 13 + ((g - 1) / {orders}) * 7919) % {items} AS i
    FROM generate_series(1, {order_lines}) g
) lines
ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('users', 'id'), {users});
SELECT setval(pg_get_serial_sequence('items', 'id'), {items});
SELECT setval(pg_get_serial_sequence('orders', 'id'), {orders});
INSERT INTO heartbeat (id, beat_at, instance) VALUES (1, now(), 'bench')
ON CONFLICT (id) DO UPDATE SET beat_at = now();
RESET session_replication_role;
"""


def _say(message: str) -> None:
    print(f"bench.drill: {message}", flush=True)


def _environments(cluster: Cluster, password: str, state: Path) -> tuple[Any, Any]:
    """Production (the source) and staging (the drill's target) on the one cluster."""
    from infra.spec import load_stack_file
    from pipelines.targets.local.environment import LocalEnvironment
    from pipelines.targets.local.runtime import NAMES, ensure_secrets

    made = []
    shared: dict[str, str] = {NAMES.superuser: password}
    for name in ("production", "staging"):
        spec = dataclasses.replace(load_stack_file(name), local_postgres_port=cluster.port)
        env = LocalEnvironment(name, state_dir=state, spec=spec)
        env.layout.create()
        for secret, value in shared.items():
            env.secrets.ensure(secret, lambda value=value: value)  # type: ignore[misc]
        ensure_secrets(env.secrets)
        shared = {
            n: env.secrets.get(n)
            for n in (NAMES.superuser, NAMES.owner, NAMES.app, NAMES.jwt, NAMES.metrics)
        }
        made.append(env)
    return made[0], made[1]


async def _generate(url: str, scale: float) -> dict[str, int]:
    rows = {table: max(1, int(n * scale)) for table, n in ROWS_PER_GB.items()}
    sql = GENERATE.format(**rows)
    conn = await asyncpg.connect(url, timeout=30)
    try:
        await conn.execute("SET statement_timeout = 0")
        await conn.execute(sql)
        await conn.execute("VACUUM (ANALYZE)")
        counts = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - constant names
            for table in rows
        }
        counts["bytes"] = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    return counts


def _bare(cluster: Cluster, conn: pgtools.ConnInfo, workdir: Path) -> dict[str, float]:
    dump = workdir / "bare.pgdump"
    mark = time.monotonic()
    pgtools.run(
        cluster.binaries,
        "pg_dump",
        ["--format=custom", f"--file={dump}", *conn.args(), f"--dbname={conn.database}"],
        conn,
    )
    dumped = time.monotonic() - mark
    pgtools.create_database(conn, "bare_restore")
    mark = time.monotonic()
    pgtools.run(
        cluster.binaries,
        "pg_restore",
        [*conn.args(), "--dbname=bare_restore", "--jobs=2", str(dump)],
        conn,
    )
    restored = time.monotonic() - mark
    size = dump.stat().st_size
    pgtools.drop_database(conn, "bare_restore")
    dump.unlink()
    return {
        "dump_s": dumped,
        "restore_s": restored,
        "total_s": dumped + restored,
        "dump_bytes": size,
    }


def run(gigabytes: float = 1.0) -> dict[str, Any]:
    from pipelines.targets.local.backups import drill as drills
    from pipelines.targets.local.ledger import FileLedger
    from service.migrate import upgrade

    scratch = Path(tempfile.mkdtemp(prefix="drydock-bench-drill-"))
    home = data_home(scratch, "pg")
    password = os.urandom(16).hex()
    cluster = Cluster(home=home, port=free_port())
    cluster.initialise(password)
    with (cluster.data_dir / "postgresql.conf").open("a") as conf:
        conf.write(
            "shared_buffers = '512MB'\nmaintenance_work_mem = '512MB'\nmax_wal_size = '4GB'\n"
        )
    cluster.start()
    try:
        production, staging = _environments(cluster, password, scratch / "state")
        production.database.ensure_roles()
        upgrade(production.database.url("owner"))
        conn = pgtools.ConnInfo.from_url(production.database.url("superuser")).on("drydock")
        _say(f"generating about {gigabytes:g} GB in PostgreSQL on port {cluster.port}...")
        mark = time.monotonic()
        counts = asyncio.run(_generate(conn.url(), gigabytes))
        generated = time.monotonic() - mark
        _say(f"generated {counts['bytes'] / 1e9:.2f} GB in {generated:.0f} s: {counts}")
        _say("bare pg_dump -Fc, then pg_restore -j 2...")
        bare = _bare(cluster, conn, scratch)
        _say(f"bare: dump {bare['dump_s']:.1f} s, restore {bare['restore_s']:.1f} s")
        _say("the drill, as drill.restore runs it...")
        report = drills.run_drill(
            staging,
            production,
            reports_dir=scratch / "reports",
            ledger=FileLedger(scratch / "ledger.jsonl"),
            log=lambda line: print(f"  {line}", flush=True),
            ready_timeout_s=120,
        )
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return _results(gigabytes, counts, generated, bare, report)


def _results(
    gigabytes: float, counts: dict[str, int], generated: float, bare: dict[str, float], report: Any
) -> dict[str, Any]:
    phase = {p.name: p.seconds for p in report.phases}
    restore, verify = phase.get("restore", 0.0), phase.get("verify", 0.0)
    rto = report.rto_s or float("inf")
    goals = {
        "drill RTO <= 1.3 x bare dump + restore": rto <= 1.3 * bare["total_s"],
        "verification <= 25 % of the restore time": verify <= 0.25 * restore,
        "RPO reported": report.rpo_s is not None,
        "drill passed": report.ok,
    }
    return {
        "machine": {"cores": os.cpu_count(), "memory_gib": _memory_gib()},
        "requested_gb": gigabytes,
        "rows": {k: v for k, v in counts.items() if k != "bytes"},
        "database_bytes": counts["bytes"],
        "generate_s": round(generated, 1),
        "bare": {k: round(v, 2) for k, v in bare.items()},
        "drill": {
            "phases_s": phase,
            "dump_bytes": report.snapshot.get("size_bytes"),
            "rto_s": report.rto_s,
            "rpo_s": report.rpo_s,
            "ok": report.ok,
            "problems": report.problems(),
        },
        "ratios": {
            "rto_over_bare_total": round(rto / bare["total_s"], 3),
            "rto_over_bare_restore": round(rto / bare["restore_s"], 3),
            "verify_over_restore": round(verify / restore, 3) if restore else None,
        },
        "goals": goals,
    }


def _memory_gib() -> float:
    with open("/proc/meminfo") as handle:
        kib = int(handle.readline().split()[1])
    return round(kib / 1024 / 1024, 1)


def summary(results: dict[str, Any]) -> str:
    bare, drill, ratios = results["bare"], results["drill"], results["ratios"]
    phases = drill["phases_s"]
    lines = [
        f"database {results['database_bytes'] / 1e9:.2f} GB, rows {results['rows']}",
        f"bare   pg_dump -Fc {bare['dump_s']:.1f} s ({bare['dump_bytes'] / 1e6:.0f} MB), "
        f"pg_restore -j 2 {bare['restore_s']:.1f} s, total {bare['total_s']:.1f} s",
        f"drill  dump+fingerprint {phases.get('dump', 0):.1f} s, restore "
        f"{phases.get('restore', 0):.1f} s, verify {phases.get('verify', 0):.1f} s, "
        f"RTO {drill['rto_s']:.1f} s, RPO {drill['rpo_s']:.1f} s",
        f"ratios RTO/bare total {ratios['rto_over_bare_total']:.2f}, RTO/bare restore "
        f"{ratios['rto_over_bare_restore']:.2f}, "
        f"verify/restore {ratios['verify_over_restore']:.2f}",
    ]
    lines += [
        f"goal   {'met ' if ok else 'MISSED'} {goal}" for goal, ok in results["goals"].items()
    ]
    return "\n".join(lines)


def main(gigabytes: float = 1.0, out: str = "reports/bench-drill.json") -> int:
    results = run(gigabytes)
    write_results(results, out, summary(results))
    return 0 if all(results["goals"].values()) else 1
