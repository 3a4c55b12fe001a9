"""The Target protocol: what a pipeline may ask of an environment, wherever it runs.

A pipeline asks a `Target` for an `Environment` by name (`staging`, `production`) and uses
only what the protocols below expose: the environment itself (rollouts, observation, the
deploy's snapshot), and its capabilities `database`, `secrets`, `backups` and
`operations`. The local target implements them with embedded processes; the aws target with
boto3 against the resources the Pulumi program created. Results are plain typed records so
reports, ledgers and tests can serialise them as they are.

Nothing above `pipelines/targets/` imports a target by name: `get_target` is the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from infra.spec import EnvironmentSpec
    from pipelines.ledger import Ledger
    from pipelines.lock import Holding

ENVIRONMENTS = ("staging", "production")


class TargetError(RuntimeError):
    """An operation on an environment failed. The message says what, where and what to do."""


class FaultUnavailable(TargetError):
    """A game-day fault this host or target cannot make (no root for a tmpfs, no FIS on AWS):
    the scenario is skipped, with this message as the reason."""


class Health(StrEnum):
    STARTING = "starting"
    READY = "ready"
    UNREADY = "unready"
    DRAINING = "draining"
    DEAD = "dead"


class RolloutState(StrEnum):
    COMPLETED = "completed"
    IN_PROGRESS = "in_progress"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


@dataclass(frozen=True)
class Release:
    """One immutable artifact, built once and promoted: the same bytes everywhere."""

    id: str  # "<version>+<sha12>" locally; the image digest on AWS
    version: str
    git_sha: str
    artifact: str  # a directory locally, an image URI on AWS
    created_at: str
    flags: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaStatus:
    slot: int
    pid: int | None
    port: int
    release: str
    health: Health
    restarts: int = 0
    since: str = ""


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    running: bool
    listen: str = ""
    user: str = ""


@dataclass(frozen=True)
class EnvironmentStatus:
    name: str
    target: str
    up: bool
    release: str | None
    desired_replicas: int
    replicas: Sequence[ReplicaStatus]
    processes: Sequence[ProcessStatus]
    alarms: Mapping[str, str]
    database: Mapping[str, Any]
    url: str
    problems: Sequence[str] = ()

    @property
    def ready_replicas(self) -> int:
        return sum(1 for replica in self.replicas if replica.health is Health.READY)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ready_replicas"] = self.ready_replicas
        return data


@dataclass(frozen=True)
class RolloutResult:
    state: RolloutState
    release: str
    previous_release: str | None
    reason: str
    duration_s: float
    events: Sequence[str] = ()
    # Timestamped, for a report's timeline: {"at": epoch, "kind": "replica_start" |
    # "replica_ready" | "replica_drain" | "rollback", "label": ...}. Empty where the target
    # cannot say when each replica changed.
    marks: Sequence[Mapping[str, Any]] = ()

    @property
    def ok(self) -> bool:
        return self.state is RolloutState.COMPLETED


@dataclass(frozen=True)
class ServedTraffic:
    """What one side of a canary (the new release, or the stable baseline) served in a
    window. Per-request latencies where the target records them (the local load balancer's
    access log); otherwise only the aggregate p95 (CloudWatch's target-group percentiles)."""

    requests: int
    errors: int  # 5xx and connection failures
    latencies_s: Sequence[float] = ()
    p95_s: float | None = None


@dataclass(frozen=True)
class CanaryWindow:
    share: int  # percent of traffic the canary was given
    start: float  # unix time
    end: float
    canary: ServedTraffic
    baseline: ServedTraffic


@dataclass(frozen=True)
class Observation:
    """What the environment looked like over a window: the SLO inputs of deploy step 7."""

    window_s: float
    requests: int
    errors_5xx: int
    p95_s: float | None
    alarms_in_alarm: Sequence[str]
    error_log_lines: int

    @property
    def error_rate(self) -> float:
        return self.errors_5xx / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ServerMetrics:
    """The service's own counters over one interval ending at `at` (unix time): one scrape
    of the replicas locally, one CloudWatch period on AWS. What the servers counted, beside
    what a client saw; None where the interval had no requests to measure."""

    at: float
    period_s: float
    requests_per_s: float | None
    error_rate: float | None  # 5xx / requests, 0..1
    p95_s: float | None


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands against one release's migrations. `serves`: whether that
    release's code can serve on it (its own head, or ahead by expand revisions only); None
    when the release predates the record that tells."""

    current: str | None
    head: str
    pending: Sequence[str]
    serves: bool | None = None
    reason: str = ""
    serves_from: str | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MigrationStatus:
        return cls(
            doc.get("current"),
            str(doc["head"]),
            tuple(doc.get("pending", ())),
            doc.get("serves"),
            str(doc.get("reason", "")),
            doc.get("serves_from"),
        )

    @property
    def compatible(self) -> bool:
        """Serves, or (for a release that cannot tell) sits exactly at its head."""
        return self.serves if self.serves is not None else self.current == self.head

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.head


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot as `backup.list` shows it, on any target; `record` is the target's own
    full record (a manifest locally, the RDS snapshot's facts on AWS) for `--json`."""

    id: str
    kind: str
    created_epoch: float
    location: str  # a directory locally, an ARN on AWS
    status: str = "available"
    size_bytes: int | None = None
    rows: int | None = None
    physical: bool = False
    expires_at: str | None = None
    schema_head: str | None = None
    deploy_id: str = ""
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneItem:
    id: str
    keep: bool
    reason: str
    size_bytes: int = 0


@dataclass(frozen=True)
class PruneOutcome:
    """What retention kept and deleted (or would, on a dry run)."""

    environment: str
    target: str
    dry_run: bool
    items: Sequence[PruneItem]
    leftovers: Sequence[str] = ()  # names of half-written snapshots a crash left behind

    @property
    def kept(self) -> list[PruneItem]:
        return [item for item in self.items if item.keep]

    @property
    def deleted(self) -> list[PruneItem]:
        return [item for item in self.items if not item.keep]


@dataclass(frozen=True)
class RestoreOutcome:
    snapshot_id: str
    environment: str
    database: str
    seconds: float


@dataclass(frozen=True)
class RecoveryWindow:
    """How far back and how far forward an environment's data can be recovered to a point
    in time (epochs; None: nothing recoverable), and any hole in between."""

    environment: str
    target: str
    earliest: float | None
    latest: float | None
    gaps: Sequence[str] = ()
    basis: str = ""  # what the window comes from, for people
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PointInTimeOutcome:
    """A copy of an environment's data as of a moment (or an LSN): beside the live database
    (`scratch`) or in its place (`replace`)."""

    id: str
    environment: str
    point: str  # the time (ISO 8601) or the LSN asked for
    into: str
    location: str  # where the copy is: a cluster's address locally, an instance on AWS
    seconds: float
    recovered_to: str | None = None  # the newest transaction the copy holds, when known
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmTransition:
    at: float  # unix time
    alarm: str
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class RotationOutcome:
    """What a secret rotation did (runbook section 12), for the operator and the ledger."""

    environment: str
    secret: str  # the secret's full name in the store
    mode: str  # "routine" or "compromise"
    version: str  # the new current version's id
    kid: str | None  # for the signing key: the id of the key that signs from now on
    previous_kid: str | None  # routine: the key still verifying access tokens until...
    previous_not_after: float | None  # ...this Unix time
    dropped: tuple[str, ...]  # keys (kids) or versions no longer honoured anywhere
    done: tuple[str, ...]  # one line per thing done
    next_steps: tuple[str, ...]  # what the operator must still do
    ok: bool = True  # False: the store changed, but the service was not rolled onto it
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConfirmationNeeded(TargetError):
    """A change that needs an explicit yes (replacing production's data) was not confirmed."""


@runtime_checkable
class Secrets(Protocol):
    def get(self, name: str, stage: str = "current") -> str: ...

    def put(self, name: str, value: str) -> object: ...

    def rotate(self, name: str, new_value: str) -> object: ...

    def retire(self, name: str) -> object: ...


@runtime_checkable
class Database(Protocol):
    def migration_status(self) -> MigrationStatus: ...

    def migrate(self) -> MigrationStatus: ...

    def url(self, role: str = "app") -> str: ...


@runtime_checkable
class Backups(Protocol):
    """Snapshots, retention, restores and the restore drill of one environment's data."""

    def take(
        self, kind: str, reason: str = "", deploy_id: str = "", physical: bool = True
    ) -> SnapshotInfo: ...

    def list(self, kind: str | None = None) -> Sequence[SnapshotInfo]:
        """Newest first."""
        ...

    def prune(self, dry_run: bool) -> PruneOutcome: ...

    def restore(
        self,
        snapshot_id: str,
        into: str,
        *,
        confirm: bool,
        source: Environment | None = None,
        log: Callable[[str], None] = print,
    ) -> RestoreOutcome:
        """`into`: `scratch` (a new database beside the live one) or `replace`; `source`:
        whose snapshot, when not this environment's. Unconfirmed production replaces raise
        ConfirmationNeeded."""
        ...

    def drill(self, into: Environment, snapshot_id: str | None, reports_dir: Path) -> bool:
        """Restore this environment's data beside `into` (or wherever the target restores a
        drill), verify and serve it, report, clean up; True when the drill passed."""
        ...

    def window(self) -> RecoveryWindow:
        """The point-in-time recoverable window (runbook sections 6 and 8)."""
        ...

    def restore_to_point(
        self,
        *,
        to_time: str | None = None,
        to_lsn: str | None = None,
        into: str = "scratch",
        confirm: bool = False,
        log: Callable[[str], None] = print,
    ) -> PointInTimeOutcome:
        """The data as of `to_time` (ISO 8601) or `to_lsn`, beside the live database or in
        its place; targets outside the window, in the future or beyond a gap raise
        TargetError, leaving nothing behind."""
        ...

    def discard_point_restore(self, restore_id: str) -> None:
        """Remove a copy `restore_to_point(into="scratch")` left running."""
        ...

    def pitr_drill(
        self, reports_dir: Path, ledger: Ledger, log: Callable[[str], None] = print
    ) -> bool:
        """Write orders, restore to a moment T among them beside the live database, verify
        to the row, report RPO and RTO (and an entry in `ledger`), clean up; True when the
        drill passed."""
        ...


@runtime_checkable
class Operations(Protocol):
    """What the on-call engineer does to a running environment (runbook sections 8-12)."""

    def flags(self) -> dict[str, bool]:
        """The flags in force, every registered flag with its value."""
        ...

    flag_change: str  # how a flag change is applied, for messages ("a rolling restart")

    def set_flags(self, flags: Mapping[str, bool]) -> RolloutResult:
        """Apply these flag values (the others stay) by a health-gated rolling change."""
        ...

    def migration_status(self) -> MigrationStatus:
        """Where the schema is against the running release's migrations."""
        ...

    def migrate(self) -> MigrationStatus:
        """Apply the running release's migrations."""
        ...

    def reset_database(self) -> MigrationStatus:
        """Drop the database, recreate it and migrate it (never production)."""
        ...

    def schema_behind(self, release_id: str) -> str | None:
        """Why `release_id`'s code and the current schema differ, or None when they agree."""
        ...

    def alarm_transitions(self, since: float) -> Sequence[AlarmTransition]: ...

    def server_metrics(self, start: float, end: float) -> Sequence[ServerMetrics]:
        """The service's requests per second, error rate and p95 over [start, end], one
        point per interval the target measures (the local agent's scrape, CloudWatch's
        minute), oldest first."""
        ...

    def rotate_secret(self, name: str, compromised: bool = False) -> RotationOutcome:
        """A new value for `name` (`jwt`, `metrics`, `db-app` or a full name), the service
        rolled onto it. Routine keeps the previous signing key for one access-token
        lifetime; `compromised` keeps none."""
        ...

    def log_files(self) -> Sequence[Path]: ...


class Faults(Protocol):
    """Failures made on purpose, for game days (runbook sections 8 and 13): each kind breaks
    one part of the environment the way it breaks for real."""

    @property
    def kinds(self) -> Sequence[str]: ...

    def inject(self, kind: str) -> str:
        """Break it now; returns what was broken, for the report ("replica slot 0, pid 42")."""
        ...

    def heal(self, kind: str) -> str:
        """Undo what `inject` did that does not end by itself (SIGCONT a stopped replica,
        start PostgreSQL, release a held lock); "" when there is nothing to undo."""
        ...


@runtime_checkable
class Canary(Protocol):
    """Progressive delivery of a release beside the stable replicas (runbook §7): a share of
    the traffic at a time, each share compared with the stable baseline before the next."""

    @property
    def steps(self) -> Sequence[int]:
        """The stages: percentages of traffic, rising to 100."""
        ...

    @property
    def step_seconds(self) -> float:
        """How long each stage holds before it is judged."""
        ...

    def start(self, release: Release, timeout_s: float) -> None:
        """Start the release beside the stable replicas, taking no traffic yet; TargetError
        when it does not turn ready in time (and then nothing is left running)."""
        ...

    def shift(self, percent: int) -> float:
        """Give the canary `percent` of the traffic, or wait until the platform has; returns
        the share in force (a target may round it)."""
        ...

    def window(self, share: int, start: float, end: float) -> CanaryWindow:
        """What the canary and the stable baseline served between two unix times."""
        ...

    def abort(self, reason: str) -> str:
        """All traffic back to the stable replicas, the canary stopped; says what was done."""
        ...

    def promote(self, release: Release, timeout_s: float) -> RolloutResult:
        """Every replica onto the release, then the canary retired."""
        ...


@runtime_checkable
class Environment(Protocol):
    name: str

    @property
    def database(self) -> Database: ...

    @property
    def secrets(self) -> Secrets: ...

    @property
    def backups(self) -> Backups: ...

    @property
    def operations(self) -> Operations: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def canary(self) -> Canary: ...

    @property
    def location(self) -> str:
        """Where the environment lives, for messages: a state directory, a stack."""
        ...

    def up(self, release: Release | None = None, bootstrap: bool = True) -> EnvironmentStatus: ...

    def down(self, purge_data: bool = False) -> Sequence[str]: ...

    def status(self) -> EnvironmentStatus: ...

    def current_release(self) -> str | None: ...

    def rollout(self, release: Release, timeout_s: float | None = None) -> RolloutResult: ...

    def rollback(self, to_release: str | None = None) -> RolloutResult: ...

    def observe(self, window_s: float, end: float | None = None) -> Observation: ...

    # What a deploy needs beyond the table in DESIGN.md.
    @property
    def url(self) -> str: ...

    @property
    def bake_window_s(self) -> float: ...

    @property
    def spec(self) -> EnvironmentSpec: ...

    def migrate(self, release: Release) -> MigrationStatus: ...

    def snapshot(self, kind: str, reason: str = "", deploy_id: str = "") -> Mapping[str, Any]: ...

    def verify_snapshot(self, snapshot_id: str) -> Mapping[str, Any]: ...

    def restore_command(self, snapshot_id: str) -> str: ...

    def smoke_credentials(self, release: Release | None = None) -> tuple[str, str]:
        """The smoke suite's admin, made by `release` (None: the release running now) if it
        does not exist yet."""
        ...


@runtime_checkable
class Target(Protocol):
    name: str

    def environment(self, name: str) -> Environment: ...

    def ledger(self) -> Ledger:
        """The history of both environments: deploys, rollbacks, flags, snapshots."""
        ...

    def lock(self, name: str, purpose: str) -> AbstractContextManager[Holding]:
        """One change at a time per environment: deploys, rollbacks and flag changes. The
        holding's `check()` says, before each change, whether the lock is still ours."""
        ...

    def release(self, ref: str | None, sha: str) -> Release:
        """The artifact of a commit (a git ref locally, an image digest on AWS)."""
        ...

    def artifact_commit(self, release: Release) -> str | None:
        """The commit the artifact says it was built from, which steps 5-7 require to
        have passed steps 1-4; None where the run builds the artifact from its own commit."""
        ...


def check_environment_name(name: str) -> str:
    if name not in ENVIRONMENTS:
        raise TargetError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")
    return name
