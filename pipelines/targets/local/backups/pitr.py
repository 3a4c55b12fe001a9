"""Point-in-time recovery of a local environment (runbook sections 6 and 8).

`restore_to_point` brings the environment's database back as it was at a moment (or an
LSN), in a new cluster beside the live one:

1. the target is checked against the recoverable window (window.py): not in the future,
   not outside the window, not beyond a gap in the archive;
2. the newest base backup that reaches it is copied into a new cluster home;
3. the WAL segments the replay needs are copied next to it, each checked against its
   recorded sha256 on the way (a damaged one stops the restore before PostgreSQL starts);
4. PostgreSQL starts in archive recovery with `recovery_target_time` (or `_lsn`),
   `recovery_target_action = promote`, and replays up to the target; the copy is ready
   once it has left recovery.

Any failure stops that cluster and removes its directory: nothing is left half-restored.
The copy stays up on its own port until `discard_restore` (or the drill) removes it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.backups.pitr_report import iso_ms
from pipelines.host.ports import free_port
from pipelines.postgres.cluster import Cluster, PostgresError, data_home
from pipelines.postgres.tools import ConnInfo
from pipelines.targets.local.backups.manifest import BackupError, backups_dir, superuser
from pipelines.targets.local.backups.recovery_cluster import (
    configure_recovery,
    hand_over,
    last_commit,
    remove_cluster,
    replay,
)
from pipelines.targets.local.backups.wal import (
    CorruptSegment,
    Segment,
    copy_verified,
    format_lsn,
    parse_lsn,
    read_tail,
    segment_name,
    settled,
)
from pipelines.targets.local.backups.window import (
    Stretch,
    Window,
    base_backups,
    check_target,
    recovery_window,
)
from pipelines.targets.local.runtime import DATABASE, SUPERUSER

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]
RESTORES = "restores"
REPLAY_TIMEOUT_S = 3600.0
SHORT_OF_TARGET = "recovery ended before configured recovery target was reached"


@dataclass
class PointInTimeResult:
    id: str
    environment: str
    target: str  # the time (ISO 8601) or the LSN asked for
    backup_id: str
    home: str
    port: int
    database: str = DATABASE
    recovered_to: str | None = None  # the newest transaction the copy holds, per PostgreSQL
    replayed_bytes: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def url(self, password: str) -> str:
        return ConnInfo("127.0.0.1", self.port, SUPERUSER, password, self.database).url()

    @property
    def seconds(self) -> float:
        return round(sum(self.durations.values()), 3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(text: str) -> float:
    """An ISO 8601 moment; one without a zone is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BackupError(
            f"--to-time {text!r} is not a time; write it as ISO 8601, e.g. "
            "2026-12-03T14:36:59Z (UTC unless it carries an offset)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def restore_to_point(
    env: LocalEnv,
    *,
    to_time: str | None = None,
    to_lsn: str | None = None,
    log: Log | None = None,
    timeout_s: float = REPLAY_TIMEOUT_S,
) -> PointInTimeResult:
    """A new cluster beside `env`'s, holding its data as of `to_time` or `to_lsn`."""
    if (to_time is None) == (to_lsn is None):
        raise BackupError("give exactly one of --to-time and --to-lsn")
    say = log or print
    epoch = parse_time(to_time) if to_time is not None else None
    lsn = parse_lsn(to_lsn) if to_lsn is not None else None
    window = recovery_window(env)
    stretch = check_target(window, epoch=epoch, lsn=lsn, now=time.time())
    target = iso_ms(epoch) if epoch is not None else format_lsn(lsn or 0)
    backup = next(b for b in base_backups(env) if b.snapshot.id == stretch.backup_id)
    restore_id = f"pitr-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
    home = data_home(env.layout.root, restore_id)
    live = env.cluster()
    cluster = Cluster(home=home, port=free_port(), superuser=SUPERUSER, binaries=live.binaries)
    result = PointInTimeResult(restore_id, env.name, target, backup.snapshot.id, str(home), 0)
    result.port = cluster.port

    def step(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} restore {env.name} to {target}: {message}"
        result.steps.append(line)
        say(line)

    def attempt(everything: bool) -> None:
        step(f"copying base backup {backup.snapshot.id} into {home}")
        mark = time.monotonic()
        home.mkdir(mode=0o700)
        (home / "log").mkdir(mode=0o700)
        shutil.copytree(backup.snapshot.base, cluster.data_dir, symlinks=True)
        result.durations["copy_s"] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()
        staged = _stage_wal(env, window, stretch, home / "wal", epoch, lsn, everything)
        result.durations["stage_s"] = round(time.monotonic() - mark, 3)
        step(f"{len(staged)} WAL segment(s) staged, every completed one checked (sha256)")
        configure_recovery(cluster, epoch, lsn)
        hand_over(home, cluster)
        step(f"replaying WAL in a new cluster on port {cluster.port}")
        mark = time.monotonic()
        replayed = replay(cluster, superuser(env).password, timeout_s)
        result.durations["replay_s"] = round(time.monotonic() - mark, 3)
        result.replayed_bytes = max(0, replayed - backup.start_lsn)

    try:
        try:
            attempt(everything=False)
        except PostgresError as exc:
            if epoch is None or SHORT_OF_TARGET not in str(exc):
                raise
            # The segments' times misled the choice (the archive was copied or touched):
            # start again with every segment of the run.
            step("the staged WAL fell short of the target; again with every archived segment")
            remove_cluster(cluster)
            attempt(everything=True)
        result.recovered_to = last_commit(home / "log")
        step(
            f"ready: promoted after {result.durations['replay_s']:.1f} s of replay "
            f"({result.replayed_bytes / 1e6:.1f} MB of WAL); newest transaction in the copy: "
            f"{result.recovered_to or 'unknown'}"
        )
    except BaseException as exc:
        remove_cluster(cluster)
        if isinstance(exc, CorruptSegment):
            raise _corrupt(env, window, stretch, exc, target) from None
        if isinstance(exc, (PostgresError, OSError)):
            raise BackupError(
                f"restoring {env.name} to {target} failed: {exc}. Nothing was left behind "
                f"(the new cluster at {home} was removed)"
            ) from None
        if isinstance(exc, BackupError):
            raise BackupError(f"{exc}. Nothing was left behind ({home} was removed)") from None
        raise
    _record(env, result)
    return result


def _stage_wal(
    env: LocalEnv,
    window: Window,
    stretch: Stretch,
    directory: Path,
    epoch: float | None,
    lsn: int | None,
    everything: bool = False,
) -> list[str]:
    """Copy the segments from the backup's end to just past the target (or, with
    `everything`, to the end of the run), verified."""
    size = window.segment_bytes
    chain = stretch.segments
    first = next(b for b in base_backups(env) if b.snapshot.id == stretch.backup_id)
    wanted = [s for s in chain if s.segno >= first.end_lsn // size]
    if lsn is not None:
        wanted = [s for s in wanted if s.segno <= lsn // size + 1]
    elif epoch is not None and not everything:
        # A segment's mtime is when its last byte arrived: the first one written after the
        # target holds the first commit past it, which is where the replay stops.
        past = [i for i, s in enumerate(wanted) if settled(s).path.stat().st_mtime > epoch]
        if past:
            wanted = wanted[: past[0] + 2]
    directory.mkdir(mode=0o700)
    names = []
    for segment in wanted:
        name = segment_name(segment.timeline, segment.segno, size)
        copy_verified(segment, directory / name)
        names.append(name)
    return names


def _corrupt(
    env: LocalEnv, window: Window, stretch: Stretch, exc: CorruptSegment, target: str
) -> BackupError:
    before = [s for s in stretch.segments if s.segno < exc.segment.segno]
    reach = _reach(env, window, before)
    return BackupError(
        f"cannot recover {env.name} to {target}: {exc} (disk fault or tampering); "
        f"the latest moment reachable before it is {reach}. Nothing was restored "
        "(the new cluster was removed)"
    )


def _reach(env: LocalEnv, window: Window, chain: list[Segment]) -> str:
    if not chain:
        return "none (the damaged segment is the first one the replay needs)"
    tail = read_tail(env.cluster().binaries, chain, window.segment_bytes)
    return iso_ms(tail.last_commit.timestamp()) if tail.last_commit else "unknown"


# -- restores left running ------------------------------------------------------


def _record(env: LocalEnv, result: PointInTimeResult) -> None:
    directory = backups_dir(env) / RESTORES
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / f"{result.id}.json").write_text(json.dumps(result.to_json(), indent=2))


def discard_restore(env: LocalEnv, restore_id: str) -> None:
    """Stop a restored copy and delete it."""
    path = backups_dir(env) / RESTORES / f"{restore_id}.json"
    if not path.is_file():
        raise BackupError(f"no restored copy {restore_id!r} of {env.name} ({path} is missing)")
    doc = json.loads(path.read_text())
    live = env.cluster()
    remove_cluster(Cluster(Path(doc["home"]), int(doc["port"]), SUPERUSER, binaries=live.binaries))
    path.unlink()
