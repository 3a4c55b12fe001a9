"""Which manual RDS snapshots retention keeps, and why (runbook section 6).

The rules are the local target's (`pipelines.backups.retention.rule`). What only AWS knows
is recorded as tags on the snapshot itself: they travel with it, cost no extra call (they
come with `describe_db_snapshots`), and vanish with it. A drill writes them
(`pipelines/targets/aws/drill.py`):

- `drydock:verified-by` (the drill's id) and `drydock:verified-at`: a drill restored the
  snapshot and its verification passed. The newest such snapshot is never deleted, whatever
  its age or kind: it is the newest data known to come back.
- `drydock:drill-until`: a drill is restoring from the snapshot until then. It is set before
  the restore and removed when the drill ends. A drill that was killed leaves it behind,
  and it then lapses at the drill's own deadline, so the snapshot is not kept forever.

As locally, the newest snapshot of each kind that passes the restore checks (available, of
this instance, encrypted, with storage) is kept as well. An expiry is the later of the one
tagged at creation (`retain-until`) and the one today's spec gives.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.backups.retention import KINDS, rule
from pipelines.targets.aws.database import restore_problems

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec

VERIFIED_BY = "drydock:verified-by"
VERIFIED_AT = "drydock:verified-at"
DRILL_UNTIL = "drydock:drill-until"
ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class AwsPrunePlan:
    environment: str
    dry_run: bool
    keep: list[tuple[str, str]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def iso(epoch: float) -> str:
    return time.strftime(ISO, time.gmtime(epoch))


def parse_iso(value: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(value, ISO)))
    except (TypeError, ValueError):
        return None


def epoch(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    from datetime import datetime

    return datetime.fromisoformat(str(value)).timestamp()


def drill_in_progress(record: Mapping[str, Any], now: float) -> str | None:
    """Why a drill holds the snapshot now, or None."""
    until = str(record.get("tags", {}).get(DRILL_UNTIL, ""))
    ends = parse_iso(until)
    if ends is not None and ends > now:
        return f"a drill restores from it (marked until {until})"
    return None


def protected(records: Sequence[Mapping[str, Any]], instance: str, now: float) -> dict[str, str]:
    """Snapshot id -> why it stays whatever the rules say. `records` are newest first."""
    kept: dict[str, str] = {}
    verified = [r for r in records if r.get("tags", {}).get(VERIFIED_BY)]
    if verified:
        newest = verified[0]
        tags = newest["tags"]
        kept[newest["id"]] = (
            f"the newest snapshot a drill verified ({tags[VERIFIED_BY]}, "
            f"{tags.get(VERIFIED_AT, 'time not recorded')})"
        )
    for kind in KINDS:
        failures = 0
        for record in (r for r in records if r["kind"] == kind):
            if restore_problems(record, instance):
                failures += 1
                continue
            note = f" ({failures} newer fail the restore checks)" if failures else ""
            why = f"the newest {kind} snapshot that passes the restore checks{note}"
            kept.setdefault(record["id"], why)
            break
    for record in records:
        held = drill_in_progress(record, now)
        if held:
            kept[record["id"]] = held
    return kept


def plan(
    records: Sequence[Mapping[str, Any]],
    spec: EnvironmentSpec,
    instance: str,
    now: float,
    *,
    environment: str,
    kinds: Collection[str] = KINDS,
) -> AwsPrunePlan:
    """What retention keeps and deletes among `records` (newest first) of `kinds`."""
    result = AwsPrunePlan(environment, dry_run=True)
    guarded = protected(records, instance, now)
    pre_deploy = [r["id"] for r in records if r["kind"] == "pre-deploy"]
    newest_pre_deploy = set(pre_deploy[: spec.pre_deploy_snapshots_kept])
    for record in records:
        kind = record["kind"] or "manual"  # untagged: not ours to delete
        if kind not in kinds:
            continue
        if record["id"] in guarded:
            result.keep.append((record["id"], guarded[record["id"]]))
            continue
        keep, reason = rule(
            spec,
            kind,
            epoch(record["created_at"]),
            now,
            recorded_expiry=parse_iso(str(record.get("tags", {}).get("retain-until", ""))),
            among_newest_pre_deploy=record["id"] in newest_pre_deploy,
        )
        (result.keep if keep else result.delete).append((record["id"], reason))
    return result
