"""Restores: into a scratch database, and in place of production's database (confirmation,
safety snapshot first, maintenance, swap), on real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pipelines.postgres import tools as pgtools
from pipelines.targets.local.backups import restore as backup_restore
from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.backups.snapshot import BackupError
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[Site]:
    state = Path(tempfile.mkdtemp(prefix="drydock-restore-"))
    built = build_site(pg_server, state)
    try:
        yield built
    finally:
        teardown_site(built, state)


def scalar(site: Site, sql: str, database: str = "drydock") -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(site.url(database))
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def databases(site: Site) -> set[str]:
    async def go() -> set[str]:
        conn = await asyncpg.connect(site.url("postgres"))
        try:
            return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    return asyncio.run(go())


def test_restore_into_scratch_leaves_the_live_database_alone(site: Site) -> None:
    snapshot = backups.take_snapshot(site.production, "manual", physical=False, ledger=site.ledger)
    lines: list[str] = []
    result = backup_restore.restore(
        site.staging,
        snapshot.id,
        "scratch",
        confirm=False,
        source=site.production,
        log=lines.append,
        ledger=site.ledger,
    )
    try:
        assert result.database.startswith("restore_") and result.safety_snapshot is None
        assert scalar(site, "SELECT count(*) FROM items", result.database) == 300
        assert any("copy verified: " in line for line in lines)
        restored = site.ledger.entries(env="staging", kind="restore")[-1]
        assert restored["snapshot"] == snapshot.id and restored["into"] == "scratch"
    finally:
        pgtools.drop_database(site.admin, result.database)


def test_replace_in_production_is_refused_without_confirmation(site: Site) -> None:
    snapshot = backups.list_snapshots(site.production)[-1]
    before_dbs, before = databases(site), [m.id for m in backups.list_snapshots(site.production)]
    with pytest.raises(BackupError, match=r"refusing to replace production's database .* --yes"):
        backup_restore.restore(
            site.production, snapshot.id, "replace", confirm=False, ledger=site.ledger
        )
    assert databases(site) == before_dbs
    assert [m.id for m in backups.list_snapshots(site.production)] == before


def test_replace_takes_the_safety_snapshot_first_and_brings_data_back(site: Site) -> None:
    snapshot = backups.take_snapshot(
        site.production, "pre-deploy", physical=False, ledger=site.ledger
    )
    asyncio.run(
        site.execute("DELETE FROM order_lines WHERE order_id > 100; UPDATE items SET stock = 0")
    )
    lines: list[str] = []
    result = backup_restore.restore(
        site.production, snapshot.id, "replace", confirm=True, log=lines.append, ledger=site.ledger
    )
    assert result.database == "drydock" and result.previous_database
    assert scalar(site, "SELECT count(*) FROM order_lines") == 360
    assert scalar(site, "SELECT sum(stock) FROM items") == sum(range(1, 301))
    # The replaced database is kept aside, with the writes made after the snapshot.
    assert scalar(site, "SELECT count(*) FROM order_lines", result.previous_database) == 300
    # The safety snapshot came first and holds the state that was replaced.
    safety = backups.find_snapshot(site.production, str(result.safety_snapshot))
    assert safety.kind == "safety" and snapshot.id in safety.reason
    assert safety.fingerprint["tables"]["public.order_lines"]["rows"] == 300
    order = [
        e["kind"]
        for e in site.ledger.entries(env="production")
        if e["kind"] in ("snapshot", "restore")
    ]
    assert order[-2:] == ["snapshot", "restore"]
    steps = [line.split(": ", 1)[1] for line in lines]
    assert steps[0].startswith("verifying snapshot")
    assert steps[1] == "taking a safety snapshot of the current database first"
    assert any(s.startswith("maintenance: no replicas are deployed") for s in steps)
    # The app role can still connect to the swapped-in database: grants were re-applied.
    app = pgtools.ConnInfo.from_url(site.production.database.url("app"))
    assert scalar(site, "SELECT has_database_privilege('drydock_app', 'drydock', 'CONNECT')")
    assert app.user == "drydock_app"
    pgtools.drop_database(site.admin, result.previous_database)


def test_copy_that_differs_from_its_snapshot_is_never_swapped_in(site: Site) -> None:
    snapshot = backups.take_snapshot(site.production, "manual", physical=False, ledger=site.ledger)
    document = json.loads((snapshot.path / "manifest.json").read_text())
    document["fingerprint"]["tables"]["public.items"]["digest"] = "0" * 64
    (snapshot.path / "manifest.json").write_text(json.dumps(document))
    before = databases(site)
    with pytest.raises(
        BackupError, match=r"table public.items: content differs.*drydock was not touched"
    ):
        backup_restore.restore(
            site.production, snapshot.id, "replace", confirm=True, ledger=site.ledger
        )
    assert {d for d in databases(site) if d.startswith("drydock")} == {
        d for d in before if d.startswith("drydock")
    }
    assert scalar(site, "SELECT count(*) FROM items") == 300


def test_into_must_be_scratch_or_replace(site: Site) -> None:
    with pytest.raises(BackupError, match="--into must be scratch or replace, not 'elsewhere'"):
        backup_restore.restore(site.staging, "newest", "elsewhere", confirm=True)


class AgentStandIn:
    """Just enough of a LocalEnvironment for maintenance: the agent converges at once."""

    name = "production"

    def __init__(self, replicas: int) -> None:
        self.doc: dict[str, Any] = {"release": {"id": "r1"}, "replicas": replicas, "generation": 1}
        self.calls: list[int] = []

    def desired(self) -> dict[str, Any]:
        return self.doc

    def ensure_agent(self) -> int:
        return 1

    def set_desired(self, release: dict[str, Any], *, replicas: int) -> int:
        self.calls.append(replicas)
        self.doc = {**self.doc, "replicas": replicas, "generation": self.doc["generation"] + 1}
        return int(self.doc["generation"])

    def observed(self) -> dict[str, Any]:
        replicas = [{"health": "ready"}] * int(self.doc["replicas"])
        return {
            "rollout": {"generation": self.doc["generation"], "state": "completed"},
            "replicas": replicas,
        }


@pytest.mark.unit
def test_maintenance_scales_to_zero_and_back() -> None:
    env = AgentStandIn(replicas=2)
    log: list[str] = []
    inside: list[int] = []
    with backup_restore.maintenance(env, log.append, timeout_s=2):  # type: ignore[arg-type]
        inside.append(len(env.observed()["replicas"]))
    assert env.calls == [0, 2] and inside == [0]
    assert log[-1] == "maintenance: 2 replica(s) ready again"


@pytest.mark.unit
def test_maintenance_brings_replicas_back_when_the_swap_fails() -> None:
    env = AgentStandIn(replicas=3)
    with (
        pytest.raises(RuntimeError, match="swap failed"),
        backup_restore.maintenance(env, lambda _: None, timeout_s=2),  # type: ignore[arg-type]
    ):
        raise RuntimeError("swap failed")
    assert env.calls == [0, 3]
