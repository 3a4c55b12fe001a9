"""Deploy step 3, migrations: no model change without a migration, what is pending where, each
revision's declared phase true to its SQL, and no contract before production is ready for it.

- The autogenerate diff compares `service.schema.metadata` with a throwaway PostgreSQL 18
  migrated to head; it must be empty.
- Every revision declares `phase = "expand"` or `"contract"` (see service/migrate.py). Its
  offline SQL (Alembic's `--sql` mode) is classified: squawk's rules first, then this
  module's own checks for what squawk lets through. Dropping, renaming, narrowing or
  tightening is a contract; anything else is an expand. A declared phase that does not match
  is refused, naming the operation and the file. An index built without CONCURRENTLY on an
  existing table is refused in either phase: it blocks writes while it builds.
- A contract revision pending for production is refused until production already runs code
  that has the revision before it (the expand it completes): otherwise running code could
  still use what it drops. The refusal names the release to deploy first.
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

from pipelines.deploy.migrations.phases import (
    UNREADABLE,
    classify,
    contract_gate,
    phase_problems,
    production_running,
)
from pipelines.deploy.migrations.revisions import (
    MigrationCheckError,
    RevisionInfo,
    default_migrations,
    revisions,
)
from pipelines.deploy.migrations.sql import DestructiveOp, destructive_ops, offline_sql
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.targets.base import ENVIRONMENTS, MigrationStatus, Target

if TYPE_CHECKING:
    from sqlalchemy import MetaData

__all__ = [
    "DestructiveOp",
    "MigrationCheckError",
    "MigrationsStep",
    "autogenerate_diff",
    "contract_gate",
    "offline_sql",
    "review",
    "revisions",
]


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

    from service.migrate import alembic_config, include_object, sqlalchemy_url
    from service.schema import metadata

    config = alembic_config(database_url)
    config.set_main_option("script_location", str(migrations or default_migrations()))
    command.upgrade(config, "head")
    wanted = target_metadata if target_metadata is not None else metadata
    # The same comparison options as service/migrations/env.py, so the diff is what
    # `alembic revision --autogenerate` would write.
    options = {
        "compare_type": True,
        "compare_server_default": True,
        "include_object": include_object,
    }

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

    def classified(self, revision: RevisionInfo) -> str:
        """What the revision's SQL does: `contract` or `expand`."""
        return classify(self.destructive.get(revision.revision, []))

    def phase_problems(self) -> dict[str, str]:
        """Revision -> why its declared phase is refused."""
        return phase_problems(self.revisions, self.destructive)

    @property
    def blocked_revisions(self) -> list[str]:
        return list(self.phase_problems())

    @property
    def ok(self) -> bool:
        return not self.blocked_revisions and not self.diff

    def blockers(self) -> list[str]:
        lines = list(self.phase_problems().values())
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
                    "classified": self.classified(r),
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


def _pending_anywhere(pending: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {rev for info in pending.values() for rev in info.get("pending", ())}


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
    reads_commit_only = True

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
        gate: list[str] = []
        if ctx.target.name == "local":
            db_revision, running, _ = production_running(ctx.target)
            gate = contract_gate(found.revisions, db_revision, running)
        return StepPlan(
            f"{len(found.revisions)} revision(s), head {head}",
            (
                "diff the models against a throwaway PostgreSQL 18 migrated to head",
                "check each revision's declared phase against its SQL",
                *pending,
            ),
            (*found.blockers(), *gate),
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
        db_revision, running, unknown = production_running(ctx.target)
        gate = contract_gate(found.revisions, db_revision, running)
        contracts = [r.revision for r in found.revisions if r.phase == "contract"]
        if unknown.startswith(UNREADABLE) and contracts:
            # Fail closed: a contract cannot be judged safe against code nobody could read.
            gate.append(
                f"cannot tell which code production runs ({unknown}); the contract "
                f"revision(s) {', '.join(contracts)} wait until it can be read. Nothing was "
                "changed"
            )
        evidence: dict[str, Any] = {
            **found.as_dict(),
            "pending": pending,
            "production": {"schema": db_revision, "running_head": running, "note": unknown},
            "contract_gate": gate,
        }
        ctx.facts["migrations"] = evidence
        ctx.reports.mkdir(parents=True, exist_ok=True)
        (ctx.reports / "migrations.json").write_text(json.dumps(evidence, indent=2) + "\n")
        blockers = [*found.blockers(), *gate]
        evidence = {**evidence, "details": [*blockers, *_pending_lines(pending)]}
        contract_notes = [
            f"revision {r.revision} is a contract: "
            + ", ".join(op.kind for op in found.destructive.get(r.revision, []))
            for r in found.revisions
            if r.phase == "contract" and r.revision in {p for p in _pending_anywhere(pending)}
        ]
        warnings = tuple(found.warnings + contract_notes + ([unknown] if unknown else []))
        head = found.revisions[-1].revision if found.revisions else "none"
        where = "; ".join(_pending_lines(pending))
        if not blockers:
            summary = f"head {head}, autogenerate diff empty, phases match their SQL; {where}"
            return StepResult(True, summary, evidence, warnings).timed(started)
        return StepResult(False, "; ".join(blockers), evidence, warnings).timed(started)
