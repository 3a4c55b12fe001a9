"""The local target's ledger: one JSONL file under the state directory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.ledger import entry
from pipelines.targets.local.layout import state_root


class FileLedger:
    """JSONL, one entry per line, appended with O_APPEND and fsync: a crash can tear at most
    the last line, which readers skip."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_root() / "ledger.jsonl"

    def append(self, kind: str, env: str, **fields: Any) -> dict[str, Any]:
        record = entry(kind, env, **fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, default=str, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def _read(self) -> Iterator[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def entries(self, env: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self._read()
            if (env is None or e.get("env") == env) and (kind is None or e.get("kind") == kind)
        ]
