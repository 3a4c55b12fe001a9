"""The local canary: one replica of the new release on its own slot beside the stable ones.

Caddy routes a share of the requests to it (loadbalancer.py: a file read per request, so a
new share never reloads the server). The replica's record lives under `agent/canary/`, out
of the agent's sight: the agent converges the stable slots and never adopts or drains the
canary. Each stage is judged from Caddy's access log, which names the port that served every
request: per-request latencies of all production traffic, measured where users meet it, for
both sides over the same seconds. The replicas' Prometheus histograms would give only bucket
counts, which the rank test would see as ties.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from pipelines.targets.base import (
    CanaryWindow,
    Release,
    RolloutResult,
    ServedTraffic,
    TargetError,
)
from pipelines.targets.local.contract import LocalEnv
from pipelines.targets.local.replicas import ReplicaRecord, Replicas, is_alive, probe
from pipelines.targets.local.runtime import NAMES, replica_env

POLL_S = 0.1


class LocalCanary:
    def __init__(self, env: LocalEnv) -> None:
        self.env = env
        self.replicas = Replicas(env.layout, records_dir=env.layout.canary)

    @property
    def steps(self) -> Sequence[int]:
        return self.env.spec.canary_steps

    @property
    def step_seconds(self) -> float:
        return float(self.env.spec.local_canary_step_seconds)

    @property
    def slot(self) -> int:
        return len(self.env.slot_ports)

    @property
    def port(self) -> int:
        return self.env.spec.local_canary_port

    def record(self) -> ReplicaRecord | None:
        return self.replicas.records().get(self.slot)

    def start(self, release: Release, timeout_s: float) -> None:
        lb = self.env.load_balancer()
        lb.set_canary_share(0)
        self.stop()  # a canary left by an interrupted deploy
        desired = self.env.desired() or {}
        record = self.replicas.spawn(
            slot=self.slot,
            port=self.port,
            release=release.id,
            artifact=release.artifact,
            generation=int(desired.get("generation", 0)),
            env=replica_env(
                self.env.layout, self.env.spec, self.env.secrets, desired.get("flags", {})
            ),
        )
        deadline = time.monotonic() + timeout_s
        reason = "not answering"
        # With the metrics token an unready replica says why (the schema it expects...).
        token = {"Authorization": f"Bearer {self.env.secrets.get(NAMES.metrics)}"}
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not is_alive(record):
                    reason = f"exited; see {self.replicas.log_path(self.slot)}"
                    break
                status, why = probe(client, self.port, self.env.spec.readiness_path, token)
                # Ready, and Caddy's own checks agree, so the first stage's share reaches it.
                if status == 200 and lb.port_healthy(self.port):
                    return
                reason = why or (f"readiness {status}" if status else "not answering")
                time.sleep(POLL_S)
        self.stop()
        raise TargetError(
            f"{self.env.name}: the canary of {release.id} on port {self.port} was not "
            f"healthy within {timeout_s:g} s: {reason}; it was stopped and took no traffic"
        )

    def shift(self, percent: int) -> float:
        return self.env.load_balancer().set_canary_share(percent)

    def window(self, share: int, start: float, end: float) -> CanaryWindow:
        canary, baseline = _Side(), _Side()
        for entry in _access_entries(self.env.load_balancer().access_log, start, end):
            port = str(entry.get("upstream_port") or "")
            side = canary if port == str(self.port) else baseline if port else None
            status = entry.get("status")
            if side is None and isinstance(status, int) and 0 < status < 500:
                continue  # answered by Caddy itself (no upstream), and not an error
            (side or baseline).add(entry)
        return CanaryWindow(share, start, end, canary.served(), baseline.served())

    def abort(self, reason: str) -> str:
        self.env.load_balancer().set_canary_share(0)
        stopped = self.stop()
        return f"all traffic back on the stable replicas ({reason}); " + (
            "canary stopped" if stopped else "no canary was running"
        )

    def promote(self, release: Release, timeout_s: float) -> RolloutResult:
        """The stable slots roll onto the release while the canary still serves its share;
        then the share returns to the (now new) stable slots and the canary stops."""
        result = self.env.rollout(release, timeout_s)
        self.env.load_balancer().set_canary_share(0)
        self.stop()
        return result

    def stop(self) -> bool:
        """Drain the canary (it turns unready and serves out its drain window), then kill it
        if it lingers. True when one was running."""
        record = self.record()
        if record is None:
            return False
        self.replicas.drain(record)
        deadline = time.monotonic() + self.env.spec.local_drain_seconds + 10
        while time.monotonic() < deadline and is_alive(record):
            time.sleep(POLL_S)
            self.replicas.reap()
        self.replicas.kill(record)
        self.replicas.forget(self.slot)
        return True


class _Side:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0

    def add(self, entry: dict[str, object]) -> None:
        duration = entry.get("duration")
        if isinstance(duration, int | float):
            self.latencies.append(float(duration))
        status = entry.get("status")
        if not isinstance(status, int) or status >= 500 or status == 0:
            self.errors += 1

    def served(self) -> ServedTraffic:
        return ServedTraffic(len(self.latencies), self.errors, tuple(self.latencies))


def _access_entries(access_log: Path, start: float, end: float) -> Iterator[dict[str, object]]:
    """Entries logged in [start, end), from the current log and any rolled since `start`."""
    rolled = sorted(
        (p for p in access_log.parent.glob(f"{access_log.stem}-*{access_log.suffix}")),
        key=lambda p: p.stat().st_mtime,
    )
    for path in [*(p for p in rolled if p.stat().st_mtime >= start), access_log]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by rotation
            stamp = entry.get("ts")
            if isinstance(stamp, int | float) and start <= stamp < end:
                yield entry
