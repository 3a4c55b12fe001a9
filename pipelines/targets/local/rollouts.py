"""Desired state and rollouts of a local environment: what the pipeline asks of the agent.

Pipelines never wait on timers: `rollout()` writes the desired state and waits for the agent
to report the generation's outcome in `agent/observed.json`.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pipelines.targets.base import Release, RolloutResult, RolloutState, TargetError
from pipelines.targets.local.layout import EnvLayout, read_json, write_json

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec


def as_document(release: Release | dict[str, Any]) -> dict[str, Any]:
    """How a release is written into the desired state and the history."""
    if isinstance(release, dict):
        return release
    return {
        "id": release.id,
        "artifact": release.artifact,
        "version": release.version,
        "git_sha": release.git_sha,
    }


class Rollouts:
    """Mixed into LocalEnvironment, which provides these attributes."""

    name: str
    layout: EnvLayout
    spec: EnvironmentSpec

    def ensure_agent(self) -> int:
        raise NotImplementedError

    def agent_pid(self) -> int | None:
        raise NotImplementedError

    def desired(self) -> dict[str, Any] | None:
        data: dict[str, Any] | None = read_json(self.layout.desired)
        return data

    def observed(self) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.layout.observed) or {}
        return data

    def current_release(self) -> str | None:
        stable = self.observed().get("stable")
        return stable["release"]["id"] if stable else None

    def set_desired(
        self,
        release: Release | dict[str, Any],
        *,
        replicas: int | None = None,
        flags: dict[str, bool] | None = None,
        deadline_s: float = 30,
    ) -> int:
        previous = self.desired() or {}
        release_doc = as_document(release)
        generation = int(previous.get("generation", 0)) + 1
        try:
            self._write_desired(generation, release_doc, previous, replicas, flags, deadline_s)
        except OSError as exc:
            raise TargetError(
                f"{self.name}: could not record the desired state in {self.layout.desired}: "
                f"{exc.strerror or exc}. Nothing changed: the running release keeps serving. "
                "Free space under the state directory and retry."
            ) from None
        return generation

    def _write_desired(
        self,
        generation: int,
        release_doc: dict[str, Any],
        previous: dict[str, Any],
        replicas: int | None,
        flags: dict[str, bool] | None,
        deadline_s: float,
    ) -> None:
        write_json(
            self.layout.desired,
            {
                "generation": generation,
                "release": release_doc,
                "replicas": replicas
                if replicas is not None
                else previous.get("replicas", self.spec.desired_count),
                "flags": flags if flags is not None else previous.get("flags", {}),
                "deadline_s": deadline_s,
                "updated_at": time.time(),
            },
        )

    def rollout(self, release: Release, timeout_s: float | None = None) -> RolloutResult:
        return self._apply(release, timeout_s or 30.0)

    def restart(
        self, flags: dict[str, bool] | None = None, timeout_s: float = 30.0
    ) -> RolloutResult:
        """A rolling restart of the running release (new secrets or flags): the stable one,
        not the desired one, which still names a release whose rollout was reversed."""
        desired = self.desired()
        if desired is None:
            raise TargetError(f"{self.name}: nothing is deployed yet")
        stable = self.observed().get("stable") or {}
        return self._apply(stable.get("release") or desired["release"], timeout_s, flags=flags)

    def history(self) -> list[dict[str, Any]]:
        """Releases this environment completed rollouts of, oldest first."""
        path = self.layout.agent / "releases.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def rollback_candidate(self, to_release: str | None = None) -> dict[str, Any]:
        """`to_release`, or the newest completed release before the current one."""
        current = self.current_release()
        candidates = [r for r in reversed(self.history()) if r["id"] != current]
        if to_release is not None:
            candidates = [r for r in candidates if r["id"] == to_release]
        if not candidates:
            wanted = to_release or "an earlier release"
            raise TargetError(
                f"{self.name}: cannot roll back to {wanted}: not in this "
                f"environment's history ({self.layout.agent / 'releases.jsonl'})"
            )
        chosen: dict[str, Any] = candidates[0]
        return chosen

    def rollback(self, to_release: str | None = None) -> RolloutResult:
        """Roll the code back (never the data) to `to_release` or the one before the current."""
        return self._apply(self.rollback_candidate(to_release), 30.0)

    def _apply(
        self,
        release: Release | dict[str, Any],
        timeout_s: float,
        flags: dict[str, bool] | None = None,
    ) -> RolloutResult:
        self.ensure_agent()
        previous = self.current_release()
        started = time.time()
        generation = self.set_desired(release, flags=flags, deadline_s=timeout_s)
        release_id = release.id if isinstance(release, Release) else release["id"]
        # Wait on health, never on a timer: the agent says when the rollout finished.
        hard_stop = started + timeout_s + self.spec.local_drain_seconds + 30
        while time.time() < hard_stop:
            rollout = self.observed().get("rollout") or {}
            if rollout.get("generation") == generation and rollout.get("state") != "in_progress":
                if rollout["state"] == RolloutState.COMPLETED.value:
                    self._record(release)
                return RolloutResult(
                    RolloutState(rollout["state"]),
                    release_id,
                    previous,
                    rollout.get("reason", ""),
                    time.time() - started,
                    tuple(rollout.get("events", ())),
                    tuple(rollout.get("marks", ())),
                )
            if self.agent_pid() is None:
                self.ensure_agent()
            time.sleep(0.1)
        return RolloutResult(
            RolloutState.FAILED,
            release_id,
            previous,
            "the agent did not finish the rollout in time",
            time.time() - started,
        )

    def _record(self, release: Release | dict[str, Any]) -> None:
        doc = as_document(release)
        with (self.layout.agent / "releases.jsonl").open("a") as handle:
            handle.write(json.dumps({**doc, "completed_at": time.time()}) + "\n")
