"""The local agent: the ECS scheduler's counterpart, one long-lived process per environment.

It reads the desired state (`agent/desired.json`: release, replica count, flags, generation)
and converges the replicas to it, tick by tick:

- a new generation rolls out with 100 % minimum healthy and 200 % maximum: new replicas start
  on free slots, and only when the load balancer reports every one of them healthy are the
  old ones drained (SIGTERM, drain window, then SIGKILL);
- a rollout whose replicas are not all healthy by its deadline, or that crash-loop, trips the
  circuit breaker: the new replicas are stopped and the last stable generation keeps serving;
- in steady state a replica that dies, or fails its liveness probe three times running, is
  replaced, with exponential backoff;
- the observed state is written atomically after every tick (`agent/observed.json`).

Replicas run in their own sessions, so killing the agent leaves them serving; a restarted agent
adopts them from the slot records and never starts duplicates. A file lock keeps a second
agent for the same environment from starting at all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipelines.targets.base import Health, RolloutState
from pipelines.targets.local.layout import EnvLayout, read_json, write_json
from pipelines.targets.local.replicas import (
    ReplicaRecord,
    Replicas,
    is_alive,
    probe,
    rotate_log,
)

log = logging.getLogger("drydock.agent")

TICK_S = 0.25
LIVENESS_FAILURES = 3
LIVENESS_INTERVAL_S = 2.0
LIVENESS_GRACE_S = 10.0
CRASH_LOOP = 3
KILL_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0
ROTATE_EVERY_S = 30.0
# With no rollout running and every replica ready, readiness and the load balancer's view are
# asked at most this often (process exits are still seen every tick): four probes a second
# per replica cost an idle environment more CPU than everything else it does.
STEADY_PROBE_S = 1.0


@dataclass
class SlotHealth:
    health: Health = Health.STARTING
    reason: str = ""
    liveness_failures: int = 0
    live_checked_at: float = float("-inf")
    in_lb: bool = False


@dataclass
class Rollout:
    generation: int
    release: str
    started_at: float
    state: RolloutState = RolloutState.IN_PROGRESS
    reason: str = ""
    finished_at: float | None = None
    events: list[str] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)
    ready: set[int] = field(default_factory=set)  # slots whose readiness is marked already
    deaths: int = 0

    def note(self, message: str, kind: str | None = None, label: str = "") -> None:
        """A line for people and, with `kind`, a timestamped mark for the report's timeline."""
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        if kind is not None:
            self.marks.append({"at": time.time(), "kind": kind, "label": label or message})
        log.info(message, extra={"generation": self.generation})


class Agent:
    def __init__(
        self,
        layout: EnvLayout,
        *,
        slot_ports: list[int],
        liveness_path: str,
        readiness_path: str,
        drain_seconds: float,
        env_for: Callable[[dict[str, Any]], dict[str, str]],
        lb_health: Callable[[], dict[int, bool]] | None = None,
        internal_token: Callable[[], str] | None = None,
    ) -> None:
        self.layout = layout
        self.slot_ports = slot_ports
        self.liveness_path = liveness_path
        self.readiness_path = readiness_path
        self.drain_seconds = drain_seconds
        self.env_for = env_for
        self.lb_health = lb_health
        self.internal_token = internal_token
        self.replicas = Replicas(layout)
        self.health: dict[int, SlotHealth] = {}
        self.backoff: dict[int, tuple[int, float]] = {}  # slot -> (failures, not before)
        self.failed: set[int] = set()
        previous = read_json(layout.observed) or {}
        self.stable: dict[str, Any] | None = previous.get("stable")
        self.failed.update(previous.get("failed_generations", []))
        self.rollout: Rollout | None = None
        self.client = httpx.Client(timeout=1.0)
        self._rotated_at = float("-inf")
        self._probed_at = float("-inf")

    # -- one tick ------------------------------------------------------------

    def tick(self) -> None:
        self.replicas.reap()
        desired = read_json(self.layout.desired)
        records = self.replicas.records()
        self._observe(records)
        records = self._finish_drains(records)
        if desired is not None:
            target = self._target(desired)
            if target is not None:
                self._converge(target, records)
        self._write_observed(desired)
        self._rotate_logs()

    def _rotate_logs(self) -> None:
        """The agent's and the replicas' JSON logs roll at LOG_MAX_BYTES (copy and truncate:
        the writers keep appending to the same file)."""
        if time.monotonic() - self._rotated_at < ROTATE_EVERY_S:
            return
        self._rotated_at = time.monotonic()
        for path in self.layout.logs.glob("*.log"):
            rotate_log(path)

    def _target(self, desired: dict[str, Any]) -> dict[str, Any] | None:
        """The generation to run: the desired one, unless its rollout failed."""
        if desired["generation"] in self.failed:
            return self.stable
        return desired

    def _steady(self, records: dict[int, ReplicaRecord]) -> bool:
        """No rollout running, and every replica known, serving and last seen ready."""
        if self.rollout is not None and self.rollout.state is RolloutState.IN_PROGRESS:
            return False
        return set(records) == set(self.health) and all(
            self.health[slot].health is Health.READY and record.draining_since is None
            for slot, record in records.items()
        )

    def _observe(self, records: dict[int, ReplicaRecord]) -> None:
        now = time.monotonic()
        probing = not self._steady(records) or now - self._probed_at >= STEADY_PROBE_S
        if probing:
            self._probed_at = now
        in_lb = self.lb_health() if self.lb_health and probing else {}
        readiness_headers = self._readiness_headers() if probing and records else {}
        for slot, record in records.items():
            state = self.health.setdefault(slot, SlotHealth())
            if not is_alive(record):
                state.health, state.reason = Health.DEAD, "process exited"
                continue
            if record.draining_since is not None:
                state.health, state.reason = Health.DRAINING, "draining"
                continue
            if not probing:
                continue
            now = time.monotonic()
            if now - state.live_checked_at >= LIVENESS_INTERVAL_S:
                # Like an ECS container health check: an interval, then a count of failures,
                # so a replica that is slow under load is not restarted for one late answer.
                state.live_checked_at = now
                live, _ = probe(self.client, record.port, self.liveness_path)
                if live == 200:
                    state.liveness_failures = 0
                elif time.time() - record.started_at > LIVENESS_GRACE_S:
                    state.liveness_failures += 1
            ready, reason = probe(self.client, record.port, self.readiness_path, readiness_headers)
            if ready == 200:
                state.health, state.reason = Health.READY, ""
            elif ready is None and state.health is Health.STARTING:
                state.reason = "starting"
            else:
                state.health = Health.UNREADY
                state.reason = reason or (f"readiness {ready}" if ready else "not answering")
            state.in_lb = in_lb.get(record.port, state.health is Health.READY)
        for slot in list(self.health):
            if slot not in records:
                del self.health[slot]

    def _readiness_headers(self) -> dict[str, str]:
        """The replicas' METRICS_TOKEN, so that an unready replica says why. Read once per
        round of probes: a rotation reaches the agent with the replicas that carry it."""
        if self.internal_token is None:
            return {}
        try:
            token = self.internal_token()
        except Exception as exc:  # a status code without reasons still gates the rollout
            log.warning("no token for readiness details: %s", exc)
            return {}
        return {"Authorization": f"Bearer {token}"}

    def _finish_drains(self, records: dict[int, ReplicaRecord]) -> dict[int, ReplicaRecord]:
        now = time.time()
        for slot, record in list(records.items()):
            if record.draining_since is None:
                continue
            if not is_alive(record):
                self.replicas.forget(slot)
                del records[slot]
            elif now - record.draining_since > self.drain_seconds + KILL_GRACE_S:
                log.warning("replica ignored SIGTERM; killing", extra={"slot": slot})
                self.replicas.kill(record)
        return records

    # -- convergence ---------------------------------------------------------

    def _converge(self, target: dict[str, Any], records: dict[int, ReplicaRecord]) -> None:
        generation = int(target["generation"])
        wanted = int(target["replicas"])
        active = {s: r for s, r in records.items() if r.draining_since is None}
        current = {s: r for s, r in active.items() if r.generation == generation}
        old = {s: r for s, r in active.items() if r.generation != generation}
        stable_generation = self.stable["generation"] if self.stable else None

        if generation != stable_generation:
            self._roll(target, current, old, records)
            return
        self._replace_unhealthy(target, current)
        missing = wanted - len(current)
        for _ in range(max(0, missing)):
            if not self._spawn(target, records):
                break
        for record in sorted(current.values(), key=lambda r: r.slot)[wanted:]:
            self.replicas.drain(record)
        for record in old.values():
            self.replicas.drain(record)

    def _roll(
        self,
        target: dict[str, Any],
        current: dict[int, ReplicaRecord],
        old: dict[int, ReplicaRecord],
        records: dict[int, ReplicaRecord],
    ) -> None:
        generation, wanted = int(target["generation"]), int(target["replicas"])
        rollout = self.rollout
        if rollout is None or rollout.generation != generation:
            rollout = self.rollout = Rollout(generation, target["release"]["id"], time.time())
            rollout.note(f"rollout of {rollout.release} (generation {generation}) started")
        for slot in list(current):
            if self.health.get(slot, SlotHealth()).health is Health.DEAD:
                rollout.deaths += 1
                rollout.note(f"replica on slot {slot} exited during rollout")
                self.replicas.forget(slot)
                del current[slot]
                records.pop(slot, None)
        deadline = float(target.get("deadline_s", 30))
        if rollout.deaths >= CRASH_LOOP:
            self._trip(rollout, current, f"replicas crashed {rollout.deaths} times")
            return
        # The deadline is for turning healthy: once every new replica is, the old ones are
        # draining and tripping now would stop the only replicas left to serve.
        in_lb = [s for s in current if self.health.get(s, SlotHealth()).in_lb]
        if len(in_lb) < wanted and time.time() - rollout.started_at > deadline:
            reasons = sorted({self.health[s].reason for s in current if s in self.health} - {""})
            detail = f": {'; '.join(reasons)}" if reasons else ""
            self._trip(rollout, current, f"new replicas not healthy within {deadline:g} s{detail}")
            return
        for _ in range(wanted - len(current)):
            spawned = self._spawn(target, records)
            if spawned is None:
                break
            current[spawned.slot] = spawned
            rollout.note(
                f"started replica on slot {spawned.slot} (port {spawned.port})",
                "replica_start",
                f"slot {spawned.slot} {rollout.release}",
            )
        healthy = [s for s in current if self.health.get(s, SlotHealth()).in_lb]
        for slot in sorted(set(healthy) - rollout.ready):
            rollout.ready.add(slot)
            rollout.note(
                f"replica on slot {slot} ready and in the load balancer",
                "replica_ready",
                f"slot {slot} {rollout.release}",
            )
        if len(healthy) < wanted:
            return
        for record in old.values():
            rollout.note(
                f"draining old replica on slot {record.slot}",
                "replica_drain",
                f"slot {record.slot} {record.release}",
            )
            self.replicas.drain(record)
        if any(
            r.draining_since is not None or r.generation != generation
            for r in self.replicas.records().values()
        ):
            return  # complete once the old replicas are gone, as an ECS deployment does
        self.stable = {
            "generation": generation,
            "release": target["release"],
            "replicas": wanted,
            "flags": target.get("flags", {}),
        }
        rollout.state, rollout.finished_at = RolloutState.COMPLETED, time.time()
        rollout.note(
            f"rollout of {rollout.release} completed in "
            f"{rollout.finished_at - rollout.started_at:.1f} s"
        )

    def _trip(self, rollout: Rollout, current: dict[int, ReplicaRecord], reason: str) -> None:
        """Circuit breaker: stop the new replicas, keep the stable generation serving."""
        for record in current.values():
            self.replicas.drain(record)
        self.failed.add(rollout.generation)
        rollout.reason = reason
        rollout.finished_at = time.time()
        rollout.state = RolloutState.ROLLED_BACK if self.stable else RolloutState.FAILED
        after = (
            f"; {self.stable['release']['id']} keeps serving"
            if self.stable
            else "; nothing to roll back to"
        )
        rollout.note(f"circuit breaker: {reason}{after}", "rollback", f"circuit breaker: {reason}")

    def _replace_unhealthy(self, target: dict[str, Any], current: dict[int, ReplicaRecord]) -> None:
        for slot, record in list(current.items()):
            state = self.health.get(slot, SlotHealth())
            dead = state.health is Health.DEAD
            if not dead and state.liveness_failures < LIVENESS_FAILURES:
                continue
            failures, not_before = self.backoff.get(slot, (0, 0.0))
            if time.time() < not_before:
                continue
            log.warning(
                "replacing replica",
                extra={"slot": slot, "reason": "exited" if dead else "liveness probe failing"},
            )
            self.replicas.kill(record)
            self.replicas.forget(slot)
            del current[slot]
            self.health.pop(slot, None)
            delay = min(MAX_BACKOFF_S, 2.0**failures)
            self.backoff[slot] = (failures + 1, time.time() + delay)
            self._spawn(target, self.replicas.records(), slot=slot, restarts=record.restarts + 1)

    def _spawn(
        self,
        target: dict[str, Any],
        records: dict[int, ReplicaRecord],
        slot: int | None = None,
        restarts: int = 0,
    ) -> ReplicaRecord | None:
        used = set(records)
        free = [s for s in range(len(self.slot_ports)) if s not in used]
        if slot is None:
            if not free:
                return None
            slot = free[0]
        record = self.replicas.spawn(
            slot=slot,
            port=self.slot_ports[slot],
            release=target["release"]["id"],
            artifact=target["release"]["artifact"],
            generation=int(target["generation"]),
            env=self.env_for(target),
            restarts=restarts,
        )
        self.health[slot] = SlotHealth()
        records[slot] = record
        return record

    # -- reporting -----------------------------------------------------------

    def _write_observed(self, desired: dict[str, Any] | None) -> None:
        records = self.replicas.records()
        replicas = []
        for slot, record in sorted(records.items()):
            state = self.health.get(slot, SlotHealth())
            replicas.append(
                {
                    "slot": slot,
                    "pid": record.pid,
                    "port": record.port,
                    "release": record.release,
                    "generation": record.generation,
                    "health": state.health.value,
                    "reason": state.reason,
                    "in_lb": state.in_lb,
                    "restarts": record.restarts,
                    "since": record.started_at,
                }
            )
        rollout = self.rollout
        write_json(
            self.layout.observed,
            {
                "agent_pid": os.getpid(),
                "updated_at": time.time(),
                "desired_generation": desired["generation"] if desired else None,
                "stable": self.stable,
                "failed_generations": sorted(self.failed),
                "rollout": None
                if rollout is None
                else {
                    "generation": rollout.generation,
                    "release": rollout.release,
                    "state": rollout.state.value,
                    "reason": rollout.reason,
                    "started_at": rollout.started_at,
                    "finished_at": rollout.finished_at,
                    "events": rollout.events[-50:],
                    "marks": rollout.marks[-100:],
                },
                "replicas": replicas,
            },
        )
