"""One local environment (staging or production): PostgreSQL, secrets, Caddy, the agent.

Configured from `Pulumi.<env>.yaml` through `infra.spec`, so both targets read the same
settings. `up()` is idempotent: a second call changes nothing and reports the status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infra.spec import EnvironmentSpec, load_stack_file
from pipelines.targets.base import (
    EnvironmentStatus,
    Health,
    Observation,
    ProcessStatus,
    Release,
    ReplicaStatus,
    RolloutResult,
    RolloutState,
    TargetError,
    check_environment_name,
)
from pipelines.targets.local import database as db
from pipelines.targets.local.layout import EnvLayout, read_json, state_root, write_json
from pipelines.targets.local.loadbalancer import LoadBalancer
from pipelines.targets.local.postgres import Cluster, PostgresError, port_in_use
from pipelines.targets.local.replicas import process_start
from pipelines.targets.local.runtime import (
    NAMES,
    SUPERUSER,
    ensure_secrets,
    open_store,
    replica_env,
)
from pipelines.targets.local.secrets import SecretStore

AGENT_START_TIMEOUT_S = 10.0
STACK_DIR_ENV = "DRYDOCK_STACK_DIR"


def stack_root() -> Path:
    """Where `Pulumi.<env>.yaml` is read from: the checkout, unless DRYDOCK_STACK_DIR says."""
    return Path(os.environ.get(STACK_DIR_ENV, Path(__file__).resolve().parents[3]))


class LocalEnvironment:
    target = "local"

    def __init__(
        self, name: str, *, state_dir: Path | None = None, spec: EnvironmentSpec | None = None
    ) -> None:
        self.name = check_environment_name(name)
        self.layout = EnvLayout.for_env(name, state_dir or state_root())
        self.spec = spec or load_stack_file(name, root=stack_root())

    # -- parts -----------------------------------------------------------------

    @property
    def secrets(self) -> SecretStore:
        return open_store(self.layout)

    @property
    def slot_ports(self) -> list[int]:
        slots = 2 * self.spec.max_count if self.spec.max_count <= 4 else 8
        return [self.spec.local_replica_base_port + i for i in range(slots)]

    def cluster(self) -> Cluster:
        return Cluster(
            home=self.layout.postgres, port=self.spec.local_postgres_port, superuser=SUPERUSER
        )

    @property
    def database(self) -> db.LocalDatabase:
        return db.LocalDatabase(self.cluster(), self.secrets)

    def load_balancer(self) -> LoadBalancer:
        spec = self.spec
        return LoadBalancer(
            self.layout.lb,
            spec.local_lb_port,
            self.slot_ports,
            spec.readiness_path,
            health_interval=spec.local_health_check_interval_ms / 1000,
            health_timeout=1.0,
            health_passes=1,
            health_fails=1,
            try_duration=5.0,
            grace_period=float(spec.drain_seconds),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.local_lb_port}"

    # -- lifecycle -------------------------------------------------------------

    def up(self, release: Release | None = None) -> EnvironmentStatus:
        """Start what is not running. A fresh environment also gets its first release: the
        working tree (or `release`), migrated and rolled out."""
        conflicts = port_conflicts(self)
        if conflicts:
            raise TargetError(f"{self.name}: " + "; ".join(conflicts))
        self.layout.create()
        store = self.secrets
        ensure_secrets(store)
        cluster = self.cluster()
        try:
            if not cluster.is_initialised():
                cluster.initialise(store.get(NAMES.superuser))
            cluster.check_version()
            cluster.start()
        except PostgresError as exc:
            raise TargetError(f"{self.name}: PostgreSQL: {exc}") from None
        db.LocalDatabase(cluster, store).ensure_roles()
        self.load_balancer().start()
        self.ensure_agent()
        if self.desired() is None:
            from pipelines import releases

            first = release or releases.build(self.layout.releases)
            self.database.migrate(first.artifact)
            result = self.rollout(first)
            if not result.ok:
                raise TargetError(
                    f"{self.name}: first rollout of {first.id} failed: {result.reason}"
                )
        return self.status()

    def down(self, purge_data: bool = False) -> list[str]:
        """Stop every process of this environment; returns what was running."""
        from pipelines.targets.local.replicas import Replicas

        stopped = []
        if self.agent_pid() is not None:
            stopped.append("agent")
        self.stop_agent()
        replicas = Replicas(self.layout)
        if replicas.records():
            stopped.append(f"{len(replicas.records())} replica(s)")
        for record in replicas.records().values():
            replicas.drain(record)
        deadline = time.time() + self.spec.drain_seconds + 5
        while time.time() < deadline and any(
            process_start(r.pid) == r.pid_start for r in replicas.records().values()
        ):
            time.sleep(0.1)
        for slot, record in replicas.records().items():
            replicas.kill(record)
            replicas.forget(slot)
        lb, cluster = self.load_balancer(), self.cluster()
        if lb.is_running():
            stopped.append("caddy")
        lb.stop()
        if cluster.is_running():
            stopped.append("postgres")
        cluster.stop()
        if purge_data:
            import shutil

            shutil.rmtree(self.layout.postgres, ignore_errors=True)
            shutil.rmtree(self.layout.root, ignore_errors=True)
        return stopped

    # -- the agent -------------------------------------------------------------

    def agent_pid(self) -> int | None:
        try:
            pid = int(self.layout.agent_pid.read_text())
        except (OSError, ValueError):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            alive = b"pipelines.targets.local.agent" in cmdline.read_bytes()
        except OSError:
            alive = False
        if not alive:
            self.layout.agent_pid.unlink(missing_ok=True)  # stale: left by a crash or reboot
            return None
        return pid

    def ensure_agent(self) -> int:
        pid = self.agent_pid()
        if pid is not None:
            return pid
        log = self.layout.logs / "agent.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipelines.targets.local.agent",
                    "--env",
                    self.name,
                    "--state-dir",
                    str(self.layout.root.parent),
                ],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
                cwd=Path(__file__).resolve().parents[3],
            )
        finally:
            os.close(fd)
        deadline = time.time() + AGENT_START_TIMEOUT_S
        while time.time() < deadline:
            observed = read_json(self.layout.observed) or {}
            if observed.get("agent_pid") == proc.pid:
                return proc.pid
            if proc.poll() is not None:
                raise TargetError(f"{self.name}: the agent exited at start; see {log}")
            time.sleep(0.05)
        raise TargetError(
            f"{self.name}: the agent did not report within {AGENT_START_TIMEOUT_S:g} s; see {log}"
        )

    def stop_agent(self) -> None:
        pid = self.agent_pid()
        if pid is None:
            return
        os.kill(pid, 15)
        for _ in range(100):
            if self.agent_pid() is None:
                return
            time.sleep(0.05)

    def make_agent(self) -> Any:
        from pipelines.targets.local.agent import Agent

        lb = self.load_balancer()

        def lb_health() -> dict[int, bool]:
            try:
                return {u.port: u.healthy for u in lb.upstreams()}
            except Exception:  # Caddy down: fall back to the agent's own readiness view
                return {}

        def env_for(target: dict[str, Any]) -> dict[str, str]:
            return replica_env(self.layout, self.spec, self.secrets, target.get("flags", {}))

        return Agent(
            self.layout,
            slot_ports=self.slot_ports,
            liveness_path=self.spec.liveness_path,
            readiness_path=self.spec.readiness_path,
            drain_seconds=float(self.spec.drain_seconds),
            env_for=env_for,
            lb_health=lb_health,
        )

    def make_monitor(self) -> Any:
        from pipelines.targets.local.monitor import Monitor

        return Monitor(self.layout, self.spec, lambda: self.secrets.get(NAMES.metrics))

    # -- releases --------------------------------------------------------------

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
        release_doc = (
            release
            if isinstance(release, dict)
            else {
                "id": release.id,
                "artifact": release.artifact,
                "version": release.version,
                "git_sha": release.git_sha,
            }
        )
        generation = int(previous.get("generation", 0)) + 1
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
        return generation

    def rollout(self, release: Release, timeout_s: float | None = None) -> RolloutResult:
        return self._apply(release, timeout_s or 30.0)

    def restart(
        self, flags: dict[str, bool] | None = None, timeout_s: float = 30.0
    ) -> RolloutResult:
        """A rolling restart of the running release (new secrets or flags)."""
        desired = self.desired()
        if desired is None:
            raise TargetError(f"{self.name}: nothing is deployed yet")
        return self._apply(desired["release"], timeout_s, flags=flags)

    def history(self) -> list[dict[str, Any]]:
        """Releases this environment completed rollouts of, oldest first."""
        path = self.layout.agent / "releases.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def rollback(self, to_release: str | None = None) -> RolloutResult:
        """Roll the code back (never the data) to `to_release` or the one before the current."""
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
        return self._apply(candidates[0], 30.0)

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
        hard_stop = started + timeout_s + self.spec.drain_seconds + 30
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
        doc = (
            release
            if isinstance(release, dict)
            else {
                "id": release.id,
                "artifact": release.artifact,
                "version": release.version,
                "git_sha": release.git_sha,
            }
        )
        with (self.layout.agent / "releases.jsonl").open("a") as handle:
            handle.write(json.dumps({**doc, "completed_at": time.time()}) + "\n")

    def observe(self, window_s: float, end: float | None = None) -> Observation:
        from pipelines.targets.local.observe import observe

        return observe(self.layout, self.load_balancer().access_log, window_s, end)

    # -- status ----------------------------------------------------------------

    def status(self) -> EnvironmentStatus:
        observed = self.observed()
        desired = self.desired() or {}
        agent = self.agent_pid()
        replicas = tuple(
            ReplicaStatus(
                slot=r["slot"],
                pid=r["pid"],
                port=r["port"],
                release=r["release"],
                health=Health(r["health"])
                if agent
                else Health.DEAD
                if process_start(r["pid"]) is None
                else Health(r["health"]),
                restarts=r.get("restarts", 0),
                since=time.strftime("%H:%M:%S", time.localtime(r["since"])),
            )
            for r in observed.get("replicas", ())
        )
        cluster, lb = self.cluster(), self.load_balancer()
        problems = []
        if agent is None and self.layout.desired.exists():
            problems.append("the agent is not running: `invoke env.up` revives it")
        processes = (
            ProcessStatus(
                "postgres",
                cluster.pid(),
                cluster.is_running(),
                f"127.0.0.1:{cluster.port}",
                cluster.account.name,
            ),
            ProcessStatus("caddy", lb.pid(), lb.is_running(), f"127.0.0.1:{lb.listen_port}"),
            ProcessStatus("agent", agent, agent is not None),
        )
        return EnvironmentStatus(
            name=self.name,
            target=self.target,
            up=all(p.running for p in processes),
            release=self.current_release(),
            desired_replicas=int(desired.get("replicas", self.spec.desired_count)),
            replicas=replicas,
            processes=processes,
            alarms=self._alarm_states(),
            database=self._database_facts(cluster),
            url=self.url,
            problems=tuple(problems),
        )

    def _alarm_states(self) -> dict[str, str]:
        data = read_json(self.layout.alarms / "state.json") or {}
        return dict(data.get("states", {}))

    def _database_facts(self, cluster: Cluster) -> dict[str, Any]:
        facts: dict[str, Any] = {"port": cluster.port, "running": cluster.is_running()}
        if facts["running"]:
            try:
                facts.update(db.LocalDatabase(cluster, self.secrets).facts())
            except Exception as exc:  # status must report, not fail
                facts["error"] = str(exc)
        return facts


def port_conflicts(env: LocalEnvironment) -> list[str]:
    """Ports this environment needs that something else already holds."""
    spec = env.spec
    wanted = {"PostgreSQL": spec.local_postgres_port, "load balancer": spec.local_lb_port}
    ours_running = {
        "PostgreSQL": env.cluster().is_running(),
        "load balancer": env.load_balancer().is_running(),
    }
    return [
        f"{what} port {port} on 127.0.0.1 is in use by another process; change "
        f"drydock:local{'Postgres' if what == 'PostgreSQL' else 'LoadBalancer'}Port in "
        f"Pulumi.{env.name}.yaml or stop that process"
        for what, port in wanted.items()
        if not ours_running[what] and port_in_use(port)
    ]
