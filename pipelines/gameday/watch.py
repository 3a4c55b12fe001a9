"""What the environment looked like, twice a second, while a scenario ran: the probe behind
detection and recovery. It reads the target's own status, the same one `invoke env.status`
prints, so a game day sees what the on-call engineer would."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pipelines.targets.base import Environment, Health

INTERVAL_S = 0.5
SECURITY_PREFIX = ("security-",)  # security alarms do not gate recovery


@dataclass(frozen=True)
class Look:
    at: float
    ready: int
    wanted: int
    replicas: tuple[tuple[int, int | None, str], ...]  # (slot, pid, health)
    load_balancer: bool
    database: bool
    alarms_in_alarm: tuple[str, ...]
    error: str = ""
    # Process name -> pid: a process restarted between two looks shows as a new pid.
    pids: tuple[tuple[str, int | None], ...] = ()

    def pid(self, name: str) -> int | None:
        return dict(self.pids).get(name)

    @property
    def healthy(self) -> bool:
        return (
            not self.error
            and self.load_balancer
            and self.database
            and self.ready >= self.wanted > 0
            and all(h == Health.READY.value for _, _, h in self.replicas)
            and not self.alarms_in_alarm
        )


def look(env: Environment) -> Look:
    now = time.time()
    try:
        status = env.status()
    except Exception as exc:  # a probe records what it saw, even "could not see"
        return Look(now, 0, 0, (), False, False, (), f"{type(exc).__name__}: {exc}")
    # Named by role, whatever the target calls the process.
    roles = {"caddy": "load_balancer", "load balancer": "load_balancer", "postgres": "database"}
    running = {p.name: p.running for p in status.processes}
    return Look(
        at=now,
        ready=status.ready_replicas,
        wanted=status.desired_replicas,
        replicas=tuple((r.slot, r.pid, r.health.value) for r in status.replicas),
        load_balancer=running.get("caddy", running.get("load balancer", True)),
        database=running.get("postgres", True),
        alarms_in_alarm=tuple(
            sorted(
                name
                for name, state in status.alarms.items()
                if state == "ALARM" and not name.lower().startswith(SECURITY_PREFIX)
            )
        ),
        pids=tuple((roles.get(p.name, p.name), p.pid) for p in status.processes),
    )


@dataclass
class Watch:
    env: Environment
    looks: list[Look] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self._run, name="gameday-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Look]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return list(self.looks)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.looks.append(look(self.env))
            self._stop.wait(INTERVAL_S)
