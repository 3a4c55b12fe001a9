"""A real throwaway git repository for the pipeline tests: commits with chosen messages,
files and dates, and nothing read from the user's git configuration."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def _env(self, when: int | None) -> dict[str, str]:
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.org",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "author@example.org",
        }
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
        return env

    def git(self, *args: str, when: int | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self._env(when),
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def write(self, files: Mapping[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def commit(
        self, message: str, files: Mapping[str, str] | None = None, when: int | None = None
    ) -> str:
        self.write(files or {f"change-{len(self.log())}.txt": message})
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, when=when)
        return self.git("rev-parse", "HEAD")

    def log(self) -> list[str]:
        try:
            return self.git("log", "--format=%H").splitlines()
        except subprocess.CalledProcessError:
            return []
