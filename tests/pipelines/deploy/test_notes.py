"""Deploy step 4: release notes from a real git history and a real ledger.

A temporary repository holds a release already in production (in the ledger) and a series
of conventional commits after it that change the flag registry and add a migration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.deploy.notes.build import ReleaseNotesStep, build_notes, markdown, parse_commit
from pipelines.deploy.notes.flags import FlagsParseError, parse_registry
from pipelines.deploy.steps import StepContext, exit_code_for
from pipelines.targets.base import Release
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget
from service.migrate import MIGRATIONS
from tests.pipelines.deploy.git_helpers import GitRepo

History = tuple[GitRepo, FileLedger, dict[str, str]]

FLAGS = '''"""Feature flags."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    name: str
    default: bool
    description: str
    deprecated_since: str | None = None


REGISTRY: tuple[Flag, ...] = (
{entries}
)
'''
BEFORE = [
    'Flag("ORDERS_ENABLED", True, "Emergency disable for orders.")',
    'Flag("LEGACY_SEARCH", True, "Old search.", deprecated_since="0.1.0")',
    'Flag("DARK_MODE", False, "Dark UI.")',
    'Flag("BETA_EXPORT", False, "CSV export.")',
]
AFTER = [
    'Flag("ORDERS_ENABLED", True, "Emergency disable for orders.")',
    'Flag("LEGACY_SEARCH", True, "Old search.", deprecated_since="0.1.0")',
    'Flag("DARK_MODE", True, "Dark UI.")',
    'Flag("FAST_CHECKOUT", False, "One-click checkout.")',
    'Flag("SLOW_REPORTS", False, "Report queue.", deprecated_since="0.2.0")',
]
DROP_COLUMN = '''"""drop the item name

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 08:00:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
phase = "contract"


def upgrade() -> None:
    op.drop_column("items", "name")


def downgrade() -> None:
    pass
'''
POLICY = {
    "environments": {"local": {"unaudited": "warn"}, "production": {}},
    "waivers": [
        {"id": "B108:infra/x.py", "owner": "ops", "reason": "scratch", "expires": "2999-01-01"},
        {"id": "PYSEC-1", "owner": "ops", "reason": "old", "expires": "2001-01-01"},
    ],
}


def _flags(entries: list[str]) -> str:
    return FLAGS.format(entries="\n".join(f"    {e}," for e in entries))


def _migrations() -> dict[str, str]:
    files = {"service/migrations/env.py", "service/migrations/script.py.mako"}
    files.add("service/migrations/versions/0001_initial_schema.py")
    return {f: (MIGRATIONS.parent.parent / f).read_text() for f in files}


@pytest.fixture
def history(tmp_path: Path) -> History:
    repo = GitRepo(tmp_path / "repo")
    shas = {"first": repo.commit("feat(api): first endpoint", {"service/flags.py": ""})}
    shas["released"] = repo.commit(
        "feat(auth): login",
        {
            "service/flags.py": _flags(BEFORE),
            "security/policy.yaml": json.dumps(POLICY),
            **_migrations(),
        },
    )
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    ledger.append("deploy", "production", sha=shas["first"], ok=True, deploy_id="d1")
    ledger.append("deploy", "production", sha=shas["released"], ok=True, deploy_id="d2")
    ledger.append("deploy", "staging", sha="f" * 40, ok=True)
    shas["fix"] = repo.commit("fix(orders): round totals half up")
    shas["perf"] = repo.commit("perf(db): batch inserts")
    shas["docs"] = repo.commit("docs: runbook links")
    shas["test"] = repo.commit("test: flag registry")
    shas["chore"] = repo.commit("chore(deps): bump httpx")
    shas["refactor"] = repo.commit("refactor: split the edge middleware")
    shas["plain"] = repo.commit("Update README")
    shas["failed"] = repo.commit("feat(ui): dark mode on by default")
    ledger.append("deploy", "production", sha=shas["failed"], ok=False, deploy_id="d3")
    shas["head"] = repo.commit(
        "feat(checkout)!: one-click checkout",
        {
            "service/flags.py": _flags(AFTER),
            "service/migrations/versions/0002_drop_item_name.py": DROP_COLUMN,
        },
    )
    return repo, ledger, shas


@pytest.mark.integration
def test_notes_since_the_release_in_production(history: History) -> None:
    repo, ledger, shas = history
    notes = build_notes(repo.path, shas["head"], ledger, artifact="0.2.0+abc")
    assert notes["base_sha"] == shas["released"] and "d2" in notes["base"]
    subjects = {g: [c["subject"] for c in cs] for g, cs in notes["commits"].items()}
    assert subjects == {
        "feat": ["one-click checkout", "dark mode on by default"],
        "fix": ["round totals half up"],
        "perf": ["batch inserts"],
        "docs": ["runbook links"],
        "test": ["flag registry"],
        "chore": ["bump httpx"],
        "other": ["Update README", "split the edge middleware"],  # newest first
    }
    assert notes["commits"]["fix"][0]["scope"] == "orders"
    assert [c["sha"] for c in notes["breaking"]] == [shas["head"]]
    assert notes["artifact"] == "0.2.0+abc"


@pytest.mark.integration
def test_flag_changes_between_the_two_shas(history: History) -> None:
    repo, ledger, shas = history
    flags = build_notes(repo.path, shas["head"], ledger)["flags"]
    assert [f["name"] for f in flags["added"]] == ["FAST_CHECKOUT", "SLOW_REPORTS"]
    assert flags["removed"] == [{"name": "BETA_EXPORT", "default": False}]
    assert flags["default_changed"] == [{"name": "DARK_MODE", "from": False, "to": True}]
    assert flags["deprecated"] == [{"name": "SLOW_REPORTS", "deprecated_since": "0.2.0"}]
    # LEGACY_SEARCH was already deprecated in the release in production: two releases now.
    assert flags["removal_candidates"] == [
        {"name": "LEGACY_SEARCH", "deprecated_since": "0.1.0", "releases": 2}
    ]


@pytest.mark.integration
def test_migrations_and_waivers(history: History) -> None:
    repo, ledger, shas = history
    notes = build_notes(repo.path, shas["head"], ledger)
    assert notes["migrations"] == [
        {
            "revision": "0002",
            "down_revision": "0001",
            "description": "drop the item name",
            "file": "service/migrations/versions/0002_drop_item_name.py",
            "phase": "contract",
            "destructive": ["drop-column"],
        }
    ]
    assert [w["id"] for w in notes["waivers"]] == ["B108:infra/x.py"]
    text = markdown(notes)
    for expected in (
        "## Breaking changes",
        "## Features",
        "## Other changes",
        "`0002` drop the item name; contract; destructive: drop-column",
        "default of `DARK_MODE` changed from False to True",
        "removal candidate `LEGACY_SEARCH`",
        "`B108:infra/x.py` until 2999-01-01, owner ops",
    ):
        assert expected in text


@pytest.mark.integration
def test_without_a_production_release_every_commit_is_listed(
    history: History, tmp_path: Path
) -> None:
    repo, _, shas = history
    notes = build_notes(repo.path, shas["head"], FileLedger(tmp_path / "empty.jsonl"))
    assert notes["base_sha"] is None
    assert sum(len(c) for c in notes["commits"].values()) == len(repo.log())
    assert [m["revision"] for m in notes["migrations"]] == ["0001", "0002"]
    assert [f["name"] for f in notes["flags"]["added"]][:2] == ["ORDERS_ENABLED", "LEGACY_SEARCH"]


@pytest.mark.integration
def test_step_4_writes_markdown_and_json(history: History, tmp_path: Path) -> None:
    repo, ledger, shas = history
    ctx = StepContext(
        target=LocalTarget(state_dir=tmp_path / "state"),
        sha=shas["head"],
        root=repo.path,
        reports=tmp_path / "reports" / "deploy-1",
        release=Release("0.2.0+" + shas["head"][:12], "0.2.0", shas["head"], "/a", "now"),
    )
    step = ReleaseNotesStep(ledger)
    assert step.exit_code == exit_code_for(4) and shas["released"][:12] in step.plan(ctx).summary
    result = step.run(ctx)
    assert result.ok, result.summary
    written = json.loads((ctx.reports / "release-notes.json").read_text())
    assert written["artifact"] == ctx.release.id and written == ctx.facts["release_notes"]
    assert (ctx.reports / "release-notes.md").read_text().startswith("# Release notes for")
    unknown = StepContext(ctx.target, "e" * 40, repo.path, ctx.reports)
    failed = step.run(unknown)
    assert not failed.ok and "is not in" in failed.summary


@pytest.mark.unit
def test_conventional_commit_parsing() -> None:
    commit = parse_commit("a" * 40, "feat(api)!: remove v1", "", "me", "2026-11-28")
    assert (commit.type, commit.scope, commit.subject, commit.breaking) == (
        "feat",
        "api",
        "remove v1",
        True,
    )
    footer = parse_commit("b" * 40, "fix: x", "BREAKING CHANGE: tokens expire", "me", "")
    assert footer.breaking and footer.type == "fix"
    assert parse_commit("c" * 40, "build: wheel", "", "me", "").type == "other"


@pytest.mark.unit
def test_registry_parsing_reads_literals_only() -> None:
    flags = parse_registry(_flags(AFTER))
    assert flags["SLOW_REPORTS"].deprecated_since == "0.2.0" and flags["DARK_MODE"].default
    with pytest.raises(FlagsParseError, match="literals"):
        parse_registry(_flags(['Flag("X", default=compute(), description="")']))
    with pytest.raises(FlagsParseError, match="no `REGISTRY"):
        parse_registry("FLAGS = ()\n")
