"""Destructive operations in the SQL an Alembic upgrade would run.

The offline SQL of base -> head is split per revision on Alembic's
`-- Running upgrade A -> B` markers. Each revision's SQL goes through squawk (the `squawk`
binary of the squawk-cli wheel, JSON reporter) and through the checks below, which catch what
squawk lets through: it does not flag, for example, an index built on a table that an earlier
statement of the same file created, which is right only when that table is new in this
revision. A kind squawk already reported for a revision is not reported twice.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SQUAWK_TIMEOUT_S = 60
_MARKER = re.compile(r"^-- Running upgrade (\S*) -> (\S+)\s*$", re.MULTILINE)
_IDENT = r'("[^"]+"|[\w.]+)'
_TIGHTENING = "CHECK|UNIQUE|FOREIGN KEY|PRIMARY KEY|EXCLUDE"

# squawk rule -> the kind of destructive operation it means; other rules are advice.
SQUAWK_KINDS = {
    "ban-drop-column": "drop-column",
    "ban-drop-table": "drop-table",
    "ban-drop-database": "drop-database-or-schema",
    "ban-drop-schema": "drop-database-or-schema",
    "changing-column-type": "type-change",
    "adding-required-field": "not-null-without-default",
    "adding-not-nullable-field": "set-not-null",
    "require-concurrent-index-creation": "non-concurrent-index",
    "renaming-column": "rename",
    "renaming-table": "rename",
    "ban-truncate-cascade": "truncate",
}


@dataclass(frozen=True)
class DestructiveOp:
    revision: str
    kind: str
    statement: str
    detector: str  # "squawk:<rule>" or "drydock"
    message: str


def offline_sql(
    migrations: Path, from_revision: str | None = None, to_revision: str = "head"
) -> str:
    """`service.migrate.offline_sql` for any migrations directory (tests use copies)."""
    from alembic import command

    from service.migrate import alembic_config

    buffer = io.StringIO()
    config = alembic_config("postgresql+asyncpg://offline/offline")
    config.set_main_option("script_location", str(migrations))
    config.output_buffer = buffer
    span = f"{from_revision}:{to_revision}" if from_revision else to_revision
    command.upgrade(config, span, sql=True)
    return buffer.getvalue()


def statements(sql: str) -> list[tuple[int, str]]:
    """(first line, statement) pairs; comments dropped. Statements end with `;` at the end
    of a line, which is how Alembic writes them."""
    found: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(sql.splitlines()):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        if not current:
            start = number
        current.append(line)
        if stripped.endswith(";"):
            found.append((start, " ".join(" ".join(current).split())))
            current = []
    if current:
        found.append((start, " ".join(" ".join(current).split())))
    return found


def split_by_revision(sql: str) -> dict[str, str]:
    """Revision -> its SQL, without Alembic's bookkeeping. Each revision runs in its own
    transaction (`transaction_per_migration` in env.py), which squawk is told to assume."""
    chunks: dict[str, str] = {}
    marks = list(_MARKER.finditer(sql))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(sql)
        kept = [t for _, t in statements(sql[mark.end() : end]) if "alembic_version" not in t]
        if i + 1 == len(marks) and kept and kept[-1].upper() == "COMMIT;":
            kept.pop()  # the end of the whole upgrade's transaction, not of this revision
        chunks[mark.group(2)] = "\n\n".join(kept) + ("\n" if kept else "")
    return chunks


def squawk_binary() -> str | None:
    local = Path(sys.executable).parent / "squawk"
    return str(local) if local.exists() else shutil.which("squawk")


def run_squawk(chunks: Mapping[str, str], squawk: str) -> dict[str, list[dict[str, object]]]:
    """Revision -> squawk's JSON findings for that revision's SQL."""
    with tempfile.TemporaryDirectory(prefix="drydock-squawk-") as tmp:
        files = {}
        for index, (revision, sql) in enumerate(chunks.items()):
            path = Path(tmp) / f"{index:04d}.sql"
            path.write_text(sql)
            files[str(path)] = revision
        if not files:
            return {}
        proc = subprocess.run(
            [
                squawk,
                "--reporter",
                "json",
                "--pg-version",
                "18.0",
                "--assume-in-transaction",
                *files,
            ],
            capture_output=True,
            text=True,
            timeout=SQUAWK_TIMEOUT_S,
            check=False,
        )
    try:
        reported = json.loads(proc.stdout or "[]")
    except ValueError:
        raise RuntimeError(
            f"squawk failed (exit {proc.returncode}): {proc.stderr.strip()}"
        ) from None
    found: dict[str, list[dict[str, object]]] = {}
    for item in reported:
        found.setdefault(files.get(str(item.get("file")), "?"), []).append(item)
    return found


def _statement_at(sql: str, line: int) -> str:
    chosen = ""
    for start, text in statements(sql):
        if start > line:
            break
        chosen = text
    return chosen


def own_checks(revision: str, sql: str) -> list[DestructiveOp]:
    parsed = [text for _, text in statements(sql)]
    created = {
        m.group(2).strip('"').lower()
        for text in parsed
        if (m := re.match(rf"CREATE TABLE (IF NOT EXISTS )?{_IDENT}", text, re.IGNORECASE))
    }
    ops: list[DestructiveOp] = []

    def add(kind: str, text: str, message: str) -> None:
        ops.append(DestructiveOp(revision, kind, text, "drydock", message))

    for text in parsed:
        upper = text.upper()
        alter = re.match(rf"ALTER TABLE (ONLY )?(IF EXISTS )?{_IDENT} (.*)", text, re.IGNORECASE)
        table = alter.group(3).strip('"').lower() if alter else ""
        action = alter.group(4).upper() if alter else ""
        if re.match(r"DROP TABLE", upper):
            add("drop-table", text, "drops a table and its data")
        elif re.match(r"DROP (SCHEMA|DATABASE)", upper):
            add("drop-database-or-schema", text, "drops a schema or database")
        elif upper.startswith("TRUNCATE"):
            add("truncate", text, "deletes every row of a table")
        elif alter and action.startswith("DROP COLUMN"):
            add("drop-column", text, f"drops a column of {table} and its data")
        elif alter and re.match(r"ALTER (COLUMN )?\S+ (SET DATA )?TYPE ", action):
            add("type-change", text, f"changes a column type of {table}: may narrow it, rewrites")
        elif (
            alter and table not in created and re.match(r"ALTER (COLUMN )?\S+ SET NOT NULL", action)
        ):
            add("set-not-null", text, f"makes a column of {table} NOT NULL, scanning it locked")
        elif (
            alter
            and table not in created
            and re.match(
                r"ADD CONSTRAINT \S+ (CHECK|UNIQUE|FOREIGN KEY|PRIMARY KEY|EXCLUDE)", action
            )
        ):
            add("add-constraint", text, f"adds a constraint to {table} that running code may break")
        elif alter and table not in created and action.startswith("ADD ") and "NOT NULL" in action:
            if "DEFAULT" not in action and "GENERATED" not in action:
                add(
                    "not-null-without-default",
                    text,
                    f"adds a NOT NULL column without a default to {table}",
                )
        elif alter and action.startswith("RENAME"):
            add("rename", text, f"renames {table} or one of its columns under running code")
        index = re.match(
            rf"CREATE (UNIQUE )?INDEX (CONCURRENTLY )?(IF NOT EXISTS )?\S+ ON (ONLY )?{_IDENT}",
            text,
            re.IGNORECASE,
        )
        if index and not index.group(2) and index.group(5).strip('"').lower() not in created:
            add("non-concurrent-index", text, "builds an index while blocking writes")
    return ops


def destructive_ops(
    migrations: Path, squawk: str | None = None
) -> tuple[dict[str, list[DestructiveOp]], list[DestructiveOp], list[str]]:
    """(revision -> destructive operations, squawk's advice, warnings) for every revision."""
    chunks = split_by_revision(offline_sql(migrations))
    binary = squawk or squawk_binary()
    warnings: list[str] = []
    reported: dict[str, list[dict[str, object]]] = {}
    if binary is None:
        warnings.append("squawk not found (pip install squawk-cli); only drydock's own checks ran")
    else:
        reported = run_squawk(chunks, binary)
    destructive: dict[str, list[DestructiveOp]] = {}
    advisories: list[DestructiveOp] = []
    for revision, sql in chunks.items():
        ops: list[DestructiveOp] = []
        for item in reported.get(revision, []):
            rule = str(item.get("rule_name"))
            line = item.get("line")
            statement = _statement_at(sql, line if isinstance(line, int) else 0)
            op = DestructiveOp(
                revision,
                SQUAWK_KINDS.get(rule, "advice"),
                statement,
                f"squawk:{rule}",
                str(item.get("message")),
            )
            (ops if rule in SQUAWK_KINDS else advisories).append(op)
        seen = {op.kind for op in ops}
        ops += [op for op in own_checks(revision, sql) if op.kind not in seen]
        destructive[revision] = ops
    return destructive, advisories, warnings
