"""`env.status`: what runs, what it serves, and whether anything needs a person."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipelines.host.ports import port_free, taken_reason
from pipelines.host.procs import process_start
from pipelines.postgres.cluster import Cluster
from pipelines.targets.base import EnvironmentStatus, Health, ProcessStatus, ReplicaStatus
from pipelines.targets.local import database as db
from pipelines.targets.local.layout import read_json

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv


def environment_status(env: LocalEnv) -> EnvironmentStatus:
    observed = env.observed()
    desired = env.desired() or {}
    agent = env.agent_pid()
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
    cluster, lb = env.cluster(), env.load_balancer()
    problems = []
    if agent is None and env.layout.desired.exists():
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
        name=env.name,
        target=env.target,
        up=all(p.running for p in processes),
        release=env.current_release(),
        desired_replicas=int(desired.get("replicas", env.spec.desired_count)),
        replicas=replicas,
        processes=processes,
        alarms=_alarm_states(env),
        database=_database_facts(env, cluster),
        url=env.url,
        problems=tuple(problems),
    )


def _alarm_states(env: LocalEnv) -> dict[str, str]:
    """The SLO alarms and the security alarms, side by side."""
    data = read_json(env.layout.alarms / "state.json") or {}
    return {**data.get("states", {}), **data.get("security_states", {})}


def _database_facts(env: LocalEnv, cluster: Cluster) -> dict[str, Any]:
    facts: dict[str, Any] = {"port": cluster.port, "running": cluster.is_running()}
    if facts["running"]:
        try:
            facts.update(db.LocalDatabase(cluster, env.secrets).facts())
        except Exception as exc:  # status must report, not fail
            facts["error"] = str(exc)
    return facts


def port_conflicts(env: LocalEnv) -> list[str]:
    """Ports this environment needs that something else already holds."""
    spec = env.spec
    wanted = {"PostgreSQL": spec.local_postgres_port, "load balancer": spec.local_lb_port}
    ours_running = {
        "PostgreSQL": env.cluster().is_running(),
        "load balancer": env.load_balancer().is_running(),
    }
    return [
        f"{what} port {port} on 127.0.0.1 is taken ({taken_reason(port)}); change "
        f"drydock:local{'Postgres' if what == 'PostgreSQL' else 'LoadBalancer'}Port in "
        f"Pulumi.{env.name}.yaml or stop what holds it"
        for what, port in wanted.items()
        if not ours_running[what] and not port_free(port)
    ]
