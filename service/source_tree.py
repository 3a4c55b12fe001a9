"""Where this copy of the service sits, and which source files ship with it.

A *development checkout* is a git work tree (`.git` is a directory, or a file in a linked
worktree) whose `pyproject.toml` names the drydock project, with this package at its top
(`<checkout>/service`). A release artifact (`git archive` of `service/`), the container image
(the package installed in site-packages) and an unpacked source tarball are not. Only in a
development checkout may ENV be left unset.

Staging and production refuse a secret that appears in a source file: anyone who can read
the repository has it. What is scanned, once per set of values:

- every file of the package itself (what every release ships), byte for byte;
- in a development checkout, every file git tracks there (`git ls-files`). Untracked files,
  such as a developer's own `.env`, are not scanned; when git cannot list the files, only
  the package is.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_NAME = "drydock"
# Larger files are data, not source; skipping them keeps the scan to a fraction of a second.
MAX_SCANNED_BYTES = 4 * 1024 * 1024


def development_checkout(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The checkout this package sits at the top of, or None when it is not in one."""
    root = package_dir.parent
    if not (root / ".git").exists():
        return None
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("name") == PROJECT_NAME else None


def shipped_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's own files, plus the tracked files of the checkout it sits in."""
    files = {
        path
        for path in package_dir.rglob("*")
        if "__pycache__" not in path.parts and path.is_file()
    }
    checkout = development_checkout(package_dir)
    if checkout is not None:
        files.update(_tracked_files(checkout))
    return sorted(files)


def _tracked_files(checkout: Path) -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=checkout, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [checkout / os.fsdecode(name) for name in listed.split(b"\0") if name]


def found_in_source(values: Mapping[str, str], package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Which of `values` (setting name -> value) appear in a shipped file, and the first
    file each appears in. Empty values are never looked for."""
    wanted = tuple(sorted((name, value) for name, value in values.items() if value))
    return dict(_scan(wanted, package_dir))


@functools.lru_cache(maxsize=16)
def _scan(wanted: tuple[tuple[str, str], ...], package_dir: Path) -> tuple[tuple[str, Path], ...]:
    needles = {name: value.encode() for name, value in wanted}
    found: dict[str, Path] = {}
    for path in shipped_files(package_dir):
        if len(found) == len(needles):
            break
        try:
            if path.stat().st_size > MAX_SCANNED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue  # a tracked file deleted from the work tree, or unreadable
        for name, needle in needles.items():
            if name not in found and needle in data:
                found[name] = path
    return tuple(found.items())
