"""The continuous WAL archive of a local environment (runbook sections 6 and 8).

`<env state>/backups/wal/` holds what `pg_receivewal` streamed from the environment's
cluster (see receiver.py):

    000000010000000000000007          a completed 16 MB segment
    000000010000000000000007.sha256   its checksum, written once the segment is complete
    000000010000000000000008.partial  the segment being written, flushed as WAL arrives

This module reads that directory: which segments are there and sealed, where the chain
breaks, and what the newest WAL in a segment says (its last record and last commit time,
from `pg_waldump`), so that a restore and `backup.list` can tell how far back and how far
forward the environment can be recovered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.targets.local.backups.manifest import BackupError, backups_dir

if TYPE_CHECKING:
    from pipelines.postgres.cluster import Binaries
    from pipelines.targets.local.contract import LocalEnv

WAL = "wal"
PARTIAL_SUFFIX = ".partial"
SUM_SUFFIX = ".sha256"
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
# A segment completed this recently may not be sealed yet (the agent seals every 0.25 s); an
# older one without a checksum is treated as damaged.
SEAL_GRACE_S = 5.0
_NAME = re.compile(r"^[0-9A-F]{24}$")
_RECORD = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+)")
_COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


def archive_dir(env: LocalEnv) -> Path:
    return backups_dir(env) / WAL


def parse_lsn(text: str) -> int:
    try:
        high, low = text.strip().upper().split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise BackupError(
            f"{text!r} is not an LSN; write it as PostgreSQL does, e.g. 0/3000148 "
            "(SELECT pg_current_wal_lsn())"
        ) from None


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Segment:
    timeline: int
    segno: int
    path: Path
    partial: bool

    @property
    def sum_path(self) -> Path:
        return self.path.with_name(self.path.name + SUM_SUFFIX)

    @property
    def sealed(self) -> bool:
        return self.sum_path.is_file()


def settled(segment: Segment) -> Segment:
    """The segment as it is now: a partial one the receiver completed since it was listed
    has been renamed (and is sealed a moment later)."""
    if segment.partial and not segment.path.exists():
        completed = segment.path.with_name(segment.path.name.removesuffix(PARTIAL_SUFFIX))
        return Segment(segment.timeline, segment.segno, completed, partial=False)
    return segment


def segment_name(timeline: int, segno: int, segment_bytes: int) -> str:
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def segment_bytes(directory: Path) -> int:
    """The cluster's WAL segment size, as the files show it (pg_receivewal pads a partial
    segment to full size too)."""
    for path in directory.iterdir():
        if _NAME.match(path.name.removesuffix(PARTIAL_SUFFIX)):
            return path.stat().st_size or DEFAULT_SEGMENT_BYTES
    return DEFAULT_SEGMENT_BYTES


def segments(directory: Path) -> list[Segment]:
    """The archive's segments, oldest first; a completed segment hides a stale partial one."""
    found: dict[tuple[int, int], Segment] = {}
    if not directory.is_dir():
        return []
    size = segment_bytes(directory)
    per_id = 0x100000000 // size
    for path in directory.iterdir():
        name = path.name.removesuffix(PARTIAL_SUFFIX)
        if not _NAME.match(name):
            continue
        timeline, high, low = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
        segment = Segment(timeline, high * per_id + low, path, path.name != name)
        key = (timeline, segment.segno)
        if key not in found or found[key].partial:
            found[key] = segment
    return sorted(found.values(), key=lambda s: (s.timeline, s.segno))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(directory: Path) -> list[str]:
    """Write the checksum of every completed segment that has none yet (atomically: a
    crash never leaves a half-written checksum). Returns the names sealed."""
    sealed = []
    for segment in segments(directory):
        if segment.partial or segment.sealed:
            continue
        digest = sha256_of(segment.path)
        tmp = segment.sum_path.with_name(f".{segment.sum_path.name}.tmp")
        tmp.write_text(f"{digest}  {segment.path.name}\n")
        os.replace(tmp, segment.sum_path)
        sealed.append(segment.path.name)
    return sealed


def recorded_sum(segment: Segment) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        return segment.sum_path.read_text().split()[0]
    return None


def copy_verified(segment: Segment, target: Path) -> None:
    """Copy a segment to `target` (its proper name, also for a partial one), checking it
    against its recorded checksum on the way; a damaged one raises CorruptSegment."""
    segment = settled(segment)
    digest = hashlib.sha256()
    with segment.path.open("rb") as source, target.open("wb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    expected = recorded_sum(segment)
    just_completed = expected is None and time.time() - segment.path.stat().st_mtime < SEAL_GRACE_S
    if not segment.partial and not just_completed and expected != digest.hexdigest():
        target.unlink(missing_ok=True)
        raise CorruptSegment(segment, expected, digest.hexdigest())


class CorruptSegment(BackupError):
    def __init__(self, segment: Segment, expected: str | None, actual: str) -> None:
        self.segment = segment
        why = (
            "has no recorded checksum"
            if expected is None
            else f"has sha256 {actual[:16]}... but {expected[:16]}... was recorded"
        )
        super().__init__(f"WAL segment {segment.path.name} {why}")


@dataclass(frozen=True)
class Tail:
    """What the end of a run of WAL holds: its last record and its newest commit."""

    last_lsn: int | None
    last_commit: dt.datetime | None


def read_tail(binaries: Binaries, chain: list[Segment], segment_size: int) -> Tail:
    """The last record and newest commit in `chain` (contiguous segments, oldest first),
    from pg_waldump of its last segments (a partial one is read under its proper name)."""
    last_lsn: int | None = None
    for segment in reversed(chain[-4:]):
        lsn, commit = _dump(binaries, segment, segment_size)
        last_lsn = last_lsn if last_lsn is not None else lsn
        if commit is not None:
            return Tail(last_lsn, commit)
    return Tail(last_lsn, None)


def _dump(
    binaries: Binaries, segment: Segment, segment_size: int
) -> tuple[int | None, dt.datetime | None]:
    segment = settled(segment)
    name = segment_name(segment.timeline, segment.segno, segment_size)
    with tempfile.TemporaryDirectory(prefix="drydock-waldump-") as scratch:
        path = segment.path
        if segment.partial:
            path = Path(scratch) / name
            shutil.copyfile(segment.path, path)
        # pg_waldump exits non-zero at the end of the written WAL ("invalid record
        # length"): that is where the archive ends, not a failure.
        proc = subprocess.run(
            [binaries.tool("pg_waldump"), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    last_lsn, last_commit = None, None
    for line in proc.stdout.splitlines():
        record = _RECORD.search(line)
        if record:
            last_lsn = parse_lsn(record.group(1))
        commit = _COMMIT.search(line)
        if commit:
            last_commit = dt.datetime.fromisoformat(commit.group(1)).replace(tzinfo=dt.UTC)
    return last_lsn, last_commit
