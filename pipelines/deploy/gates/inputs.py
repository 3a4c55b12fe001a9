"""What the gates read, hashed: the key a gate record is filed under besides its commit.

The key covers every committed file the gates can read (code, tests, config, workflows,
stack files), the installed distributions and their versions, the Python version and the
coverage threshold (the gate commands themselves are code, so they are in the files).
Documentation is left out: no gate opens it. So a commit that changes only docs has the key
of the commit before it and reuses its green record, and any change to code, tests,
pyproject.toml or an installed package gives a new key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Read by no gate (reports/ is what the gates write). tests/pipelines/deploy/test_gate_inputs.py
# checks that no test, no gate and no code it runs opens one of these files.
NOT_READ = ("docs/*", "*.md", "LICENSE", "reports/*")
# Except the README: a test checks its list of the deploy role's permissions against the role
# the stacks create (tests/infra/test_github_oidc.py), so a README change may fail the gates.
READ_ANYWAY = ("README.md",)


class InputsError(RuntimeError):
    """A git command the gates need failed (not a checkout, an unknown sha)."""


@dataclass(frozen=True)
class Inputs:
    key: str
    files: int
    files_hash: str
    dependencies_hash: str
    dependencies: tuple[str, ...]


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputsError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


def read_by_gates(path: str) -> bool:
    if path in READ_ANYWAY:
        return True
    return not any(fnmatch.fnmatch(path, pattern) for pattern in NOT_READ)


def committed_files(root: Path, sha: str) -> list[tuple[str, str]]:
    """(path, blob id) of every file in `sha` the gates read, sorted by path."""
    listing = git(root, "ls-tree", "-r", "-z", "--full-tree", sha)
    files = []
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, _kind, blob = meta.split()
        if read_by_gates(path):
            files.append((path, f"{mode}:{blob}"))
    return sorted(files)


def installed_dependencies() -> tuple[str, ...]:
    """`name==version` of every installed distribution: the environment's lock."""
    found = {
        f"{(dist.metadata['Name'] or '?').lower()}=={dist.version}"
        for dist in metadata.distributions()
    }
    return tuple(sorted(found))


def _digest(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def inputs_for(root: Path, sha: str, settings: Sequence[str]) -> Inputs:
    files = committed_files(root, sha)
    files_hash = _digest(f"{path} {blob}" for path, blob in files)
    dependencies = installed_dependencies()
    dependencies_hash = _digest([f"python=={platform.python_version()}", *dependencies])
    key = _digest([files_hash, dependencies_hash, *settings])
    return Inputs(key, len(files), files_hash, dependencies_hash, dependencies)


def changed_between(root: Path, old: str, new: str) -> list[str]:
    """The files that differ between two commits (all of them: read by the gates or not)."""
    return [line for line in git(root, "diff", "--name-only", old, new).splitlines() if line]
