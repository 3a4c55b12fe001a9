"""The embedded local target: staging and production on one machine, with real parts."""

from __future__ import annotations

from pathlib import Path

from pipelines.targets.local.environment import LocalEnvironment


class LocalTarget:
    name = "local"

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    def environment(self, name: str) -> LocalEnvironment:
        return LocalEnvironment(name, state_dir=self.state_dir)
