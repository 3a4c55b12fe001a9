"""How far back and how far forward a local environment can be recovered.

A point-in-time restore needs a base backup (a physical snapshot, consistent from the moment
pg_basebackup finished) and every WAL segment from that backup's end up to the target, with
no hole. Each base backup therefore opens a stretch of recoverable time that runs to the end
of the unbroken run of archived segments it starts in; the recoverable window is the union
of those stretches, and whatever falls between them is a gap, named by its missing segments.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.backups.pitr_report import iso_ms
from pipelines.targets.local.backups.manifest import (
    BackupError,
    SnapshotManifest,
    iso,
    list_snapshots,
)
from pipelines.targets.local.backups.wal import (
    Segment,
    archive_dir,
    format_lsn,
    parse_lsn,
    read_tail,
    segment_bytes,
    segment_name,
    segments,
)

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv


@dataclass(frozen=True)
class BaseBackup:
    snapshot: SnapshotManifest
    timeline: int
    start_lsn: int
    end_lsn: int
    consistent_epoch: float


def base_backups(env: LocalEnv) -> list[BaseBackup]:
    """The physical snapshots of `env` whose base backup is on disk, oldest first."""
    found = []
    for manifest in list_snapshots(env):
        if not manifest.physical or not (manifest.base / "backup_manifest").is_file():
            continue
        try:
            doc = json.loads((manifest.base / "backup_manifest").read_text())
            wal = doc["WAL-Ranges"][-1]
        except (OSError, ValueError, KeyError, IndexError):
            continue  # verify_snapshot says why; this one cannot start a recovery
        consistent = manifest.physical.get("consistent_epoch") or (
            manifest.created_epoch + sum(manifest.durations.values())
        )
        found.append(
            BaseBackup(
                manifest,
                int(wal["Timeline"]),
                parse_lsn(wal["Start-LSN"]),
                parse_lsn(wal["End-LSN"]),
                float(consistent),
            )
        )
    return found


@dataclass
class Gap:
    first_missing: str  # segment name
    last_missing: str
    reachable_until: str | None  # the newest commit before the gap, ISO 8601

    def describe(self) -> str:
        span = (
            self.first_missing
            if self.first_missing == self.last_missing
            else f"{self.first_missing}..{self.last_missing}"
        )
        until = f"; reachable up to {self.reachable_until}" if self.reachable_until else ""
        return f"WAL segment(s) {span} missing from the archive{until}"


@dataclass
class Stretch:
    """From one base backup's consistent moment to the end of its unbroken WAL run."""

    backup_id: str
    start_epoch: float
    end_epoch: float | None  # the newest commit in the run; None: no commit yet
    start_lsn: int
    end_lsn: int | None
    segments: list[Segment] = field(default_factory=list, repr=False)


@dataclass
class Window:
    environment: str
    archive: str
    stretches: list[Stretch]
    gaps: list[Gap]
    segment_bytes: int
    timeline: int | None

    @property
    def earliest(self) -> float | None:
        return min((s.start_epoch for s in self.stretches), default=None)

    @property
    def latest(self) -> float | None:
        return max((s.end_epoch for s in self.stretches if s.end_epoch), default=None)

    def covering_time(self, epoch: float) -> Stretch | None:
        """The stretch from the newest base backup that reaches `epoch`."""
        fits = [
            s
            for s in self.stretches
            if s.start_epoch <= epoch and s.end_epoch is not None and epoch < s.end_epoch
        ]
        return max(fits, key=lambda s: s.start_epoch, default=None)

    def covering_lsn(self, lsn: int) -> Stretch | None:
        fits = [
            s
            for s in self.stretches
            if s.start_lsn <= lsn and s.end_lsn is not None and lsn < s.end_lsn
        ]
        return max(fits, key=lambda s: s.start_lsn, default=None)

    def describe(self) -> str:
        if not self.stretches:
            return "none yet (no base backup with archived WAL after it)"
        latest = iso_ms(self.latest) if self.latest else "no commit archived yet"
        return f"from {iso_ms(self.earliest or 0)} to {latest} (UTC)"

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "archive": self.archive,
            "earliest": iso_ms(self.earliest) if self.earliest else None,
            "latest": iso_ms(self.latest) if self.latest else None,
            "gaps": [asdict(g) for g in self.gaps],
            "stretches": [
                {
                    "backup": s.backup_id,
                    "from": iso_ms(s.start_epoch),
                    "to": iso_ms(s.end_epoch) if s.end_epoch else None,
                    "from_lsn": format_lsn(s.start_lsn),
                    "to_lsn": format_lsn(s.end_lsn) if s.end_lsn is not None else None,
                    "segments": len(s.segments),
                }
                for s in self.stretches
            ],
        }


def _runs(chain: list[Segment]) -> list[list[Segment]]:
    runs: list[list[Segment]] = []
    for segment in chain:
        if runs and runs[-1][-1].segno + 1 == segment.segno:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


def recovery_window(env: LocalEnv) -> Window:
    """The recoverable window of `env`: its base backups against its WAL archive."""
    directory = archive_dir(env)
    size = segment_bytes(directory) if directory.is_dir() else 16 * 1024 * 1024
    backups = base_backups(env)
    archived = segments(directory)
    timeline = max((s.timeline for s in archived), default=None)
    chain = [s for s in archived if s.timeline == timeline]
    runs = _runs(chain)
    binaries = env.cluster().binaries
    tails: dict[int, tuple[float | None, int | None]] = {}

    def tail(index: int) -> tuple[float | None, int | None]:
        if index not in tails:
            found = read_tail(binaries, runs[index], size)
            commit = found.last_commit.timestamp() if found.last_commit else None
            tails[index] = (commit, found.last_lsn)
        return tails[index]

    stretches = []
    for backup in backups:
        if backup.timeline != timeline:
            continue
        first = backup.end_lsn // size
        for index, run in enumerate(runs):
            if run[0].segno <= first <= run[-1].segno:
                commit, lsn = tail(index)
                stretches.append(
                    Stretch(
                        backup.snapshot.id,
                        backup.consistent_epoch,
                        commit if commit and commit > backup.consistent_epoch else None,
                        backup.end_lsn,
                        lsn,
                        [s for s in run if s.segno >= backup.start_lsn // size],
                    )
                )
    gaps = []
    for index in range(1, len(runs)):
        before, after = runs[index - 1][-1].segno, runs[index][0].segno
        commit, _ = tail(index - 1)
        gaps.append(
            Gap(
                segment_name(timeline or 1, before + 1, size),
                segment_name(timeline or 1, after - 1, size),
                iso_ms(commit) if commit else None,
            )
        )
    return Window(env.name, str(directory), stretches, gaps, size, timeline)


def check_target(window: Window, *, epoch: float | None, lsn: int | None, now: float) -> Stretch:
    """The stretch that reaches the target, or a BackupError that says why none does."""
    env = window.environment
    if epoch is not None and epoch > now:
        raise BackupError(
            f"the target time {iso_ms(epoch)} is in the future (it is now {iso_ms(now)}); "
            f"{env}'s recoverable window: {window.describe()}"
        )
    stretch = window.covering_time(epoch) if epoch is not None else window.covering_lsn(lsn or 0)
    if stretch is not None:
        return stretch
    what = iso_ms(epoch) if epoch is not None else format_lsn(lsn or 0)
    for gap in window.gaps:
        # A target beyond a gap that no later base backup bridges: name the gap.
        if epoch is not None and gap.reachable_until and epoch > _epoch(gap.reachable_until):
            raise BackupError(
                f"cannot recover {env} to {what}: {gap.describe()}. Restore to a moment "
                f"before {gap.reachable_until}, or take a base backup (invoke backup.snapshot "
                f"--env {env} --kind manual) to recover later moments from then on"
            )
    hint = (
        f"invoke backup.snapshot --env {env} --kind manual takes a base backup"
        if not window.stretches
        else f"see invoke backup.list --env {env}"
    )
    raise BackupError(
        f"cannot recover {env} to {what}: it is outside the recoverable window "
        f"({window.describe()}); {hint}"
    )


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def describe_problem(window: Window) -> list[str]:
    return [gap.describe() for gap in window.gaps]


__all__ = ["BaseBackup", "Gap", "Stretch", "Window", "check_target", "iso", "recovery_window"]
