"""The environment's PostgreSQL as the pipeline sees it: roles, migrations, facts.

Two login roles besides the superuser: the owner, which runs migrations and owns the schema,
and the app role the replicas use, which may read and write rows but not change the schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.postgres.cluster import Cluster
from pipelines.targets.base import MigrationStatus, TargetError
from pipelines.targets.local.runtime import (
    APP_ROLE,
    DATABASE,
    NAMES,
    OWNER_ROLE,
    database_url,
    run_release_command,
)
from pipelines.targets.local.secrets import SecretStore
from service.provision import ensure_login_role, grants


class LocalDatabase:
    def __init__(self, cluster: Cluster, store: SecretStore) -> None:
        self.cluster = cluster
        self.store = store

    def url(self, role: str = "app") -> str:
        return database_url(self.store, self.cluster.port, role)

    def ensure_roles(self) -> None:
        asyncio.run(self._ensure_roles())

    async def _ensure_roles(self) -> None:
        conn = await asyncpg.connect(self.url("superuser"))
        try:
            for role, secret in ((OWNER_ROLE, NAMES.owner), (APP_ROLE, NAMES.app)):
                await ensure_login_role(conn, role, self.store.get(secret))
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{OWNER_ROLE}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.url("superuser").rsplit("/", 1)[0] + f"/{DATABASE}")
        try:
            await conn.execute(f'ALTER SCHEMA public OWNER TO "{OWNER_ROLE}"')
            await conn.execute(f'SET ROLE "{OWNER_ROLE}"')
            for statement in grants(DATABASE, OWNER_ROLE, APP_ROLE):
                await conn.execute(statement)
            await conn.execute("RESET ROLE")
        finally:
            await conn.close()

    def migration_status(self, artifact: str | None = None) -> MigrationStatus:
        """Where the database is against the migrations of `artifact` (default: this code),
        and whether that release's code serves on it."""
        from service.migrate import schema_status

        location = Path(artifact) / "service" / "migrations" if artifact else None
        return MigrationStatus.from_dict(schema_status(self.url("owner"), location))

    def migrate(self, artifact: str | None = None) -> MigrationStatus:
        """Upgrade to the head of `artifact`'s migrations (a release), as a one-off process
        of that release, the way the aws target runs them as a one-off ECS task."""
        result = run_release_command(
            artifact, ["migrate"], {"DATABASE_URL": self.url("owner"), "ENV": "development"}
        )
        if result.returncode != 0:
            raise TargetError(f"migration failed:\n{result.stderr.strip()[-2000:]}")
        return self.migration_status(artifact)

    def facts(self) -> dict[str, Any]:
        return asyncio.run(self._facts())

    async def _facts(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.url("superuser"))
        try:
            size = await conn.fetchval("SELECT pg_database_size($1)", DATABASE)
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return {"size_bytes": size, "server_version": version, "database": DATABASE}

    def revoke_refresh_tokens(self) -> int:
        """Runbook section 12: after a signing-key rotation no refresh token stays usable."""
        return asyncio.run(self._revoke())

    async def _revoke(self) -> int:
        conn = await asyncpg.connect(self.url("owner"))
        try:
            if await conn.fetchval("SELECT to_regclass('public.refresh_tokens')") is None:
                return 0
            status = await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL"
            )
            return int(status.split()[-1])
        finally:
            await conn.close()

    def reset(self) -> None:
        """Drop and recreate the database (non-production; the caller enforces that)."""
        asyncio.run(self._reset())

    async def _reset(self) -> None:
        conn = await asyncpg.connect(self.url("superuser"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        finally:
            await conn.close()
        await self._ensure_roles()
