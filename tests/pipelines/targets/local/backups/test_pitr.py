"""Point-in-time recovery on real PostgreSQL: the WAL archive pg_receivewal keeps, the
recoverable window, restores to a time and to an LSN into a cluster beside the live one,
and the faults (a missing segment, a damaged one, a target outside the window or in the
future), each refused with a clear error and nothing left behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.spec import load_stack_file
from pipelines.backups.pitr_report import iso_ms
from pipelines.host.ports import free_port
from pipelines.targets.local.backups import pitr
from pipelines.targets.local.backups.manifest import BackupError, superuser
from pipelines.targets.local.backups.receiver import WalReceiver
from pipelines.targets.local.backups.snapshot import take_snapshot
from pipelines.targets.local.backups.wal import archive_dir, segments
from pipelines.targets.local.backups.window import recovery_window
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import NAMES, ensure_secrets
from tests.pipelines.targets.local.backups.fixtures import SEED

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@dataclasses.dataclass
class Live:
    env: LocalEnvironment
    receiver: WalReceiver
    ledger: FileLedger

    def url(self, database: str = "drydock") -> str:
        return superuser(self.env).on(database).url()

    def query(self, sql: str, *args: Any, url: str | None = None) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(url or self.url())
            try:
                if not args and ";" in sql:
                    return await conn.execute(sql)
                return await conn.fetchval(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(go())

    def archived_through_now(self) -> None:
        """Wait until the receiver has flushed everything written so far."""
        wanted = self.query("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            flushed = self.receiver.flushed_through()
            if flushed and self.query(
                "SELECT $1::text::pg_lsn >= $2::text::pg_lsn", flushed, wanted
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"the archive did not reach {wanted}")


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    state = Path(tempfile.mkdtemp(prefix="drydock-pitr-"))
    spec = dataclasses.replace(load_stack_file("staging"), local_postgres_port=free_port())
    env = LocalEnvironment("staging", state_dir=state, spec=spec)
    env.layout.create()
    ensure_secrets(env.secrets)
    cluster = env.cluster()
    cluster.initialise(env.secrets.get(NAMES.superuser))
    cluster.start()
    receiver = WalReceiver(env)
    stop = threading.Event()

    def archive() -> None:  # what the agent's loop does
        while not stop.is_set():
            receiver.tick()
            stop.wait(0.25)

    thread = threading.Thread(target=archive, daemon=True)
    thread.start()
    try:
        from service.migrate import upgrade

        env.database.ensure_roles()
        upgrade(env.database.url("owner"))
        site = Live(env, receiver, FileLedger(state / "ledger.jsonl"))
        site.query(f'SET ROLE "drydock_owner"; {SEED}')
        yield site
    finally:
        stop.set()
        thread.join(5)
        receiver.stop()
        cluster.stop("immediate")
        shutil.rmtree(env.layout.postgres, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def leftovers(live: Live) -> list[str]:
    return [p.name for p in live.env.layout.postgres.parent.glob("pitr-*")]


def orders(live: Live, url: str | None = None) -> int:
    return int(live.query("SELECT count(*) FROM orders", url=url))


def add_orders(live: Live, count: int) -> None:
    live.query(
        "INSERT INTO orders (user_id, total_cents) SELECT 1, 5000 FROM generate_series(1, $1)",
        count,
    )


@pytest.fixture(scope="module")
def backed_up(live: Live) -> Live:
    take_snapshot(live.env, "manual", reason="pitr test", ledger=live.ledger)
    live.query("SELECT pg_switch_wal()")
    live.archived_through_now()
    return live


def test_the_archive_seals_each_completed_segment(backed_up: Live) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = [s for s in segments(archive_dir(backed_up.env)) if not s.partial]
        if done and all(s.sealed for s in done):
            break
        time.sleep(0.1)
    assert done, "no completed segment in the archive"
    assert all(s.sealed for s in done)
    add_orders(backed_up, 1)
    backed_up.archived_through_now()
    assert segments(archive_dir(backed_up.env))[-1].partial  # streamed before it completes


def test_restore_to_a_time_holds_what_was_committed_before_it_and_nothing_after(
    backed_up: Live,
) -> None:
    add_orders(backed_up, 7)
    before = orders(backed_up)
    time.sleep(0.3)
    target = time.time()
    time.sleep(0.3)
    add_orders(backed_up, 5)
    backed_up.archived_through_now()
    window = recovery_window(backed_up.env)
    assert window.earliest is not None and window.latest is not None
    assert window.earliest < target < window.latest
    lines: list[str] = []
    result = pitr.restore_to_point(backed_up.env, to_time=iso_ms(target), log=lines.append)
    try:
        copy = result.url(superuser(backed_up.env).password)
        assert orders(backed_up, copy) == before
        assert orders(backed_up) == before + 5
        assert result.recovered_to is not None
        assert result.durations["replay_s"] >= 0 and any("ready" in line for line in lines)
    finally:
        pitr.discard_restore(backed_up.env, result.id)
    assert leftovers(backed_up) == []


def test_restore_to_an_lsn(backed_up: Live) -> None:
    add_orders(backed_up, 3)
    lsn = backed_up.query("SELECT pg_current_wal_lsn()::text")
    count = orders(backed_up)
    add_orders(backed_up, 4)
    backed_up.archived_through_now()
    result = pitr.restore_to_point(backed_up.env, to_lsn=lsn, log=lambda _: None)
    try:
        assert orders(backed_up, result.url(superuser(backed_up.env).password)) == count
    finally:
        pitr.discard_restore(backed_up.env, result.id)


def test_a_time_in_the_future_is_refused_with_the_window(backed_up: Live) -> None:
    future = iso_ms(time.time() + 3600)
    with pytest.raises(BackupError, match="in the future") as caught:
        pitr.restore_to_point(backed_up.env, to_time=future, log=lambda _: None)
    assert "recoverable window: from 20" in str(caught.value)
    assert leftovers(backed_up) == []


def test_a_time_before_the_window_is_refused_with_the_window(backed_up: Live) -> None:
    with pytest.raises(BackupError, match="outside the recoverable window") as caught:
        pitr.restore_to_point(backed_up.env, to_time="2020-01-01T00:00:00Z", log=lambda _: None)
    assert "from 20" in str(caught.value)
    with pytest.raises(BackupError, match="not a time"):
        pitr.restore_to_point(backed_up.env, to_time="yesterday", log=lambda _: None)


def _completed(live: Live) -> list[Any]:
    return [s for s in segments(archive_dir(live.env)) if not s.partial]


def test_a_damaged_segment_stops_the_restore_and_leaves_nothing(backed_up: Live) -> None:
    add_orders(backed_up, 2)
    backed_up.query("SELECT pg_switch_wal()")
    time.sleep(0.3)
    target = iso_ms(time.time())
    add_orders(backed_up, 2)
    backed_up.archived_through_now()
    time.sleep(0.6)  # the newest completed segment gets its checksum
    victim = _completed(backed_up)[-1]
    original = victim.path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 3] ^= 0xFF
    victim.path.write_bytes(bytes(damaged))
    try:
        with pytest.raises(BackupError, match=victim.path.name) as caught:
            pitr.restore_to_point(backed_up.env, to_time=target, log=lambda _: None)
        assert "latest moment reachable before it" in str(caught.value)
        assert leftovers(backed_up) == []
    finally:
        victim.path.write_bytes(original)


def test_a_missing_segment_is_a_named_gap_with_the_latest_reachable_time(
    backed_up: Live,
) -> None:
    add_orders(backed_up, 2)
    backed_up.query("SELECT pg_switch_wal()")
    add_orders(backed_up, 2)
    backed_up.query("SELECT pg_switch_wal()")
    time.sleep(0.3)
    target = iso_ms(time.time())
    add_orders(backed_up, 1)
    backed_up.archived_through_now()
    time.sleep(0.6)
    victim = _completed(backed_up)[-1]
    aside = victim.path.with_name("aside")
    victim.path.rename(aside)
    try:
        window = recovery_window(backed_up.env)
        assert [g.first_missing for g in window.gaps] == [victim.path.name]
        from pipelines.backups.commands import render_window
        from pipelines.targets.local.capabilities import LocalBackups

        listed = render_window(LocalBackups(backed_up.env).window())
        assert listed.startswith("point-in-time recovery, staging: from 20")
        assert f"GAP: WAL segment(s) {victim.path.name} missing" in listed
        with pytest.raises(BackupError, match=victim.path.name) as caught:
            pitr.restore_to_point(backed_up.env, to_time=target, log=lambda _: None)
        assert "reachable up to 20" in str(caught.value)
        assert leftovers(backed_up) == []
    finally:
        aside.rename(victim.path)


def test_segments_with_misleading_times_still_reach_the_target(backed_up: Live) -> None:
    """The staging picks segments by when they were written; an archive whose files were
    copied (new mtimes) falls short at first, and the restore starts again with all."""
    for _ in range(3):
        add_orders(backed_up, 1)
        backed_up.query("SELECT pg_switch_wal()")
    time.sleep(0.3)
    target = time.time()
    count = orders(backed_up)
    time.sleep(0.3)
    add_orders(backed_up, 4)
    backed_up.archived_through_now()
    touched = [s.path for s in segments(archive_dir(backed_up.env))]
    times = {p: p.stat().st_mtime for p in touched}
    try:
        for path in touched:  # as if copied in from elsewhere just now
            os.utime(path, (time.time() + 3600, time.time() + 3600))
        lines: list[str] = []
        result = pitr.restore_to_point(backed_up.env, to_time=iso_ms(target), log=lines.append)
    finally:
        for path, mtime in times.items():
            if path.exists():
                os.utime(path, (mtime, mtime))
    try:
        assert any("fell short of the target" in line for line in lines), lines
        assert orders(backed_up, result.url(superuser(backed_up.env).password)) == count
    finally:
        pitr.discard_restore(backed_up.env, result.id)
    assert leftovers(backed_up) == []


def test_prune_keeps_wal_from_the_oldest_base_backup_kept(backed_up: Live) -> None:
    from pipelines.targets.local.backups import retention
    from pipelines.targets.local.backups.manifest import list_snapshots

    first = next(m for m in list_snapshots(backed_up.env) if m.physical)
    second = take_snapshot(backed_up.env, "daily", reason="pitr test", ledger=backed_up.ledger)
    add_orders(backed_up, 1)
    backed_up.archived_through_now()
    before = {s.path.name for s in segments(archive_dir(backed_up.env))}
    plan = retention.plan(backed_up.env)
    assert {d.snapshot.id for d in plan.decisions if d.keep} >= {first.id, second.id}
    # The first backup is kept: only WAL from before it may go.
    assert plan.wal.by_backup == first.id and plan.wal.oldest_needed is not None
    assert all(p.name[:24] < plan.wal.oldest_needed for p in plan.wal.paths)
    from pipelines.targets.local.backups.wal_retention import delete_wal, plan_wal

    wal = plan_wal(backed_up.env, {second.id})
    assert wal.paths and wal.by_backup == second.id
    delete_wal(wal)
    after = recovery_window(backed_up.env)
    assert after.gaps == [] and after.earliest is not None
    assert after.earliest >= second.created_epoch  # the first one can no longer start a replay
    remaining = {s.path.name for s in segments(archive_dir(backed_up.env))}
    assert remaining < before and wal.oldest_needed in remaining


def test_replace_puts_the_state_at_t_in_place_of_the_live_database(backed_up: Live) -> None:
    from pipelines.targets.local.backups.pitr_replace import replace_from_point
    from pipelines.targets.local.backups.restore import ConfirmationRequired

    production = LocalEnvironment(
        "production", state_dir=backed_up.env.layout.root.parent, spec=backed_up.env.spec
    )
    with pytest.raises(ConfirmationRequired, match="nothing was changed"):
        replace_from_point(
            production,
            to_time=iso_ms(time.time()),
            to_lsn=None,
            confirm=False,
            log=lambda _: None,
        )
    add_orders(backed_up, 2)
    time.sleep(0.3)
    target = time.time()
    count = orders(backed_up)
    time.sleep(0.3)
    add_orders(backed_up, 9)
    backed_up.archived_through_now()
    copy, swapped = replace_from_point(
        backed_up.env,
        to_time=iso_ms(target),
        to_lsn=None,
        confirm=False,
        log=lambda _: None,
        ledger=backed_up.ledger,
    )
    assert orders(backed_up) == count
    assert swapped.safety_snapshot and swapped.previous_database
    kept = backed_up.url(swapped.previous_database)
    assert orders(backed_up, kept) == count + 9  # the replaced database is kept aside
    entry = backed_up.ledger.entries(env="staging", kind="pitr-restore")[-1]
    assert entry["into"] == "replace" and entry["point"] == copy.target
    assert leftovers(backed_up) == []
