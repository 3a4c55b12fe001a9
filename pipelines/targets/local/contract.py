"""What the local target's helpers (status, backups, drills) use of an environment.

They are typed against this protocol, not against `LocalEnvironment`, so none of them imports
environment.py: the environment imports them, and the import graph stays one-way.
`LocalEnvironment` satisfies it structurally; mypy checks that wherever one is passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec
    from pipelines.postgres.cluster import Cluster
    from pipelines.targets.base import EnvironmentStatus, Release, RolloutResult
    from pipelines.targets.local.database import LocalDatabase
    from pipelines.targets.local.layout import EnvLayout
    from pipelines.targets.local.loadbalancer import LoadBalancer
    from pipelines.targets.local.secrets import SecretStore


class LocalEnv(Protocol):
    name: str
    target: str
    layout: EnvLayout
    spec: EnvironmentSpec

    @property
    def secrets(self) -> SecretStore: ...

    @property
    def database(self) -> LocalDatabase: ...

    @property
    def url(self) -> str: ...

    @property
    def slot_ports(self) -> list[int]: ...

    def cluster(self) -> Cluster: ...

    def load_balancer(self) -> LoadBalancer: ...

    def up(self, release: Release | None = None, bootstrap: bool = True) -> EnvironmentStatus: ...

    def down(self, purge_data: bool = False) -> Sequence[str]: ...

    def status(self) -> EnvironmentStatus: ...

    def agent_pid(self) -> int | None: ...

    def ensure_agent(self) -> int: ...

    def desired(self) -> dict[str, Any] | None: ...

    def observed(self) -> dict[str, Any]: ...

    def current_release(self) -> str | None: ...

    def history(self) -> list[dict[str, Any]]: ...

    def set_desired(
        self,
        release: Release | dict[str, Any],
        *,
        replicas: int | None = None,
        flags: dict[str, bool] | None = None,
        deadline_s: float = 30,
    ) -> int: ...

    def restart(
        self, flags: dict[str, bool] | None = None, timeout_s: float = 30.0
    ) -> RolloutResult: ...

    def rollout(self, release: Release, timeout_s: float | None = None) -> RolloutResult: ...

    def restore_command(self, snapshot_id: str) -> str: ...

    def ensure_smoke_admin(self, artifact: str | None = None) -> tuple[str, str]: ...
