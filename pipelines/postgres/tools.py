"""PostgreSQL client tools (pg_dump, pg_restore, pg_basebackup, pg_verifybackup) and the
small admin statements backups and drills need.

The tools run as the current user over TCP, never as the server account: a client writes
its output where this process can, even as root with 0700 state directories. The password
goes through `PGPASSWORD` in the child's environment, never on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import asyncpg

from pipelines.postgres.cluster import Binaries

CONNECT_TIMEOUT_S = 10
STDERR_TAIL = 2000


class ToolError(RuntimeError):
    """A client tool failed; the message holds its command (no secrets) and stderr."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str = ""  # e.g. "require" for RDS, which refuses plain connections

    @classmethod
    def from_url(cls, url: str) -> ConnInfo:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or "postgres",
            sslmode=query.get("sslmode", query.get("ssl", "")),
        )

    def on(self, database: str) -> ConnInfo:
        return replace(self, database=database)

    def url(self) -> str:
        query = f"?sslmode={self.sslmode}" if self.sslmode else ""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{self.database}{query}"
        )

    def redacted(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port), "--username", self.user]

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PGPASSWORD": self.password,
            "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S),
            "PGAPPNAME": "drydock-backups",
        }
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env


def _failure(tool: str, code: int, stderr: str) -> ToolError:
    tail = stderr.strip()[-STDERR_TAIL:]
    return ToolError(f"{tool} failed (exit {code}): {tail}", tail, code)


def run(
    binaries: Binaries,
    tool: str,
    args: Sequence[str],
    conn: ConnInfo | None = None,
    *,
    timeout_s: float = 3600,
) -> str:
    """Run a client tool to completion; stdout on success, ToolError otherwise."""
    cmd = [binaries.tool(tool), *args]
    env = conn.env() if conn else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{tool} did not finish within {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise _failure(tool, proc.returncode, proc.stderr)
    return proc.stdout


async def run_async(
    binaries: Binaries,
    tool: str,
    args: Sequence[str],
    conn: ConnInfo | None = None,
    *,
    timeout_s: float = 3600,
) -> str:
    """`run` without blocking the event loop, so queries can go on beside the tool."""
    env = conn.env() if conn else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = await asyncio.create_subprocess_exec(
        binaries.tool(tool),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except BaseException as exc:  # timed out or cancelled: never leave the tool running
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise ToolError(f"{tool} did not finish within {timeout_s:g} s") from None
        raise
    if proc.returncode != 0:
        raise _failure(tool, proc.returncode or -1, err.decode(errors="replace"))
    return out.decode(errors="replace")


def server_version(binaries: Binaries, tool: str = "pg_dump") -> str:
    return run(binaries, tool, ["--version"]).strip().rsplit(" ", 1)[-1]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin(conn: ConnInfo, *statements: str) -> None:
    connection = await asyncpg.connect(conn.on("postgres").url(), timeout=CONNECT_TIMEOUT_S)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def create_database(conn: ConnInfo, name: str, owner: str | None = None) -> None:
    """An empty database from template0, so nothing from template1 leaks into a restore."""
    owner_clause = f" OWNER {quote_ident(owner)}" if owner else ""
    asyncio.run(
        _admin(conn, f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0{owner_clause}")
    )


def drop_database(conn: ConnInfo, name: str) -> None:
    asyncio.run(_admin(conn, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"))


def rename_database(conn: ConnInfo, old: str, new: str) -> None:
    """Rename after closing every session on `old` (a rename needs it idle)."""

    async def go() -> None:
        connection = await asyncpg.connect(conn.on("postgres").url(), timeout=CONNECT_TIMEOUT_S)
        try:
            await connection.execute(f"ALTER DATABASE {quote_ident(old)} ALLOW_CONNECTIONS false")
            try:
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    old,
                )
                await connection.execute(
                    f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}"
                )
                renamed = new
            except BaseException:
                renamed = old
                raise
            finally:
                await connection.execute(
                    f"ALTER DATABASE {quote_ident(renamed)} ALLOW_CONNECTIONS true"
                )
        finally:
            await connection.close()

    asyncio.run(go())


async def database_exists(conn: ConnInfo, name: str) -> bool:
    connection = await asyncpg.connect(conn.on("postgres").url(), timeout=CONNECT_TIMEOUT_S)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()
