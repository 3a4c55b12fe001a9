"""Retention that never breaks a point-in-time chain (runbook section 6).

Snapshot retention (retention.py) decides by kind and age. Two rules follow from the WAL
archive:

- deleting a snapshot's base backup may only move the start of the recoverable window
  forward, never open a hole inside it: when another base backup does not cover the same
  stretch of time, the snapshot is kept, and the plan says which stretch it alone reaches;
- WAL is kept as long as the oldest base backup kept needs it: the segments before that
  backup's start (and those of older timelines) go, with their checksums.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipelines.backups.pitr_report import iso_ms
from pipelines.targets.local.backups.wal import SUM_SUFFIX, archive_dir, segments
from pipelines.targets.local.backups.window import Stretch, Window, base_backups

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Interval = tuple[float, float]


class Decision(Protocol):
    """What retention.py decided for one snapshot (its PruneDecision)."""

    @property
    def snapshot(self) -> Any: ...

    @property
    def keep(self) -> bool: ...

    @property
    def reason(self) -> str: ...


D = TypeVar("D", bound=Decision)


def _union(stretches: list[Stretch]) -> list[Interval]:
    spans = sorted((s.start_epoch, s.end_epoch) for s in stretches if s.end_epoch is not None)
    merged: list[Interval] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _holes(before: list[Interval], after: list[Interval]) -> list[Interval]:
    """What `before` covers and `after` does not, from `after`'s start on."""
    if not after:
        return []
    floor = after[0][0]
    holes = []
    for start, end in before:
        cursor = max(start, floor)
        for a_start, a_end in after:
            if a_end <= cursor or a_start >= end:
                continue
            if a_start > cursor:
                holes.append((cursor, a_start))
            cursor = max(cursor, a_end)
        if cursor < end:
            holes.append((cursor, end))
    return [h for h in holes if h[1] > h[0]]


def guard_chain(window: Window, decisions: list[D]) -> list[D]:
    """The decisions, with every deletion that would open a gap in the window turned into a
    keep that says why."""
    by_backup = {s.backup_id: s for s in window.stretches}
    kept = [s for s in window.stretches if s.backup_id not in _deleting(decisions)]
    result = []
    for decision in decisions:
        stretch = by_backup.get(decision.snapshot.id)
        if decision.keep or stretch is None:
            result.append(decision)
            continue
        holes = _holes(_union([*kept, stretch]), _union(kept))
        if holes:
            start, end = holes[0]
            kept.append(stretch)
            result.append(
                replace(  # type: ignore[type-var]
                    decision,
                    keep=True,
                    reason=(
                        f"refused: its base backup alone reaches {iso_ms(start)} to "
                        f"{iso_ms(end)}; deleting it would open a gap in point-in-time "
                        f"recovery (it would have gone: {decision.reason})"
                    ),
                )
            )
        else:
            result.append(decision)
    return result


def _deleting(decisions: list[D]) -> set[str]:
    return {d.snapshot.id for d in decisions if not d.keep}


@dataclass
class WalPrune:
    oldest_needed: str | None  # the first segment kept, or None: everything is kept
    by_backup: str | None
    paths: list[Path] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths if p.exists())


def plan_wal(env: LocalEnv, keep_ids: set[str]) -> WalPrune:
    """The segments no kept base backup needs (none while no base backup is kept)."""
    backups = [b for b in base_backups(env) if b.snapshot.id in keep_ids]
    directory = archive_dir(env)
    archived = segments(directory)
    if not backups or not archived:
        return WalPrune(None, None)
    oldest = min(backups, key=lambda b: (b.timeline, b.start_lsn))
    size = archived[0].path.stat().st_size or 16 * 1024 * 1024
    first = (oldest.timeline, oldest.start_lsn // size)
    old = [s for s in archived if (s.timeline, s.segno) < first]
    paths = []
    for segment in old:
        paths.append(segment.path)
        if segment.sum_path.exists():
            paths.append(segment.sum_path)
    kept = next((s for s in archived if (s.timeline, s.segno) >= first), None)
    name = kept.path.name.removesuffix(".partial") if kept else None
    return WalPrune(name, oldest.snapshot.id, paths)


def delete_wal(plan: WalPrune) -> None:
    # Checksums last: a crash leaves a checksum without its segment (a named gap), never a
    # segment that can no longer be verified.
    for path in sorted(plan.paths, key=lambda p: p.name.endswith(SUM_SUFFIX)):
        path.unlink(missing_ok=True)
