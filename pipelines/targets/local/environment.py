"""One local environment (staging or production): PostgreSQL, secrets, Caddy, the agent.

Configured from `Pulumi.<env>.yaml` through `infra.spec`, so both targets read the same
settings. `up()` is idempotent: a second call changes nothing and reports the status.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from infra.spec import EnvironmentSpec, load_stack_file
from pipelines.host.procs import process_start
from pipelines.postgres.cluster import Cluster, PostgresError
from pipelines.targets.base import (
    EnvironmentStatus,
    MigrationStatus,
    Observation,
    Release,
    RolloutResult,
    RolloutState,
    TargetError,
    check_environment_name,
)
from pipelines.targets.local import agent_process
from pipelines.targets.local import database as db
from pipelines.targets.local.canary import LocalCanary
from pipelines.targets.local.capabilities import LocalBackups, LocalOperations
from pipelines.targets.local.faults import LocalFaults
from pipelines.targets.local.layout import EnvLayout, state_root
from pipelines.targets.local.loadbalancer import LoadBalancer, LoadBalancerError
from pipelines.targets.local.rollouts import Rollouts
from pipelines.targets.local.runtime import (
    NAMES,
    SUPERUSER,
    ensure_secrets,
    open_store,
    replica_env,
    run_release_command,
)
from pipelines.targets.local.secrets import SecretStore, SecretStoreError

SMOKE_ADMIN = "smoke-admin@drydock.example.com"
STACK_DIR_ENV = "DRYDOCK_STACK_DIR"


def refused_rollback(
    env: LocalEnvironment, release_id: str, status: MigrationStatus
) -> RolloutResult:
    """A rollback that never started: what the schema needs, and the restore that gets there."""
    snapshots = env.backups.list("pre-deploy")
    restore = (
        env.restore_command(snapshots[0].id)
        if snapshots
        else f"invoke backup.list --env {env.name}"
    )
    return RolloutResult(
        RolloutState.FAILED,
        release_id,
        env.current_release(),
        f"refused before any change: {release_id} cannot serve on this schema "
        f"({status.reason or 'schema at ' + str(status.current)}). To go back that far, "
        f"restore the pre-deploy snapshot instead: {restore}",
        0.0,
        ("refused",),
    )


def stack_root() -> Path:
    """Where `Pulumi.<env>.yaml` is read from: the checkout, unless DRYDOCK_STACK_DIR says."""
    return Path(os.environ.get(STACK_DIR_ENV, Path(__file__).resolve().parents[3]))


class LocalEnvironment(Rollouts):
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
        """Fixed replica slots, one per `maxCount`: a rollout needs 2 x desired of them."""
        return list(self.spec.local_replica_ports)

    def cluster(self) -> Cluster:
        return Cluster(
            home=self.layout.postgres, port=self.spec.local_postgres_port, superuser=SUPERUSER
        )

    @property
    def database(self) -> db.LocalDatabase:
        return db.LocalDatabase(self.cluster(), self.secrets)

    @property
    def backups(self) -> LocalBackups:
        return LocalBackups(self)

    @property
    def operations(self) -> LocalOperations:
        return LocalOperations(self)

    @property
    def faults(self) -> LocalFaults:
        return LocalFaults(self)

    @property
    def canary(self) -> LocalCanary:
        return LocalCanary(self)

    @property
    def location(self) -> str:
        return str(self.layout.root)

    def load_balancer(self) -> LoadBalancer:
        spec = self.spec
        return LoadBalancer(
            self.layout.lb,
            spec.local_lb_port,
            self.slot_ports,
            spec.readiness_path,
            canary_port=spec.local_canary_port,
            baseline_port=spec.local_baseline_port,
            health_interval=spec.local_health_check_interval_ms / 1000,
            health_timeout=1.0,
            health_passes=1,
            health_fails=1,
            try_duration=5.0,
            grace_period=float(spec.local_drain_seconds),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.local_lb_port}"

    @property
    def bake_window_s(self) -> float:
        return float(self.spec.local_bake_window_seconds)

    # -- lifecycle -------------------------------------------------------------

    def up(self, release: Release | None = None, bootstrap: bool = True) -> EnvironmentStatus:
        """Start what is not running. With `bootstrap`, a fresh environment also gets its
        first release: the working tree (or `release`), migrated and rolled out."""
        from pipelines.targets.local.status import port_conflicts

        conflicts = port_conflicts(self)
        if conflicts:
            raise TargetError(f"{self.name}: " + "; ".join(conflicts))
        try:
            self.layout.create()
            store = self.secrets
            ensure_secrets(store)
        except SecretStoreError as exc:
            raise TargetError(f"{self.name}: secret store: {exc}") from None
        except OSError as exc:
            raise TargetError(
                f"{self.name}: cannot write under {self.layout.root}: "
                f"{exc.strerror or exc}; nothing was started"
            ) from None
        cluster = self.cluster()
        try:
            if not cluster.is_initialised():
                cluster.initialise(store.get(NAMES.superuser))
            cluster.check_version()
            cluster.start()
        except PostgresError as exc:
            raise TargetError(f"{self.name}: PostgreSQL: {exc}") from None
        try:
            db.LocalDatabase(cluster, store).ensure_roles()
            self.load_balancer().start()
            self.ensure_agent()
            if bootstrap and self.desired() is None:
                from pipelines import releases

                first = release or releases.build(self.layout.releases)
                self.migrate(first)
                result = self.rollout(first, timeout_s=60.0)  # cold imports on a busy machine
                if not result.ok:
                    raise TargetError(f"first rollout of {first.id} failed: {result.reason}")
        except (TargetError, LoadBalancerError, PostgresError, OSError) as exc:
            raise TargetError(self._half_started(exc)) from None
        return self.status()

    def _half_started(self, cause: Exception) -> str:
        """`up()` failed after starting something: say what, and the two ways out."""
        running = [
            part
            for part, up in (
                ("PostgreSQL", self.cluster().is_running()),
                ("Caddy", self.load_balancer().is_running()),
                ("the agent", self.agent_pid() is not None),
            )
            if up
        ]
        left = f"left running: {', '.join(running)}" if running else "nothing is left running"
        return (
            f"{self.name}: {cause}\n{left}. Fix the cause and run `invoke env.up --env "
            f"{self.name}` again (it starts only what is missing), or stop everything with "
            f"`invoke env.down --env {self.name}`."
        )

    def down(self, purge_data: bool = False) -> list[str]:
        """Stop every process of this environment; returns what was running."""
        from pipelines.targets.local.replicas import Replicas

        stopped = []
        if self.agent_pid() is not None:
            stopped.append("agent")
        self.stop_agent()
        if self.canary.stop():
            stopped.append("canary")
        replicas = Replicas(self.layout)
        if replicas.records():
            stopped.append(f"{len(replicas.records())} replica(s)")
        for record in replicas.records().values():
            replicas.drain(record)
        deadline = time.time() + self.spec.local_drain_seconds + 5
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
        self.make_archiver().stop()  # after the agent, which would start it again
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
        return agent_process.running_pid(self.layout)

    def ensure_agent(self) -> int:
        return agent_process.ensure(self.layout, self.name)

    def stop_agent(self) -> None:
        agent_process.stop(self.layout)

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
            drain_seconds=float(self.spec.local_drain_seconds),
            env_for=env_for,
            lb_health=lb_health,
            internal_token=lambda: self.secrets.get(NAMES.metrics),
        )

    def make_monitor(self) -> Any:
        from pipelines.targets.local.monitor import Monitor

        return Monitor(self.layout, self.spec, lambda: self.secrets.get(NAMES.metrics))

    def make_archiver(self) -> Any:
        from pipelines.targets.local.backups.receiver import WalReceiver

        return WalReceiver(self)

    def observe(self, window_s: float, end: float | None = None) -> Observation:
        from pipelines.targets.local.observe import observe

        return observe(self.layout, self.load_balancer().access_log, window_s, end)

    # -- what a deploy needs -----------------------------------------------------

    def migrate(self, release: Release) -> MigrationStatus:
        """Migrate to the release's head, then make sure the first admin exists: before the
        release serves, so nobody can register its address first."""
        status = self.database.migrate(release.artifact)
        self.ensure_first_admin(release.artifact)
        return status

    def snapshot(self, kind: str, reason: str = "", deploy_id: str = "") -> dict[str, Any]:
        from pipelines.targets.local.backups import snapshot as backups

        try:
            manifest = backups.take_snapshot(self, kind, reason=reason, deploy_id=deploy_id)
        except backups.BackupError as exc:
            raise TargetError(f"{self.name}: snapshot failed: {exc}") from None
        return backups.manifest_dict(manifest)

    def verify_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        from pipelines.targets.local.backups import snapshot as backups

        for manifest in backups.list_snapshots(self):
            if manifest.id == snapshot_id:
                try:
                    backups.verify_snapshot(manifest)
                except backups.BackupError as exc:
                    raise TargetError(
                        f"{self.name}: snapshot {snapshot_id} is not usable: {exc}"
                    ) from None
                return backups.manifest_dict(manifest)
        raise TargetError(f"{self.name}: no snapshot {snapshot_id}; see `invoke backup.list`")

    def rollback(self, to_release: str | None = None) -> RolloutResult:
        """Health-gated, and refused before anything changes when the release cannot serve
        on the current schema (a contract ran since): then only a restore brings it back."""
        candidate = self.rollback_candidate(to_release)
        status = self.database.migration_status(candidate["artifact"])
        if not status.compatible:
            return refused_rollback(self, candidate["id"], status)
        return self._apply(candidate, 30.0)

    def restore_command(self, snapshot_id: str) -> str:
        return (
            f"invoke backup.restore --snapshot {snapshot_id} --env {self.name} --into replace --yes"
        )

    def smoke_credentials(self, release: Release | None = None) -> tuple[str, str]:
        if release is not None:
            return self.ensure_smoke_admin(release.artifact)
        running = (self.desired() or {}).get("release") or {}
        return self.ensure_smoke_admin(running.get("artifact"))

    def ensure_smoke_admin(self, artifact: str | None = None) -> tuple[str, str]:
        """The admin account the smoke suite and synthetic traffic use, made once per
        environment by the release's own `create-admin` command (a one-off process)."""
        password = self.secrets.ensure(NAMES.smoke_admin, lambda: secrets.token_urlsafe(24))
        marker = self.layout.agent / "smoke-admin"
        if marker.exists():
            return SMOKE_ADMIN, password
        result = run_release_command(
            artifact,
            ["create-admin", SMOKE_ADMIN],
            {
                "DATABASE_URL": self.database.url("app"),
                "ENV": "development",
                "ADMIN_PASSWORD": password,
            },
        )
        if result.returncode != 0:
            raise TargetError(
                f"{self.name}: creating the smoke admin failed: {result.stderr.strip()[-500:]}"
            )
        marker.touch()
        return SMOKE_ADMIN, password

    def ensure_first_admin(self, artifact: str | None = None) -> tuple[str, str]:
        """The environment's first admin (`drydock:adminEmail`), with a password generated
        into the secret store, made by the release's own `create-admin`. Idempotent: an
        existing admin is left as it is, password included; an address somebody registered
        is refused, never promoted, and stops the deploy."""
        email = self.spec.admin_email
        password = self.secrets.ensure(NAMES.admin, lambda: secrets.token_urlsafe(24))
        result = run_release_command(
            artifact,
            ["create-admin", email],
            {
                "DATABASE_URL": self.database.url("app"),
                "ENV": "development",
                "ADMIN_PASSWORD": password,
            },
        )
        if result.returncode != 0:
            raise TargetError(
                f"{self.name}: the first admin {email} was not made: {result.stderr.strip()[-800:]}"
            )
        return email, password

    # -- status ----------------------------------------------------------------

    def status(self) -> EnvironmentStatus:
        from pipelines.targets.local.status import environment_status

        return environment_status(self)
