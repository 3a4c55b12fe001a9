"""Deploy step 4, release notes: what changes between the release now in production and the
one being made, as Markdown and JSON.

The base is the sha of the newest successful production deploy in the ledger (all commits
when there is none). The notes hold the commits grouped by conventional-commit type, the
migrations added with their descriptions and destructive operations, the feature-flag
changes and removal candidates, the security waivers in force, and the artifact id.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.deploy.notes.flags import flag_changes, flags_at, removal_candidates
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.ledger import Ledger

GROUPS = ("feat", "fix", "perf", "docs", "test", "chore", "other")
TITLES = {
    "feat": "Features",
    "fix": "Fixes",
    "perf": "Performance",
    "docs": "Documentation",
    "test": "Tests",
    "chore": "Chores",
    "other": "Other changes",
}
VERSIONS_DIR = "service/migrations/versions"
_CONVENTIONAL = re.compile(
    r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^)]*)\))?(?P<bang>!)?:\s*(?P<subject>.+)$"
)


class NotesError(RuntimeError):
    """The notes cannot be made (an unknown sha, unreadable history)."""


@dataclass(frozen=True)
class Commit:
    sha: str
    type: str
    scope: str
    subject: str
    breaking: bool
    author: str
    date: str


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NotesError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def has_commit(root: Path, sha: str) -> bool:
    probe = ["git", "cat-file", "-e", f"{sha}^{{commit}}"]
    return subprocess.run(probe, cwd=root, capture_output=True, check=False).returncode == 0


def production_history(ledger: Ledger) -> list[dict[str, Any]]:
    """Successful production deploys (and rollbacks) that name a sha, newest first."""
    entries = [
        e
        for kind in ("deploy", "rollback")
        for e in ledger.entries(env="production", kind=kind)
        if e.get("ok") is True and isinstance(e.get("sha"), str)
    ]
    return sorted(entries, key=lambda e: float(e.get("at", 0)), reverse=True)


def parse_commit(sha: str, message: str, body: str, author: str, date: str) -> Commit:
    match = _CONVENTIONAL.match(message.strip())
    kind = match.group("type").lower() if match else "other"
    breaking = bool(match and match.group("bang")) or bool(
        re.search(r"^BREAKING[ -]CHANGE:", body, re.MULTILINE)
    )
    return Commit(
        sha=sha,
        type=kind if kind in GROUPS else "other",
        scope=(match.group("scope") or "") if match else "",
        subject=match.group("subject").strip() if match else message.strip(),
        breaking=breaking,
        author=author,
        date=date,
    )


def commits_between(root: Path, base: str | None, head: str) -> list[Commit]:
    span = f"{base}..{head}" if base else head
    raw = git(root, "log", "--no-merges", "--format=%H%x1f%s%x1f%an%x1f%aI%x1f%b%x1e", span)
    found = []
    for record in raw.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 5:
            sha, subject, author, date, body = fields
            found.append(parse_commit(sha, subject, body, author, date))
    return found


def group_commits(commits: Sequence[Commit]) -> dict[str, list[Commit]]:
    return {group: [c for c in commits if c.type == group] for group in GROUPS}


def _revision_files(root: Path, sha: str | None) -> set[str]:
    if sha is None:
        return set()
    listing = git(root, "ls-tree", "-r", "--name-only", sha, "--", VERSIONS_DIR)
    return {p for p in listing.splitlines() if p.endswith(".py")}


def _revision_meta(source: str) -> dict[str, Any]:
    tree = ast.parse(source)
    meta: dict[str, Any] = {"description": (ast.get_docstring(tree) or "").split("\n\n")[0]}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("revision", "down_revision", "phase"):
                try:
                    meta[name] = ast.literal_eval(node.value)
                except ValueError:
                    meta[name] = None
    return meta


def _destructive_at(root: Path, sha: str) -> dict[str, list[str]] | None:
    """Revision -> destructive kinds, from the migrations as committed at `sha`."""
    from pipelines.deploy.migrations.sql import destructive_ops
    from pipelines.releases import extract_tree

    with tempfile.TemporaryDirectory(prefix="drydock-notes-") as tmp:
        if not extract_tree(root, sha, "service/migrations", Path(tmp)):
            return None
        try:
            ops, _, _ = destructive_ops(Path(tmp) / "service" / "migrations")
        except Exception:  # old revisions that no longer run offline: say unknown
            return None
    return {rev: sorted({op.kind for op in found}) for rev, found in ops.items()}


def migrations_between(root: Path, base: str | None, head: str) -> list[dict[str, Any]]:
    added = sorted(_revision_files(root, head) - _revision_files(root, base))
    if not added:
        return []
    destructive = _destructive_at(root, head)
    found = []
    for path in added:
        meta = _revision_meta(git(root, "show", f"{head}:{path}"))
        revision = str(meta.get("revision"))
        found.append(
            {
                "revision": revision,
                "down_revision": meta.get("down_revision"),
                "description": meta["description"],
                "file": path,
                "phase": meta.get("phase") if isinstance(meta.get("phase"), str) else None,
                "destructive": None if destructive is None else destructive.get(revision, []),
            }
        )
    return found


def waivers_in_force(root: Path, today: dt.date | None = None) -> list[dict[str, str]]:
    from pipelines.deploy.security.policy import PolicyError, load_policy, waiver_dict
    from pipelines.deploy.security.scanners import POLICY

    try:
        policy = load_policy(root / POLICY)
    except PolicyError:
        return []
    today = today or dt.datetime.now(dt.UTC).date()
    return [waiver_dict(w) for w in policy.waivers_in_force(today)]


def build_notes(
    root: Path, sha: str, ledger: Ledger, artifact: str | None = None
) -> dict[str, Any]:
    if not has_commit(root, sha):
        raise NotesError(f"commit {sha} is not in {root}")
    history = production_history(ledger)
    warnings: list[str] = []
    base: str | None = None
    if history:
        base = str(history[0]["sha"])
        base_source = f"production deploy {history[0].get('deploy_id', '?')} ({base[:12]})"
        if not has_commit(root, base):
            warnings.append(f"production's commit {base[:12]} is not in this clone; listing all")
            base = None
    else:
        base_source = "no successful production deploy in the ledger: all commits"
    commits = commits_between(root, base, sha)
    current_flags = flags_at(root, sha) or {}
    previous_flags = flags_at(root, base) if base else None
    released = [str(e["sha"]) for e in history if e["sha"] != sha and has_commit(root, e["sha"])]
    flags = flag_changes(previous_flags, current_flags)
    flags["removal_candidates"] = removal_candidates(
        root, current_flags, list(dict.fromkeys(released))
    )
    return {
        "sha": sha,
        "base_sha": base,
        "base": base_source,
        "artifact": artifact,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commits": {g: [asdict(c) for c in cs] for g, cs in group_commits(commits).items()},
        "breaking": [asdict(c) for c in commits if c.breaking],
        "migrations": migrations_between(root, base, sha),
        "flags": flags,
        "waivers": waivers_in_force(root),
        "warnings": warnings,
    }


def markdown(notes: Mapping[str, Any]) -> str:
    sha = notes["sha"]
    lines = [
        f"# Release notes for {sha[:12]}",
        "",
        f"- artifact: `{notes['artifact'] or 'not built yet'}`",
        f"- since: {notes['base']}",
        "",
    ]
    if notes["breaking"]:
        lines += ["## Breaking changes", ""]
        lines += [f"- {c['subject']} (`{c['sha'][:8]}`)" for c in notes["breaking"]] + [""]
    for group in GROUPS:
        entries = notes["commits"][group]
        if entries:
            lines += [f"## {TITLES[group]}", ""]
            for c in entries:
                scope = f"**{c['scope']}:** " if c["scope"] else ""
                lines.append(f"- {scope}{c['subject']} (`{c['sha'][:8]}`)")
            lines.append("")
    if not any(notes["commits"].values()):
        lines += ["No commits since the release in production.", ""]
    lines += ["## Migrations", ""]
    for m in notes["migrations"]:
        kinds = m["destructive"]
        flag = "unknown" if kinds is None else ", ".join(kinds) or "none"
        phase = m.get("phase") or "undeclared"
        lines.append(f"- `{m['revision']}` {m['description']}; {phase}; destructive: {flag}")
    lines += (["- none"] if not notes["migrations"] else []) + ["", "## Feature flags", ""]
    flags = notes["flags"]
    lines += [f"- added `{f['name']}` (default {f['default']})" for f in flags["added"]]
    lines += [f"- removed `{f['name']}`" for f in flags["removed"]]
    lines += [
        f"- default of `{f['name']}` changed from {f['from']} to {f['to']}"
        for f in flags["default_changed"]
    ]
    lines += [
        f"- deprecated `{f['name']}` (since {f['deprecated_since']})" for f in flags["deprecated"]
    ]
    lines += [
        f"- removal candidate `{f['name']}`: deprecated since {f['deprecated_since']}, "
        f"for {f['releases']} releases"
        for f in flags["removal_candidates"]
    ]
    if not any(flags.values()):
        lines.append("- no changes")
    lines += ["", "## Security waivers in force", ""]
    lines += [
        f"- `{w['id']}` until {w['expires']}, owner {w['owner']}: {w['reason']}"
        for w in notes["waivers"]
    ] or ["- none"]
    lines += [f"\n> warning: {w}" for w in notes["warnings"]]
    return "\n".join(lines) + "\n"


def write_notes(notes: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "release-notes.json", directory / "release-notes.md"
    json_path.write_text(json.dumps(notes, indent=2) + "\n")
    md_path.write_text(markdown(notes))
    return json_path, md_path


class ReleaseNotesStep:
    number = 4
    name = "release.notes"
    title = "release notes"
    exit_code = exit_code_for(4)
    reads_commit_only = True

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger

    def _ledger(self, ctx: StepContext) -> Ledger:
        return self.ledger or ctx.options.get("ledger") or ctx.target.ledger()

    def plan(self, ctx: StepContext) -> StepPlan:
        history = production_history(self._ledger(ctx))
        since = f"production's {str(history[0]['sha'])[:12]}" if history else "the first commit"
        return StepPlan(
            f"notes for {ctx.sha[:12]} since {since}",
            (f"write release-notes.md and release-notes.json to {ctx.reports}",),
        )

    def run(self, ctx: StepContext) -> StepResult:
        started = time.monotonic()
        artifact = ctx.release.id if ctx.release else None
        try:
            notes = build_notes(ctx.root, ctx.sha, self._ledger(ctx), artifact)
        except (NotesError, ValueError) as exc:
            return StepResult(False, f"release notes: {exc}").timed(started)
        json_path, md_path = write_notes(notes, ctx.reports)
        ctx.facts["release_notes"] = notes
        count = sum(len(c) for c in notes["commits"].values())
        summary = (
            f"{count} commit(s), {len(notes['migrations'])} migration(s), "
            f"{sum(len(v) for v in notes['flags'].values())} flag change(s) since "
            f"{notes['base']}: {md_path}"
        )
        evidence = {
            "markdown": str(md_path),
            "json": str(json_path),
            "base_sha": notes["base_sha"],
            "details": [f"notes: {md_path}", f"data:  {json_path}"],
        }
        return StepResult(True, summary, evidence, tuple(notes["warnings"])).timed(started)
