"""The embedded local target: staging and production on one machine, with real parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines import releases
from pipelines.lock import LockFileHolding, environment_lock
from pipelines.targets.base import Release
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.layout import state_root
from pipelines.targets.local.ledger import FileLedger


class LocalTarget:
    name = "local"

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    @property
    def root(self) -> Path:
        return self.state_dir or state_root()

    def environment(self, name: str) -> LocalEnvironment:
        return LocalEnvironment(name, state_dir=self.state_dir)

    def ledger(self) -> FileLedger:
        return FileLedger(self.root / "ledger.jsonl")

    @contextmanager
    def lock(self, name: str, purpose: str) -> Iterator[LockFileHolding]:
        """One deploy, rollback or flag change at a time per environment: a lock file that
        names its holder, broken when that process is gone."""
        with environment_lock(self.root / "locks" / f"{name}.lock", purpose) as holding:
            yield holding

    def artifact_commit(self, release: Release) -> None:
        """Nothing to prove: the artifact is `git archive` of the commit, made by this run."""
        return None

    def release(self, ref: str | None, sha: str) -> Release:
        """The commit's artifact: `git archive` of `service/` under the state directory."""
        return releases.build(self.root / "releases", ref or "HEAD")
