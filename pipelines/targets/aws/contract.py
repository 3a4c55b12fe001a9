"""What the aws target's helpers (status, capabilities) use of an environment.

They are typed against this protocol, not against `AwsEnvironment`, so none of them imports
environment.py: the environment imports them, and the import graph stays one-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec
    from pipelines.targets.aws.common import Clients, StackOutputs
    from pipelines.targets.aws.database import AwsDatabase
    from pipelines.targets.aws.observe import Dimensions
    from pipelines.targets.aws.secrets import AwsSecrets
    from pipelines.targets.base import Release, RolloutResult


class AwsEnv(Protocol):
    name: str
    target: str
    spec: EnvironmentSpec
    clients: Clients

    @property
    def outputs(self) -> StackOutputs: ...

    @property
    def database(self) -> AwsDatabase: ...

    @property
    def secrets(self) -> AwsSecrets: ...

    @property
    def url(self) -> str: ...

    def current_release(self) -> str | None: ...

    def reconfigure(self, variables: Mapping[str, str]) -> RolloutResult: ...

    def restore_command(self, snapshot_id: str) -> str: ...

    def smoke_credentials(self, release: Release) -> tuple[str, str]: ...

    def dimensions(self) -> Dimensions: ...


class AwsCanaryHost(Protocol):
    """What the native canary (canary.py) uses of an environment."""

    name: str
    spec: EnvironmentSpec
    clients: Clients
    poll_s: float
    rollout_timeout_s: float
    metric_lag_s: float

    @property
    def outputs(self) -> StackOutputs: ...

    def sleep(self, seconds: float, /) -> None: ...

    def clock(self) -> float: ...

    def wall_clock(self) -> float: ...

    def dimensions(self) -> Dimensions: ...

    def start_deployment(self, release: Release) -> tuple[str | None, str]: ...

    def production_rule_arn(self) -> str: ...
