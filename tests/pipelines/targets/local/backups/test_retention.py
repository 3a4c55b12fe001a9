"""Retention from the spec: daily >= 7 days, weekly >= 5 weeks, the last N pre-deploy, manual
kept, and never the newest verified snapshot of a kind."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.targets.local.backups import snapshot as backups
from pipelines.targets.local.backups.manifest import backups_dir, iso, retention_s
from pipelines.targets.local.backups.retention import LEFTOVER_AGE_S
from tests.conftest import PgServer
from tests.pipelines.targets.local.backups.fixtures import Site, build_site, teardown_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DAY = 86_400.0


@pytest.fixture(scope="module")
def site(pg_server: PgServer) -> Iterator[Site]:
    state = Path(tempfile.mkdtemp(prefix="drydock-retention-"))
    built = build_site(pg_server, state)
    try:
        yield built
    finally:
        teardown_site(built, state)


@pytest.fixture(scope="module")
def base(site: Site) -> backups.SnapshotManifest:
    return backups.take_snapshot(site.staging, "manual", physical=False, ledger=site.ledger)


@pytest.fixture
def clean(site: Site, base: backups.SnapshotManifest) -> Iterator[None]:
    yield
    for manifest in backups.list_snapshots(site.staging):
        if manifest.id != base.id:
            shutil.rmtree(manifest.path)


def clone(site: Site, base: backups.SnapshotManifest, kind: str, age_days: float, name: str) -> str:
    """A copy of `base` that claims to be a `kind` snapshot taken `age_days` ago."""
    created = time.time() - age_days * DAY
    snapshot_id = f"staging-{kind}-{name}"
    target = base.path.parent / snapshot_id
    shutil.copytree(base.path, target)
    document = json.loads((target / "manifest.json").read_text())
    retention = retention_s(site.staging, kind)
    document.update(
        id=snapshot_id,
        kind=kind,
        created_epoch=created,
        created_at=iso(created),
        expires_at=iso(created + retention) if retention else None,
    )
    (target / "manifest.json").write_text(json.dumps(document))
    return snapshot_id


def decisions(plan: backups.PrunePlan) -> dict[str, bool]:
    return {d.snapshot.id: d.keep for d in plan.decisions}


@pytest.mark.usefixtures("clean")
def test_retention_follows_the_spec(site: Site, base: backups.SnapshotManifest) -> None:
    spec = site.staging.spec
    assert spec.backup_retention_days >= 7 and spec.weekly_backup_retention_weeks >= 5
    days = spec.backup_retention_days
    fresh_daily = clone(site, base, "daily", days - 1, "fresh")
    newest_daily = clone(site, base, "daily", 1, "newest")
    old_daily = clone(site, base, "daily", days + 1, "old")
    older_daily = clone(site, base, "daily", days + 2, "older")
    weeks = spec.weekly_backup_retention_weeks
    fresh_weekly = clone(site, base, "weekly", 7 * weeks - 1, "fresh")
    old_weekly = clone(site, base, "weekly", 7 * weeks + 1, "old")
    kept_n = spec.pre_deploy_snapshots_kept
    pre = [clone(site, base, "pre-deploy", 30 - i, f"p{i:02d}") for i in range(kept_n + 2)]
    old_manual = clone(site, base, "manual", 400, "ancient")

    plan = backups.prune(site.staging, dry_run=True, ledger=site.ledger)
    keep = decisions(plan)
    assert keep[fresh_daily] and not keep[old_daily] and not keep[older_daily]
    assert keep[newest_daily]
    assert keep[fresh_weekly] and not keep[old_weekly]
    assert [keep[p] for p in pre] == [False, False] + [True] * kept_n
    assert keep[old_manual] and keep[base.id]
    assert "within retention" in plan.render() and "would delete" in plan.render()
    assert "--apply" in plan.render()
    # A dry run deletes nothing.
    assert len(backups.list_snapshots(site.staging)) == len(plan.decisions)

    applied = backups.prune(site.staging, dry_run=False, ledger=site.ledger)
    left = {m.id for m in backups.list_snapshots(site.staging)}
    assert set(applied.deleted) == {old_daily, older_daily, old_weekly, pre[0], pre[1]}
    assert not left & set(applied.deleted)
    assert {fresh_daily, newest_daily, fresh_weekly, old_manual, base.id, *pre[2:]} <= left
    pruned = site.ledger.entries(env="staging", kind="snapshot-pruned")
    assert {e["id"] for e in pruned} >= set(applied.deleted)


@pytest.mark.usefixtures("clean")
def test_newest_verified_snapshot_of_a_kind_is_never_deleted(
    site: Site, base: backups.SnapshotManifest
) -> None:
    days = site.staging.spec.backup_retention_days
    only_good = clone(site, base, "daily", days + 10, "good")
    broken = clone(site, base, "daily", days + 5, "broken")
    (base.path.parent / broken / "dump.pgdump").write_bytes(b"PGDMP truncated")
    plan = backups.prune(site.staging, dry_run=False, ledger=site.ledger)
    keep = decisions(plan)
    # Both are past retention; the broken one is newer, so the older one that verifies stays.
    assert keep[only_good] and not keep[broken]
    reason = next(d.reason for d in plan.decisions if d.snapshot.id == only_good)
    assert reason == "newest verified daily snapshot (1 newer fail verification)"


@pytest.mark.usefixtures("clean")
def test_leftover_partial_directories_are_removed(site: Site) -> None:
    root = backups_dir(site.staging)
    stale, fresh = root / ".partial-staging-daily-x", root / ".partial-staging-daily-y"
    stale.mkdir()
    fresh.mkdir()
    try:
        later = time.time() + LEFTOVER_AGE_S + 60
        plan = backups.prune(site.staging, dry_run=True, now=later, ledger=site.ledger)
        assert stale in plan.leftovers and fresh in plan.leftovers and stale.exists()
        plan = backups.prune(site.staging, dry_run=False, ledger=site.ledger)
        assert plan.leftovers == [] and fresh.exists()  # young: may still be being written
        backups.prune(site.staging, dry_run=False, now=later, ledger=site.ledger)
        assert not stale.exists() and not fresh.exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(fresh, ignore_errors=True)
