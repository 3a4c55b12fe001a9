"""`invoke env.*`: start, inspect and stop the local environments (the tasks have no
--target: on AWS, `infra.up` provisions). `secrets.rotate` is in rotation.py."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipelines.targets import get_target
from pipelines.targets.base import ENVIRONMENTS, Environment, EnvironmentStatus, TargetError


def local(name: str) -> Environment:
    return get_target("local").environment(name)


def selected(env: str | None) -> Sequence[str]:
    return ENVIRONMENTS if env in (None, "", "all") else (env,)


def up(env: str | None = None) -> list[EnvironmentStatus]:
    statuses = []
    for name in selected(env):
        started = time.monotonic()
        print(f"env.up {name}: starting PostgreSQL, secrets, load balancer, agent...", flush=True)
        status = local(name).up()
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
    statuses = [local(name).status() for name in selected(env)]
    if as_json:
        return json.dumps([s.as_dict() for s in statuses], indent=2, default=str)
    return "\n\n".join(render(s) for s in statuses)


def down(env: str | None = None, purge_data: bool = False) -> None:
    for name in selected(env):
        environment = local(name)
        stopped = environment.down(purge_data=purge_data)
        what = "stopped " + ", ".join(stopped) if stopped else "nothing was running"
        purged = f"; data under {environment.location} purged" if purge_data else ""
        print(f"env.down {name} ({environment.location}): {what}{purged}")


def log_files(env: str) -> list[Path]:
    return list(local(env).operations.log_files())


def tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except (FileNotFoundError, PermissionError):
        return []


def up_command(env: str) -> int:
    """`invoke env.up`: idempotent; a failure says what it left running and the ways out."""
    try:
        up(env)
    except TargetError as exc:
        print(f"env.up: {exc}", file=sys.stderr)
        return 1
    return 0


def logs_command(env: str, lines: int) -> int:
    for path in log_files(env):
        print(f"==> {path} <==")
        print("\n".join(tail(path, lines)))
    return 0


def down_command(env: str, purge_data: bool, yes: bool) -> int:
    """`invoke env.down`; deleting data asks for 'purge' unless --yes."""
    if purge_data and not yes:
        answer = input(f"Delete all data of {env} (databases, secrets, logs)? Type 'purge': ")
        if answer.strip() != "purge":
            print("env.down: not confirmed; nothing was stopped or deleted", file=sys.stderr)
            return 1
    down(env, purge_data=purge_data)
    return 0
