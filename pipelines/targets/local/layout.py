"""Where an environment's state lives: one directory per environment, 0700.

.local/<env>/
    secrets/        encrypted secret files (0600) and the key file
    postgres/       cluster home (under /var/lib/drydock when run as root)
    lb/             Caddy: admin socket, pid, JSON access log
    agent/          desired.json, observed.json, slots/, canary/, agent.pid
    logs/           JSON logs of the agent and every replica, rotated
    alarms/         alarm state and history
.local/releases/    unpacked release artifacts, shared by environments
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.postgres.cluster import data_home

STATE_ENV = "DRYDOCK_STATE_DIR"


def state_root() -> Path:
    return Path(os.environ.get(STATE_ENV, ".local")).absolute()


@dataclass(frozen=True)
class EnvLayout:
    name: str
    root: Path

    @classmethod
    def for_env(cls, name: str, state: Path | None = None) -> EnvLayout:
        return cls(name, (state or state_root()) / name)

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def secrets_key(self) -> Path:
        return self.root / "secrets.key"

    @property
    def postgres(self) -> Path:
        return data_home(self.root, "postgres")

    @property
    def lb(self) -> Path:
        return self.root / "lb"

    @property
    def agent(self) -> Path:
        return self.root / "agent"

    @property
    def slots(self) -> Path:
        return self.agent / "slots"

    @property
    def canary(self) -> Path:
        """The canary replica's record: beside the agent's slots, never among them."""
        return self.agent / "canary"

    @property
    def desired(self) -> Path:
        return self.agent / "desired.json"

    @property
    def observed(self) -> Path:
        return self.agent / "observed.json"

    @property
    def agent_pid(self) -> Path:
        return self.agent / "agent.pid"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def alarms(self) -> Path:
        return self.root / "alarms"

    @property
    def releases(self) -> Path:
        return self.root.parent / "releases"

    def create(self) -> None:
        for path in (self.root, self.agent, self.slots, self.logs, self.alarms, self.lb):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.chmod(0o700)
        self.releases.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Atomic replace: readers see the old document or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
