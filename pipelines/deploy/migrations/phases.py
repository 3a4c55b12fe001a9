"""Expand and contract (see service/migrate.py): what a revision's SQL makes it, whether its
declared phase says the same, and whether production is ready for a contract.

Dropping, renaming, narrowing or tightening is a contract; anything else is an expand. An
index built without CONCURRENTLY on an existing table is refused in either phase: it
blocks writes while it builds. A contract pending for production waits until production
runs code that has the revision before it (the expand it completes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipelines.deploy.migrations.revisions import RevisionInfo
from pipelines.deploy.migrations.sql import DestructiveOp
from pipelines.targets.base import Target

PHASES = ("expand", "contract")
# What running code of the release before could trip over: these make a revision a contract.
CONTRACT_KINDS = frozenset(
    {
        "drop-column",
        "drop-table",
        "drop-database-or-schema",
        "type-change",
        "set-not-null",
        "not-null-without-default",
        "rename",
        "truncate",
        "add-constraint",
    }
)
# Refused in either phase: safe for running code, unsafe for the table's writers.
HAZARD_KINDS = frozenset({"non-concurrent-index"})


def ops_text(ops: list[DestructiveOp]) -> str:
    return "; ".join(f"{op.kind} ({op.statement[:100]})" for op in ops)


def classify(ops: Sequence[DestructiveOp]) -> str:
    """`contract` when the SQL drops, renames, narrows or tightens; `expand` otherwise."""
    return "contract" if any(op.kind in CONTRACT_KINDS for op in ops) else "expand"


def phase_problems(
    revisions: Sequence[RevisionInfo], destructive: Mapping[str, list[DestructiveOp]]
) -> dict[str, str]:
    """Revision -> why its declared phase is refused."""
    problems: dict[str, str] = {}
    for r in revisions:
        ops = destructive.get(r.revision, [])
        contract = [op for op in ops if op.kind in CONTRACT_KINDS]
        hazards = [op for op in ops if op.kind in HAZARD_KINDS]
        if r.phase not in PHASES:
            problems[r.revision] = (
                f"revision {r.revision} declares no phase: set phase = "
                f'"{classify(ops)}" in {r.path} (its SQL is an {classify(ops)})'
            )
        elif hazards:
            problems[r.revision] = (
                f"revision {r.revision} in {r.path}: {ops_text(hazards)}: build the index "
                "with postgresql_concurrently=True inside "
                "op.get_context().autocommit_block()"
            )
        elif r.phase == "expand" and contract:
            problems[r.revision] = (
                f"revision {r.revision} in {r.path} declares expand but "
                f"{ops_text(contract)} is a contract: older releases could not serve on "
                'it. Declare phase = "contract" and deploy it in a release after the one '
                "that stops using what it removes, or split it into expand and contract"
            )
        elif r.phase == "contract" and not contract:
            problems[r.revision] = (
                f"revision {r.revision} in {r.path} declares contract but only adds: "
                'declare phase = "expand" so the release before it keeps serving on it'
            )
    return problems


def contract_gate(
    found: list[RevisionInfo], db_revision: str | None, running_head: str | None
) -> list[str]:
    """Why a contract revision pending for production cannot go out yet: production's
    database is at `db_revision` and its running code at `running_head` (None: no code runs
    there yet, so nothing can trip over a contract)."""
    if running_head is None:
        return []
    order = {r.revision: i for i, r in enumerate(found)}
    if running_head not in order:
        return [
            f"production runs code at schema head {running_head}, which this release's "
            "migrations do not contain; deploy from a history that includes it"
        ]
    start = order[db_revision] + 1 if db_revision in order else 0
    problems = []
    for r in found[start:]:
        if r.phase != "contract" or r.down_revision is None:
            continue
        if order[running_head] < order[r.down_revision]:
            first = _release_ending_at(r)
            problems.append(
                f"revision {r.revision} is a contract, and production runs code at "
                f"{running_head}, before the expand it completes ({r.down_revision}): running "
                f"code could still use what it removes. Deploy a release whose migrations end "
                f"at {r.down_revision} first{first}, then this one. Nothing was changed"
            )
    return problems


def _release_ending_at(contract: RevisionInfo) -> str:
    """` (<sha>, the commit before <file> was added)` when git knows the file."""
    path = Path(contract.path)
    try:
        added = subprocess.run(
            ["git", "log", "-n1", "--format=%H", "--diff-filter=A", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" (e.g. {added[:12]}^, the commit before {path.name} was added)" if added else ""


UNREADABLE = "production unreadable"


def production_running(target: Target) -> tuple[str | None, str | None, str]:
    """(production's schema revision, its running code's head, why unknown): read through
    the environment's operations, so on AWS from a one-off task of the serving image."""
    try:
        env = target.environment("production")
        cluster = getattr(env, "cluster", None)
        if callable(cluster) and not cluster().is_running():
            return None, None, "production is not running"
        if env.current_release() is None:
            return None, None, "nothing is deployed to production yet"
        status = env.operations.migration_status()
    except Exception as exc:  # a probe: whatever fails is reported, not raised
        return None, None, f"{UNREADABLE}: {str(exc).splitlines()[0][:200]}"
    return status.current, status.head, ""
