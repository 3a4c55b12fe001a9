"""Deploy step 3, migrations: no model change without a migration, what is pending where, and
no destructive operation unless its revision is an approved contract step.

- The autogenerate diff compares `service.schema.metadata` with a throwaway PostgreSQL 18
  migrated to head; it must be empty.
- Destructive operations are found in the offline SQL of every revision (Alembic's
  `--sql` mode): squawk's rules first, then this module's own checks for what squawk lets
  through. A revision whose module sets `approved_contract_step = True` may be destructive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from pipelines.deploy.migrations.sql import DestructiveOp, destructive_ops, offline_sql
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.targets.base import ENVIRONMENTS, MigrationStatus, Target

if TYPE_CHECKING:
    from sqlalchemy import MetaData

__all__ = ["DestructiveOp", "MigrationsStep", "autogenerate_diff", "offline_sql", "review"]


class MigrationCheckError(RuntimeError):
    """The migrations cannot be checked (several heads, a broken revision...)."""


@dataclass(frozen=True)
class RevisionInfo:
    revision: str
    down_revision: str | None
    description: str
    path: str
    approved: bool  # approved_contract_step = True in the revision module


def default_migrations() -> Path:
    from service.migrate import MIGRATIONS

    return MIGRATIONS


def _script_directory(migrations: Path) -> Any:
    from alembic.script import ScriptDirectory

    from service.migrate import alembic_config

    config = alembic_config()
    config.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(config)


def revisions(migrations: Path) -> list[RevisionInfo]:
    """Every revision, oldest first. More than one head is an error: merge them first."""
    script = _script_directory(migrations)
    heads = script.get_heads()
    if len(heads) > 1:
        raise MigrationCheckError(
            f"{migrations} has {len(heads)} heads ({', '.join(heads)}); "
            "merge them with `alembic merge` before deploying"
        )
    found = []
    for rev in reversed(list(script.walk_revisions())):
        down = rev.down_revision
        found.append(
            RevisionInfo(
                revision=str(rev.revision),
                down_revision=str(down) if isinstance(down, str) else None,
                description=str(rev.doc).strip(),
                path=str(rev.path),
                approved=getattr(rev.module, "approved_contract_step", False) is True,
            )
        )
    return found


def _describe(diff: Any) -> str:
    """One line for one autogenerate difference, e.g. `add_column items.colour`."""
    if isinstance(diff, list):
        return "; ".join(_describe(d) for d in diff)
    op, *args = diff
    parts: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            parts.append(arg)
            continue
        table = getattr(getattr(arg, "table", None), "name", None)
        if table and table not in parts:
            parts.append(str(table))
        if getattr(arg, "name", None):
            parts.append(str(arg.name))
    return f"{op} {'.'.join(parts)}".strip()


def autogenerate_diff(
    database_url: str, migrations: Path | None = None, target_metadata: MetaData | None = None
) -> list[str]:
    """Upgrade an empty database to head, then diff it against the models."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    from service.migrate import alembic_config, sqlalchemy_url
    from service.schema import metadata

    config = alembic_config(database_url)
    config.set_main_option("script_location", str(migrations or default_migrations()))
    command.upgrade(config, "head")
    wanted = target_metadata if target_metadata is not None else metadata
    # The same comparison options as service/migrations/env.py, so the diff is what
    # `alembic revision --autogenerate` would write.
    options = {"compare_type": True, "compare_server_default": True}

    async def compare() -> list[Any]:
        engine = create_async_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts=options), wanted
                    )
                )
        finally:
            await engine.dispose()

    return [_describe(d) for d in asyncio.run(compare())]


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """An empty database on a private PostgreSQL 18 cluster, deleted afterwards."""
    from pipelines.host.ports import free_port
    from pipelines.postgres.cluster import Cluster, data_home

    scratch = Path(tempfile.mkdtemp(prefix="drydock-migrations-"))
    home = data_home(scratch, "pg")
    password = secrets.token_urlsafe(16)
    cluster = Cluster(home=home, port=free_port(), durable=False)
    try:
        cluster.initialise(password)
        cluster.start()
        yield cluster.url(cluster.superuser, password)
    finally:
        with contextlib.suppress(Exception):
            cluster.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


class _StatusOf(Protocol):
    # Both targets' databases take the release whose migrations to compare with.
    def migration_status(self, artifact: str | None = None) -> MigrationStatus: ...


def pending_by_environment(target: Target, artifact: str | None = None) -> dict[str, Any]:
    """Per environment: current revision and what the release (`artifact`; default: this
    checkout locally, the running image on AWS) would apply, or why that cannot be known."""
    found: dict[str, dict[str, Any]] = {}
    for name in ENVIRONMENTS:
        try:
            env = target.environment(name)
            cluster = getattr(env, "cluster", None)
            if callable(cluster) and not cluster().is_running():
                found[name] = {"state": "not running"}
                continue
            database = cast(_StatusOf, env.database)
            status = (
                database.migration_status(artifact) if artifact else database.migration_status()
            )
        except Exception as exc:  # a probe: whatever fails is reported, not raised
            found[name] = {"state": "unreachable", "reason": str(exc).splitlines()[0][:200]}
            continue
        found[name] = {
            "state": "up",
            "current": status.current,
            "head": status.head,
            "pending": list(status.pending),
        }
    return found


@dataclass
class MigrationReview:
    revisions: list[RevisionInfo]
    destructive: dict[str, list[DestructiveOp]]
    advisories: list[DestructiveOp]
    diff: list[str] | None  # None: not computed
    warnings: list[str]

    @property
    def blocked_revisions(self) -> list[str]:
        approved = {r.revision for r in self.revisions if r.approved}
        return [rev for rev, ops in self.destructive.items() if ops and rev not in approved]

    @property
    def ok(self) -> bool:
        return not self.blocked_revisions and not self.diff

    def blockers(self) -> list[str]:
        paths = {r.revision: r.path for r in self.revisions}
        lines = []
        for rev in self.blocked_revisions:
            ops = "; ".join(f"{op.kind} ({op.statement[:100]})" for op in self.destructive[rev])
            lines.append(
                f"revision {rev} is destructive and not an approved contract step: {ops}. "
                "Split it into expand/contract steps, or after review set "
                f"approved_contract_step = True in {paths.get(rev, rev)}"
            )
        if self.diff:
            lines.append(
                f"the models differ from the migrations ({'; '.join(self.diff[:5])}): "
                "generate a revision with `alembic revision --autogenerate`"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "revisions": [
                {
                    **asdict(r),
                    "destructive": [asdict(op) for op in self.destructive.get(r.revision, [])],
                }
                for r in self.revisions
            ],
            "blocked_revisions": self.blocked_revisions,
            "autogenerate_diff": self.diff,
            "advisories": [asdict(a) for a in self.advisories],
            "warnings": self.warnings,
        }


def review(
    migrations: Path | None = None,
    database_url: str | None = None,
    target_metadata: MetaData | None = None,
    with_diff: bool = True,
    squawk: str | None = None,
) -> MigrationReview:
    migrations = migrations or default_migrations()
    found = revisions(migrations)
    destructive, advisories, warnings = destructive_ops(migrations, squawk=squawk)
    diff: list[str] | None = None
    if with_diff:
        if database_url:
            diff = autogenerate_diff(database_url, migrations, target_metadata)
        else:
            with throwaway_database() as url:
                diff = autogenerate_diff(url, migrations, target_metadata)
    return MigrationReview(found, destructive, advisories, diff, warnings)


def _pending_lines(pending: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for env, info in pending.items():
        if info["state"] != "up":
            lines.append(
                f"{env}: {info['state']}" + (f" ({info['reason']})" if "reason" in info else "")
            )
        else:
            todo = ", ".join(info["pending"]) or "none"
            lines.append(f"{env}: at {info['current']}, pending {todo}")
    return lines


class MigrationsStep:
    number = 3
    name = "db.migrations"
    title = "migrations"
    exit_code = exit_code_for(3)

    def __init__(
        self,
        migrations: Path | None = None,
        database_url: str | None = None,
        target_metadata: MetaData | None = None,
        squawk: str | None = None,
    ) -> None:
        self.migrations = migrations
        self.database_url = database_url  # an empty database; default: a throwaway cluster
        self.target_metadata = target_metadata
        self.squawk = squawk

    def plan(self, ctx: StepContext) -> StepPlan:
        try:
            found = review(self.migrations, with_diff=False, squawk=self.squawk)
        except MigrationCheckError as exc:
            return StepPlan("migrations cannot be checked", blockers=(str(exc),))
        if ctx.target.name == "local":
            pending = [f"pending on {line}" for line in _pending_lines(self._pending(ctx))]
        else:  # each probe is a one-off task there: once, when the step runs
            pending = ["read the pending revisions of each environment"]
        head = found.revisions[-1].revision if found.revisions else "none"
        return StepPlan(
            f"{len(found.revisions)} revision(s), head {head}",
            ("diff the models against a throwaway PostgreSQL 18 migrated to head", *pending),
            tuple(found.blockers()),
        )

    def _pending(self, ctx: StepContext) -> dict[str, Any]:
        return pending_by_environment(ctx.target, ctx.release.artifact if ctx.release else None)

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        try:
            found = review(
                self.migrations, self.database_url, self.target_metadata, squawk=self.squawk
            )
        except MigrationCheckError as exc:
            return StepResult(False, str(exc)).timed(started)
        pending = self._pending(ctx)
        evidence: dict[str, Any] = {**found.as_dict(), "pending": pending}
        ctx.facts["migrations"] = evidence
        ctx.reports.mkdir(parents=True, exist_ok=True)
        (ctx.reports / "migrations.json").write_text(json.dumps(evidence, indent=2) + "\n")
        evidence = {**evidence, "details": [*found.blockers(), *_pending_lines(pending)]}
        approved = [
            f"revision {r.revision} is an approved contract step: "
            + ", ".join(op.kind for op in found.destructive.get(r.revision, []))
            for r in found.revisions
            if r.approved and found.destructive.get(r.revision)
        ]
        warnings = tuple(found.warnings + approved)
        head = found.revisions[-1].revision if found.revisions else "none"
        where = "; ".join(_pending_lines(pending))
        if found.ok:
            summary = (
                f"head {head}, autogenerate diff empty, nothing destructive unapproved; {where}"
            )
            return StepResult(True, summary, evidence, warnings).timed(started)
        return StepResult(False, "; ".join(found.blockers()), evidence, warnings).timed(started)
