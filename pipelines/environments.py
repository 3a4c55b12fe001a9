"""Operations on local environments behind `invoke env.*` and `invoke secrets.*`."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from pipelines.targets.base import ENVIRONMENTS, EnvironmentStatus, TargetError
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.runtime import ALIASES


def selected(env: str | None) -> Sequence[str]:
    return ENVIRONMENTS if env in (None, "", "all") else (env,)


def up(env: str | None = None) -> list[EnvironmentStatus]:
    statuses = []
    for name in selected(env):
        started = time.monotonic()
        print(f"env.up {name}: starting PostgreSQL, secrets, load balancer, agent...", flush=True)
        status = LocalEnvironment(name).up()
        print(render(status, took=time.monotonic() - started), flush=True)
        statuses.append(status)
    return statuses


def render(status: EnvironmentStatus, took: float | None = None) -> str:
    head = f"{status.name} ({status.target}) {'UP' if status.up else 'DEGRADED'}"
    if took is not None:
        head += f" in {took:.1f} s"
    lines = [
        head,
        f"  url       {status.url}",
        f"  release   {status.release or '-'}   replicas {status.ready_replicas}/"
        f"{status.desired_replicas} ready",
    ]
    for process in status.processes:
        state = "running" if process.running else "STOPPED"
        lines.append(
            f"  {process.name:<9} {state:<8} pid {process.pid or '-':<8} "
            f"{process.listen}{'  as ' + process.user if process.user else ''}"
        )
    for replica in status.replicas:
        lines.append(
            f"  replica   slot {replica.slot} port {replica.port} pid {replica.pid} "
            f"{replica.health.value:<8} {replica.release} restarts {replica.restarts}"
        )
    alarms = ", ".join(f"{k}={v}" for k, v in sorted(status.alarms.items())) or "-"
    lines.append(f"  alarms    {alarms}")
    size = status.database.get("size_bytes")
    if size is not None:
        lines.append(
            f"  database  {status.database.get('database')} "
            f"{size / 1e6:.1f} MB on port {status.database.get('port')}"
        )
    lines.extend(f"  PROBLEM   {problem}" for problem in status.problems)
    return "\n".join(lines)


def status(env: str | None = None, as_json: bool = False) -> str:
    statuses = [LocalEnvironment(name).status() for name in selected(env)]
    if as_json:
        return json.dumps([s.as_dict() for s in statuses], indent=2, default=str)
    return "\n\n".join(render(s) for s in statuses)


def down(env: str | None = None, purge_data: bool = False) -> None:
    for name in selected(env):
        environment = LocalEnvironment(name)
        stopped = environment.down(purge_data=purge_data)
        what = "stopped " + ", ".join(stopped) if stopped else "nothing was running"
        purged = f"; data under {environment.layout.root} purged" if purge_data else ""
        print(f"env.down {name} ({environment.layout.root}): {what}{purged}")


def log_files(env: str) -> list[Path]:
    environment = LocalEnvironment(env)
    layout = environment.layout
    return sorted(
        [
            *layout.logs.glob("*.log"),
            layout.lb / "access.log",
            *environment.cluster().log_dir.glob("*.json"),
        ],
        key=lambda p: p.name,
    )


def tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except (FileNotFoundError, PermissionError):
        return []


def rotate_secret(env: str, name: str, restart: bool = True) -> str:
    """Runbook section 12: new value, old one kept as previous, replicas rolled onto it."""
    environment = LocalEnvironment(env)
    secret = ALIASES.get(name, name)
    store = environment.secrets
    if store.describe(secret).previous is not None:
        store.retire(secret)
    version = store.rotate(secret, lambda: __import__("secrets").token_urlsafe(48))
    if secret == ALIASES["db-app"]:
        environment.database.ensure_roles()
    revoked = environment.database.revoke_refresh_tokens() if secret == ALIASES["jwt"] else 0
    outcome = environment.restart() if restart else None
    if outcome is not None and not outcome.ok:
        raise TargetError(
            f"{env}: {secret} rotated to {version.id}, but rolling the replicas "
            f"onto it failed: {outcome.reason}. The old value is still "
            "readable as 'previous'; rerun `invoke env.up` and check logs."
        )
    return (
        f"{env}: {secret} rotated to {version.id}; refresh tokens revoked: {revoked}; "
        f"replicas rolled in {outcome.duration_s:.1f} s"
        if outcome
        else ""
    )
