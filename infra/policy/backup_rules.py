"""Backups out of reach: copies in a second region, production's vaults locked, and bucket
lifecycles that expire what they should (the drill's dumps), never the ledger or locks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from infra.policy.registry import Resource, is_production, number, resource_rule, stack_rule
from infra.policy.tokens import BACKUP_PLAN, BACKUP_VAULT, BUCKET_LIFECYCLE, VAULT_LOCK

MIN_BACKUP_DAYS = 7
# What the deploy pipeline keeps in the backups bucket and never lets expire: the release
# history (step 4, step 7's baseline, incident.timeline) and the deploy locks.
KEPT_PREFIXES = ("ledger/", "locks/")


def _region(arn: Any) -> str | None:
    parts = str(arn or "").split(":")
    return parts[3] if len(parts) > 4 and parts[0] == "arn" else None


@resource_rule(
    "backup-copy-to-second-region",
    "production backup plans copy every recovery point to a vault in another region",
)
def backup_copy_to_second_region(r: Resource) -> Iterator[str]:
    if r.type != BACKUP_PLAN or not is_production(r):
        return
    home = _region(r.props.get("arn"))
    for rule in r.props.get("rules") or []:
        regions = [_region(c.get("destinationVaultArn")) for c in rule.get("copyActions") or []]
        if not any(region and region != home for region in regions):
            yield (
                f"{r.name}: rule {rule.get('ruleName')} copies to no vault in another region; "
                "set drydock:drRegion (infra/dr_backups.py)"
            )


@stack_rule(
    "production-vault-lock",
    f"production backup vaults are locked in compliance mode, minimum retention >= "
    f"{MIN_BACKUP_DAYS} days",
)
def production_vault_lock(resources: Sequence[Resource]) -> Iterator[str]:
    locks = {
        (r.props.get("backupVaultName"), r.props.get("region")): r
        for r in resources
        if r.type == VAULT_LOCK
    }
    for vault in (r for r in resources if r.type == BACKUP_VAULT and is_production(r)):
        lock = locks.get((vault.props.get("name"), vault.props.get("region")))
        if lock is None:
            yield f"{vault.name}: add an aws.backup.VaultLockConfiguration (compliance mode)"
            continue
        if lock.props.get("changeableForDays") is None:
            yield (
                f"{lock.name}: set changeable_for_days: without it the lock is in governance "
                "mode, which a privileged user can remove"
            )
        if number(lock.props.get("minRetentionDays")) < MIN_BACKUP_DAYS:
            yield f"{lock.name}: min_retention_days must be >= {MIN_BACKUP_DAYS}"


@resource_rule(
    "lifecycle-spares-ledger",
    "a bucket lifecycle expires objects under a named prefix only, never ledger/ or locks/",
)
def lifecycle_spares_ledger(r: Resource) -> Iterator[str]:
    if r.type not in BUCKET_LIFECYCLE:
        return
    for rule in r.props.get("rules") or []:
        expiration = rule.get("expiration") or {}
        if rule.get("status") == "Disabled" or not (
            expiration.get("days") or expiration.get("date")
        ):
            continue
        prefix = str((rule.get("filter") or {}).get("prefix") or rule.get("prefix") or "")
        covered = [k for k in KEPT_PREFIXES if k.startswith(prefix) or prefix.startswith(k)]
        if not prefix or covered:
            where = repr(prefix) if prefix else "the whole bucket"
            yield (
                f"{r.name}: rule {rule.get('id')} expires objects under {where}, "
                f"which covers {', '.join(covered or KEPT_PREFIXES)}; filter it to the prefix "
                "it is meant for (dumps/)"
            )
