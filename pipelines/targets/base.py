"""The Target protocol: what a pipeline may ask of an environment, wherever it runs.

A pipeline asks a `Target` for an `Environment` by name (`staging`, `production`) and uses
only the capabilities below. The local target implements them with embedded processes;
the aws target with boto3 against the resources the Pulumi program created. Results are
plain typed records so reports, ledgers and tests can serialise them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec

ENVIRONMENTS = ("staging", "production")


class TargetError(RuntimeError):
    """An operation on an environment failed. The message says what, where and what to do."""


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

    @property
    def ok(self) -> bool:
        return self.state is RolloutState.COMPLETED


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
class MigrationStatus:
    current: str | None
    head: str
    pending: Sequence[str]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.head


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
class Environment(Protocol):
    name: str

    @property
    def database(self) -> Database: ...

    @property
    def secrets(self) -> Secrets: ...

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

    def smoke_credentials(self, release: Release) -> tuple[str, str]: ...


@runtime_checkable
class Target(Protocol):
    name: str

    def environment(self, name: str) -> Environment: ...


def check_environment_name(name: str) -> str:
    if name not in ENVIRONMENTS:
        raise TargetError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")
    return name
