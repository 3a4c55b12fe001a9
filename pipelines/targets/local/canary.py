"""The local canary: one replica of the new release on its own slot, and beside it one fresh
replica of the stable release, its baseline, given the same share of the traffic.

Kayenta compares a canary with a baseline of the same size, started at the same time and
given the same traffic, not with the whole stable fleet: a single canary replica at 50 %
carries three times the load of each of three stable replicas and is slower for that alone,
and a process minutes old is colder than one that has served for days. The pair does the
same here. Caddy routes each share per request (loadbalancer.py: files read per request, so
a new share never reloads the server). Their records live under `agent/canary/`, out of the
agent's sight: the agent converges the stable slots and never adopts or drains them.

Each stage is judged from Caddy's access log, which names the port that served every
request: per-request latencies of real production traffic, measured where users meet it,
for both sides over the same seconds. The replicas' Prometheus histograms would give only
bucket counts, which the rank test would see as ties.
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
# The pair's sides take equal shares, so half the traffic each at most. Beyond that a single
# canary replica would carry the whole fleet's load: slower for that alone (a good release
# was aborted at 100 % with a p95 twice the baseline's at 50 %, under a saturating load),
# and a capacity risk for real traffic.
PAIR_MAX_SHARE = 50


class LocalCanary:
    def __init__(self, env: LocalEnv) -> None:
        self.env = env
        self.replicas = Replicas(env.layout, records_dir=env.layout.canary)

    @property
    def steps(self) -> Sequence[int]:
        """The spec's steps, each held at no more than PAIR_MAX_SHARE: the rest of the way is
        the promotion, which rolls the stable replicas onto the release under step 7's bake."""
        held: list[int] = []
        for step in self.env.spec.canary_steps:
            share = min(step, PAIR_MAX_SHARE)
            if share not in held:
                held.append(share)
        return held

    @property
    def step_seconds(self) -> float:
        return float(self.env.spec.local_canary_step_seconds)

    @property
    def slot(self) -> int:
        return len(self.env.slot_ports)

    @property
    def port(self) -> int:
        return self.env.spec.local_canary_port

    @property
    def baseline_port(self) -> int:
        return self.env.spec.local_baseline_port

    def record(self) -> ReplicaRecord | None:
        """The canary's record, while one runs."""
        return self.replicas.records().get(self.slot)

    def start(self, release: Release, timeout_s: float) -> None:
        self.env.load_balancer().set_canary_share(0)
        self.stop()  # a pair left by an interrupted deploy
        stable = (self.env.observed().get("stable") or {}).get("release")
        if not stable:
            raise TargetError(f"{self.env.name}: no stable release to compare a canary with")
        desired = self.env.desired() or {}
        env = replica_env(
            self.env.layout, self.env.spec, self.env.secrets, desired.get("flags", {})
        )
        pair = [
            (self.slot, self.port, release.id, release.artifact, "canary"),
            (self.slot + 1, self.baseline_port, stable["id"], stable["artifact"], "baseline"),
        ]
        records = [
            (
                self.replicas.spawn(
                    slot=slot,
                    port=port,
                    release=release_id,
                    artifact=artifact,
                    generation=int(desired.get("generation", 0)),
                    env=env,
                ),
                role,
            )
            for slot, port, release_id, artifact, role in pair
        ]
        problem = self._wait_ready(records, timeout_s)
        if problem:
            self.stop()
            raise TargetError(
                f"{self.env.name}: the canary of {release.id} on port {self.port} was not "
                f"healthy within {timeout_s:g} s: {problem}; it was stopped and took no traffic"
            )

    def _wait_ready(self, records: list[tuple[ReplicaRecord, str]], timeout_s: float) -> str:
        """ "" once both answer ready and Caddy's own checks agree (so the first share reaches
        them); otherwise why not."""
        lb = self.env.load_balancer()
        # With the metrics token an unready replica says why (the schema it expects...).
        token = {"Authorization": f"Bearer {self.env.secrets.get(NAMES.metrics)}"}
        deadline = time.monotonic() + timeout_s
        waiting = dict(records)
        problem = "not answering"
        with httpx.Client(timeout=1.0) as client:
            while waiting and time.monotonic() < deadline:
                for record, role in list(waiting.items()):
                    if not is_alive(record):
                        return f"the {role} exited; see {self.replicas.log_path(record.slot)}"
                    status, why = probe(client, record.port, self.env.spec.readiness_path, token)
                    if status == 200 and lb.port_healthy(record.port):
                        del waiting[record]
                        continue
                    detail = why or (f"readiness {status}" if status else "not answering")
                    problem = detail if role == "canary" else f"the baseline: {detail}"
                if waiting:
                    time.sleep(POLL_S)
        return problem if waiting else ""

    def shift(self, percent: int) -> float:
        return self.env.load_balancer().set_canary_share(percent)

    def window(self, share: int, start: float, end: float) -> CanaryWindow:
        canary, baseline = _Side(), _Side()
        sides = {str(self.port): canary, str(self.baseline_port): baseline}
        for entry in _access_entries(self.env.load_balancer().access_log, start, end):
            side = sides.get(str(entry.get("upstream_port") or ""))
            if side is not None:
                side.add(entry)
        return CanaryWindow(share, start, end, canary.served(), baseline.served())

    def abort(self, reason: str) -> str:
        self.env.load_balancer().set_canary_share(0)
        stopped = self.stop()
        return f"all traffic back on the stable replicas ({reason}); " + (
            "canary and baseline stopped" if stopped else "no canary was running"
        )

    def promote(self, release: Release, timeout_s: float) -> RolloutResult:
        """The stable slots roll onto the release while the canary still serves its share;
        then the share returns to the (now new) stable slots and the pair stops."""
        result = self.env.rollout(release, timeout_s)
        self.env.load_balancer().set_canary_share(0)
        self.stop()
        return result

    def stop(self) -> bool:
        """Drain the pair (each turns unready and serves out its drain window), then kill
        what lingers. True when anything was running."""
        records = list(self.replicas.records().values())
        for record in records:
            self.replicas.drain(record)
        deadline = time.monotonic() + self.env.spec.local_drain_seconds + 10
        while time.monotonic() < deadline and any(is_alive(r) for r in records):
            time.sleep(POLL_S)
            self.replicas.reap()
        for record in records:
            self.replicas.kill(record)
            self.replicas.forget(record.slot)
        return bool(records)


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
        access_log.parent.glob(f"{access_log.stem}-*{access_log.suffix}"),
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
