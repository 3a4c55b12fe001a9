"""`invoke bench.pitr`: the numbers of point-in-time recovery, in one throwaway cluster.

A durable PostgreSQL 18 cluster with the service's schema, filled like `bench.drill`'s
(`--gigabytes`), its WAL streamed by the same receiver the agent runs (pg_receivewal
--synchronous on a slot). Then, in one run:

1. RPO under steady writes: one order committed every 20 ms; twice a second the current WAL
   position is noted and the time until the archive has flushed it is measured. That lag
   is how much a loss of the server at that moment would cost;
2. a base backup (a physical snapshot), then WAL to replay: every item updated and steady
   orders; T is picked between two committed orders, a few more follow;
3. the restore to T as `backup.restore --to-time` runs it (copy, WAL staged with sha256
   checks, replay, promote), then the verification: every order committed at or before T
   is in the copy, none after;
4. the same restore by hand, for comparison: the base backup copied, the WAL copied without
   checks, PostgreSQL started with the same recovery settings, until it promotes;
5. kill -9 of every PostgreSQL process under steady writes: the newest commit the archive
   holds against the newest commit the client saw acknowledged.

Goals: RPO <= 1 s under steady writes (the worst lag seen), <= 5 s after kill -9; restore
plus verification <= 1.2 x the bare restore and replay. The replay rate is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.bench.drill_bench import _generate, _memory_gib
from pipelines.bench.results import write as write_results
from pipelines.host.ports import free_port
from pipelines.postgres.cluster import Cluster, data_home

WRITE_EVERY_S = 0.02


def _say(message: str) -> None:
    print(f"bench.pitr: {message}", flush=True)


class Writer:
    """One order per commit, steadily; remembers (id, acknowledged at) of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: list[tuple[int, float]] = []
        self.stopping = threading.Event()
        self.gate = threading.Lock()
        self.errors = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            while not self.stopping.is_set():
                with self.gate:
                    try:
                        order = await conn.fetchval(
                            "INSERT INTO orders (user_id, total_cents) VALUES (1, 4242) "
                            "RETURNING id"
                        )
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        self.errors += 1
                        return
                    self.acked.append((int(order), time.time()))
                await asyncio.sleep(WRITE_EVERY_S)
        finally:
            if not conn.is_closed():
                conn.terminate()

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)


def _archive_lags(url: str, seconds: float) -> list[float]:
    async def go() -> list[float]:
        conn = await asyncpg.connect(url)
        lags = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
                mark = time.monotonic()
                while time.monotonic() - mark < 30:
                    done = await conn.fetchval(
                        "SELECT flush_lsn >= $1 FROM pg_stat_replication "
                        "WHERE application_name = 'drydock-wal-archive'",
                        lsn,
                    )
                    if done:
                        break
                    await asyncio.sleep(0.005)
                lags.append(time.monotonic() - mark)
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        return lags

    return asyncio.run(go())


def _environment(password: str, state: Path) -> Any:
    """Staging's layout in `state`, its own durable cluster started, on a free port."""
    from infra.spec import load_stack_file
    from pipelines.targets.local.environment import LocalEnvironment
    from pipelines.targets.local.runtime import NAMES, ensure_secrets

    spec = dataclasses.replace(load_stack_file("staging"), local_postgres_port=free_port())
    env = LocalEnvironment("staging", state_dir=state, spec=spec)
    env.layout.create()
    env.secrets.ensure(NAMES.superuser, lambda: password)
    ensure_secrets(env.secrets)
    cluster = env.cluster()
    cluster.initialise(password)
    with (cluster.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = '256MB'\nmax_wal_size = '4GB'\n")
    cluster.start()
    return env


def _bare_restore(env: Any, restored: Any, moment: float, workdir: Path) -> dict[str, float]:
    """The same recovery by hand: copy, copy the WAL unchecked, start, wait for promotion."""
    from pipelines.targets.local.backups import recovery_cluster as pitr
    from pipelines.targets.local.backups.manifest import superuser
    from pipelines.targets.local.backups.wal import segment_name, settled
    from pipelines.targets.local.backups.window import base_backups, recovery_window

    window = recovery_window(env)
    stretch = window.covering_time(moment)
    assert stretch is not None
    backup = next(b for b in base_backups(env) if b.snapshot.id == stretch.backup_id)
    live = env.cluster()
    cluster = Cluster(
        home=workdir, port=free_port(), superuser=live.superuser, binaries=live.binaries
    )
    mark = time.monotonic()
    workdir.mkdir(mode=0o700)
    (workdir / "log").mkdir()
    shutil.copytree(backup.snapshot.base, cluster.data_dir, symlinks=True)
    (workdir / "wal").mkdir()
    size = window.segment_bytes
    for segment in stretch.segments:
        name = segment_name(segment.timeline, segment.segno, size)
        shutil.copyfile(settled(segment).path, workdir / "wal" / name)
    copied = time.monotonic() - mark
    pitr.configure_recovery(cluster, moment, None)
    pitr.hand_over(workdir, cluster)
    mark = time.monotonic()
    try:
        pitr.replay(cluster, superuser(env).password, 3600)
        replayed = time.monotonic() - mark
    finally:
        pitr.remove_cluster(cluster)
    return {"copy_s": copied, "replay_s": replayed, "total_s": copied + replayed}


async def _verify(url: str, acked: list[tuple[int, float]], moment: float) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id FROM orders WHERE id = ANY($1::bigint[])", [i for i, _ in acked]
        )
        present = {r["id"] for r in rows}
    finally:
        await conn.close()
    problems = [f"order {i} missing" for i, at in acked if at <= moment and i not in present]
    late = [f"order {i} after T present" for i, at in acked if at > moment and i in present]
    return problems + late


def _kill_everything(cluster: Cluster) -> None:
    """SIGKILL to the postmaster and every process it started."""
    pid = cluster.pid()
    if pid is None:
        return
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def run(gigabytes: float = 0.1, steady_s: float = 20.0) -> dict[str, Any]:
    from pipelines.backups.pitr_report import iso_ms
    from pipelines.targets.local.backups import pitr
    from pipelines.targets.local.backups.receiver import WalReceiver
    from pipelines.targets.local.backups.snapshot import take_snapshot
    from pipelines.targets.local.backups.wal import archive_dir, read_tail, segments
    from pipelines.targets.local.ledger import FileLedger
    from service.migrate import upgrade

    scratch = Path(tempfile.mkdtemp(prefix="drydock-bench-pitr-"))
    password = os.urandom(16).hex()
    env = _environment(password, scratch / "state")
    cluster = env.cluster()
    receiver = WalReceiver(env)
    stop = threading.Event()

    def archive() -> None:  # what the agent's loop does
        while not stop.is_set():
            receiver.tick()
            stop.wait(0.25)

    ticker = threading.Thread(target=archive, daemon=True)
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "memory_gib": _memory_gib()}}
    try:
        env.database.ensure_roles()
        upgrade(env.database.url("owner"))
        url = env.database.url("superuser").rsplit("/", 1)[0] + "/drydock"
        _say(f"generating about {gigabytes:g} GB...")
        counts = asyncio.run(_generate(url, gigabytes))
        results["database_bytes"] = counts["bytes"]
        ticker.start()
        _say("taking the base backup (a physical snapshot)...")
        mark = time.monotonic()
        take_snapshot(env, "manual", reason="bench.pitr", ledger=FileLedger(scratch / "l.jsonl"))
        results["basebackup_s"] = round(time.monotonic() - mark, 2)
        _say(f"RPO under steady writes: {steady_s:g} s of one commit every 20 ms")
        with Writer(url) as writer:
            lags = sorted(_archive_lags(url, steady_s))
            _say("WAL to replay: every item updated, then every order")
            asyncio.run(_execute(url, "UPDATE items SET stock = stock + 1"))
            asyncio.run(_execute(url, "UPDATE orders SET total_cents = total_cents + 0"))
            with writer.gate:
                time.sleep(0.2)
                moment = time.time()
                time.sleep(0.2)
            time.sleep(2)
        results["steady_writes"] = {
            "samples": len(lags),
            "archive_lag_p50_s": round(lags[len(lags) // 2], 4),
            "archive_lag_max_s": round(lags[-1], 4),
        }
        _say(f"archive lag p50 {lags[len(lags) // 2]:.3f} s, max {lags[-1]:.3f} s")
        _wait_flushed(url)
        _say("restore to T as backup.restore --to-time runs it, then verification...")
        mark = time.monotonic()
        restored = pitr.restore_to_point(env, to_time=iso_ms(moment), log=lambda _: None)
        problems = asyncio.run(_verify(restored.url(password), writer.acked, moment))
        total = time.monotonic() - mark
        pitr.discard_restore(env, restored.id)
        replay_mb = restored.replayed_bytes / 1e6
        results["restore"] = {
            "durations_s": restored.durations,
            "restore_and_verify_s": round(total, 2),
            "replayed_mb": round(replay_mb, 1),
            "replay_mb_s": round(replay_mb / restored.durations["replay_s"], 1),
            "orders_checked": len(writer.acked),
            "problems": problems[:10],
        }
        _say("the same restore by hand (no checks)...")
        bare = _bare_restore(env, restored, moment, data_home(scratch, "bare"))
        results["bare"] = {k: round(v, 2) for k, v in bare.items()}
        _say("kill -9 of PostgreSQL under steady writes...")
        with Writer(url) as killed:
            time.sleep(3)
            _kill_everything(cluster)
            time.sleep(1)
        stop.set()
        ticker.join(5)
        receiver.stop()
        newest_acked = max(at for _, at in killed.acked)
        chain = segments(archive_dir(env))
        tail = read_tail(cluster.binaries, chain, chain[0].path.stat().st_size)
        archived = tail.last_commit.timestamp() if tail.last_commit else 0.0
        results["kill_9"] = {
            "orders_acknowledged": len(killed.acked),
            "newest_acknowledged": iso_ms(newest_acked),
            "newest_archived_commit": iso_ms(archived),
            "rpo_s": round(max(0.0, newest_acked - archived), 4),
        }
    finally:
        stop.set()
        receiver.stop()
        if cluster.is_running():
            cluster.stop("immediate")
        shutil.rmtree(env.layout.postgres, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    restore = results["restore"]
    results["ratios"] = {
        "restore_and_verify_over_bare": round(
            restore["restore_and_verify_s"] / results["bare"]["total_s"], 3
        )
    }
    results["goals"] = {
        "RPO <= 1 s under steady writes": results["steady_writes"]["archive_lag_max_s"] <= 1.0,
        "RPO <= 5 s after kill -9": results["kill_9"]["rpo_s"] <= 5.0,
        "restore + verify <= 1.2 x bare restore + replay": results["ratios"][
            "restore_and_verify_over_bare"
        ]
        <= 1.2,
        "copy verified to the row": not restore["problems"],
    }
    results["requested_gb"] = gigabytes
    return results


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _wait_flushed(url: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            for _ in range(600):
                if await conn.fetchval(
                    "SELECT flush_lsn >= pg_current_wal_lsn() FROM pg_stat_replication "
                    "WHERE application_name = 'drydock-wal-archive'"
                ):
                    return
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    asyncio.run(go())


def summary(results: dict[str, Any]) -> str:
    steady, restore, bare = results["steady_writes"], results["restore"], results["bare"]
    lines = [
        f"database {results['database_bytes'] / 1e9:.2f} GB; base backup "
        f"{results['basebackup_s']:.1f} s",
        f"steady writes: archive lag p50 {steady['archive_lag_p50_s']:.3f} s, max "
        f"{steady['archive_lag_max_s']:.3f} s over {steady['samples']} samples",
        f"restore to T + verify {restore['restore_and_verify_s']:.1f} s "
        f"({restore['durations_s']}); bare copy + replay {bare['total_s']:.1f} s; "
        f"ratio {results['ratios']['restore_and_verify_over_bare']:.2f}",
        f"replay {restore['replayed_mb']:.0f} MB at {restore['replay_mb_s']:.1f} MB/s",
        f"kill -9: RPO {results['kill_9']['rpo_s']:.3f} s "
        f"({results['kill_9']['orders_acknowledged']} orders acknowledged)",
    ]
    lines += [
        f"goal   {'met ' if ok else 'MISSED'} {goal}" for goal, ok in results["goals"].items()
    ]
    return "\n".join(lines)


def main(gigabytes: float = 0.1, out: str = "reports/bench-pitr.json") -> int:
    results = run(gigabytes)
    write_results(results, out, summary(results))
    return 0 if all(results["goals"].values()) else 1
