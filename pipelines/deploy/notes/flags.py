"""Feature flags as they were at a commit, read from `service/flags.py` without importing it.

Old code is never imported: the file is read with `git show <sha>:service/flags.py` and its
`REGISTRY` tuple of `Flag(...)` calls is evaluated literal by literal with `ast`.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS_FILE = "service/flags.py"
_FIELDS = ("name", "default", "description", "deprecated_since")


class FlagsParseError(ValueError):
    """service/flags.py at some commit has no REGISTRY this parser can read."""


@dataclass(frozen=True)
class FlagInfo:
    name: str
    default: bool
    description: str
    deprecated_since: str | None = None


def parse_registry(source: str, where: str = FLAGS_FILE) -> dict[str, FlagInfo]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise FlagsParseError(f"{where}: not valid Python ({exc})") from None
    for node in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        is_registry = isinstance(target, ast.Name) and target.id == "REGISTRY"
        if is_registry and isinstance(value, ast.Tuple | ast.List):
            flags = [_flag(call, where) for call in value.elts]
            return {flag.name: flag for flag in flags}
    raise FlagsParseError(f"{where}: no `REGISTRY = (Flag(...), ...)` literal found")


def _flag(node: ast.expr, where: str) -> FlagInfo:
    if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Flag"):
        raise FlagsParseError(f"{where}:{node.lineno}: REGISTRY entries must be Flag(...) calls")
    values: dict[str, Any] = {}
    try:
        for field, arg in zip(_FIELDS, node.args, strict=False):
            values[field] = ast.literal_eval(arg)
        for keyword in node.keywords:
            if keyword.arg in _FIELDS:
                values[keyword.arg] = ast.literal_eval(keyword.value)
    except ValueError:
        raise FlagsParseError(
            f"{where}:{node.lineno}: Flag arguments must be literals to be compared across commits"
        ) from None
    if "name" not in values or "default" not in values:
        raise FlagsParseError(f"{where}:{node.lineno}: Flag(...) needs a name and a default")
    since = values.get("deprecated_since")
    return FlagInfo(
        str(values["name"]),
        bool(values["default"]),
        str(values.get("description", "")),
        str(since) if since is not None else None,
    )


def flags_at(root: Path, sha: str) -> dict[str, FlagInfo] | None:
    """The registry at `sha`, or None when the file did not exist there."""
    result = subprocess.run(
        ["git", "show", f"{sha}:{FLAGS_FILE}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return parse_registry(result.stdout, f"{FLAGS_FILE} at {sha[:12]}")


def flag_changes(
    old: Mapping[str, FlagInfo] | None, new: Mapping[str, FlagInfo]
) -> dict[str, list[dict[str, Any]]]:
    old = old or {}
    return {
        "added": [
            {"name": n, "default": f.default, "description": f.description}
            for n, f in new.items()
            if n not in old
        ],
        "removed": [{"name": n, "default": f.default} for n, f in old.items() if n not in new],
        "default_changed": [
            {"name": n, "from": old[n].default, "to": f.default}
            for n, f in new.items()
            if n in old and old[n].default != f.default
        ],
        "deprecated": [
            {"name": n, "deprecated_since": f.deprecated_since}
            for n, f in new.items()
            if f.deprecated_since and (n not in old or not old[n].deprecated_since)
        ],
    }


def removal_candidates(
    root: Path, current: Mapping[str, FlagInfo], released_shas: Sequence[str], minimum: int = 2
) -> list[dict[str, Any]]:
    """Flags deprecated in this release and in the production releases right before it, for
    `minimum` releases or more in a row (newest first in `released_shas`)."""
    cache: dict[str, dict[str, FlagInfo] | None] = {}
    found = []
    for name, flag in current.items():
        if not flag.deprecated_since:
            continue
        releases = 1  # the one being made
        for sha in released_shas:
            if sha not in cache:
                try:
                    cache[sha] = flags_at(root, sha)
                except FlagsParseError:
                    cache[sha] = None
            earlier = (cache[sha] or {}).get(name)
            if earlier is None or not earlier.deprecated_since:
                break
            releases += 1
        if releases >= minimum:
            found.append(
                {"name": name, "deprecated_since": flag.deprecated_since, "releases": releases}
            )
    return found
