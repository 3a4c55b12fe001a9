"""One service replica on a restored copy, and the read-only smoke it must pass.

The replica is the release's own `python -m service serve`, started as the agent starts one
(same environment, secrets from the target environment's store) but pointed at the scratch
database, on a free port outside the load balancer. It writes nothing the drill relies on:
the heartbeat is slowed to once an hour and the rate limiter kept in memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pipelines.backups.report import SmokeCheck
from pipelines.host.ports import free_port
from pipelines.targets.local.runtime import replica_env

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

STOP_GRACE_S = 10.0


class ReplicaError(RuntimeError):
    """The replica on the copy did not come up; the message holds its log's tail."""


def release_artifact(*environments: LocalEnv) -> str:
    """The release the copy should run: what the first of `environments` runs, else a build
    of the working tree."""
    for env in environments:
        desired = env.desired() or {}
        artifact = (desired.get("release") or {}).get("artifact")
        if artifact and Path(artifact).is_dir():
            return str(artifact)
    from pipelines import releases

    return releases.build(environments[0].layout.releases).artifact


class DrillReplica:
    def __init__(self, target: LocalEnv, artifact: str, database_url: str, drill_id: str) -> None:
        self.target = target
        self.artifact = artifact
        self.port = free_port()
        self.log_path = target.layout.logs / f"{drill_id}-replica.log"
        env = replica_env(target.layout, target.spec, target.secrets, {})
        env.update(
            DATABASE_URL=database_url,
            PYTHONPATH=artifact,
            PORT=str(self.port),
            HEARTBEAT_INTERVAL_S="3600",
            HOUSEKEEPING_INTERVAL_S="0",  # no sweeps in the copy under verification
            RATE_LIMIT_BACKEND="memory",
            INSTANCE_ID=drill_id,
            DRAIN_SECONDS="0",
        )
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                cwd=self.artifact,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
            )
        finally:
            os.close(fd)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, timeout_s: float) -> float:
        """Block until the readiness probe answers 200; returns the wall-clock time it did."""
        ready_path = self.target.spec.readiness_path
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        # With the token an unready replica says why, and the error below can repeat it.
        internal = {"Authorization": f"Bearer {self.env['METRICS_TOKEN']}"}
        with httpx.Client(timeout=1.0, headers=internal) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise ReplicaError(
                        f"the replica on the copy exited at start; {self.log_path}:\n"
                        + self.log_tail()
                    )
                try:
                    response = client.get(self.url + ready_path)
                    if response.status_code == 200:
                        return time.time()
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
        raise ReplicaError(
            f"the replica on the copy was not ready within {timeout_s:g} s (last: {last}); "
            f"see {self.log_path}"
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def access_token(self, user_id: int, role: str = "user") -> str:
        """An access token the replica accepts, signed with the environment's current key
        by the service's own token code."""
        from service.security.tokens import TokenService
        from service.settings import load_settings

        settings = load_settings(
            env="development",
            jwt_secret=self.env["JWT_SECRET"],
            jwt_kid=self.env["JWT_KID"],
            jwt_previous_secret="",
            jwt_previous_kid="",
        )
        return TokenService(settings).issue_access(user_id, role)


def smoke(replica: DrillReplica, facts: dict[str, Any]) -> list[SmokeCheck]:
    """Read-only checks against the replica on the copy. `facts` come from the copy:
    `first_item_ids` (by id) and `user_with_orders` / `orders_of_user`."""
    spec = replica.target.spec
    checks: list[SmokeCheck] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append(SmokeCheck(name, ok, detail))

    with httpx.Client(base_url=replica.url, timeout=5.0) as client:
        for name, path in (("liveness", spec.liveness_path), ("readiness", spec.readiness_path)):
            response = client.get(path)
            check(f"{name} {path}", response.status_code == 200, f"HTTP {response.status_code}")
        response = client.get("/api/inventory")
        check(
            "inventory refuses a request without a token",
            response.status_code == 401,
            f"HTTP {response.status_code}",
        )
        token = replica.access_token(int(facts.get("user_with_orders") or 1))
        auth = {"Authorization": f"Bearer {token}"}
        response = client.get("/api/inventory", params={"limit": 5}, headers=auth)
        ids = (
            [item["id"] for item in response.json().get("items", [])] if response.is_success else []
        )
        wanted = facts.get("first_item_ids", [])
        check(
            "authenticated inventory list matches the copy",
            response.status_code == 200 and ids == wanted,
            f"HTTP {response.status_code}, ids {ids} (copy: {wanted})",
        )
        if facts.get("user_with_orders"):
            response = client.get("/api/orders", params={"limit": 100}, headers=auth)
            got = len(response.json().get("items", [])) if response.is_success else -1
            wanted_n = min(100, int(facts.get("orders_of_user", 0)))
            check(
                "authenticated order list matches the copy",
                response.status_code == 200 and got == wanted_n,
                f"HTTP {response.status_code}, {got} orders (copy: {wanted_n})",
            )
    return checks


async def copy_facts(url: str) -> dict[str, Any]:
    """What the smoke expects to read back, straight from the copy."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        facts: dict[str, Any] = {"first_item_ids": []}
        if await conn.fetchval("SELECT to_regclass('public.items')") is not None:
            rows = await conn.fetch("SELECT id FROM items ORDER BY id LIMIT 5")
            facts["first_item_ids"] = [r["id"] for r in rows]
        if await conn.fetchval("SELECT to_regclass('public.orders')") is not None:
            row = await conn.fetchrow(
                "SELECT user_id, count(*) AS n FROM orders GROUP BY user_id "
                "ORDER BY n DESC, user_id LIMIT 1"
            )
            if row:
                facts.update(user_with_orders=row["user_id"], orders_of_user=row["n"])
        return facts
    finally:
        await conn.close()
