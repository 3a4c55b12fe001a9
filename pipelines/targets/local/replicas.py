"""Replica processes: spawn, identify, probe, drain. The ECS task counterpart.

A replica is `python -m service serve` for one release on one slot port. Each slot's record
(pid plus the kernel's process start time, so a recycled pid is never mistaken for ours)
lives in `agent/slots/<slot>.json`; replicas run in their own session and outlive the agent,
which adopts them again when it restarts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from pipelines.host.procs import process_start
from pipelines.targets.local.layout import EnvLayout, read_json, write_json

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3


@dataclass(frozen=True)
class ReplicaRecord:
    slot: int
    port: int
    pid: int
    pid_start: str
    release: str
    artifact: str
    generation: int
    started_at: float
    restarts: int = 0
    draining_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicaRecord:
        return cls(**data)


def is_alive(record: ReplicaRecord) -> bool:
    return process_start(record.pid) == record.pid_start


def rotate_log(path: Path, max_bytes: int | None = None, keep: int = LOG_KEEP) -> None:
    """Copy-and-truncate rotation: the writer keeps its O_APPEND descriptor."""
    try:
        if path.stat().st_size < (LOG_MAX_BYTES if max_bytes is None else max_bytes):
            return
    except FileNotFoundError:
        return
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as handle:
        handle.truncate(0)


class Replicas:
    """`records_dir`: where the slot records live; the agent's slots by default. The canary
    keeps its record elsewhere, so the agent neither adopts nor drains it."""

    def __init__(
        self, layout: EnvLayout, python: str = sys.executable, records_dir: Path | None = None
    ) -> None:
        self.layout = layout
        self.python = python
        self.records_dir = records_dir or layout.slots

    def log_path(self, slot: int) -> Path:
        return self.layout.logs / f"replica-{slot}.log"

    def records(self) -> dict[int, ReplicaRecord]:
        found: dict[int, ReplicaRecord] = {}
        for path in sorted(self.records_dir.glob("*.json")):
            data = read_json(path)
            if data:
                record = ReplicaRecord.from_json(data)
                found[record.slot] = record
        return found

    def save(self, record: ReplicaRecord) -> None:
        write_json(self.records_dir / f"{record.slot}.json", record.to_json())

    def forget(self, slot: int) -> None:
        (self.records_dir / f"{slot}.json").unlink(missing_ok=True)

    def spawn(
        self,
        *,
        slot: int,
        port: int,
        release: str,
        artifact: str,
        generation: int,
        env: dict[str, str],
        restarts: int = 0,
    ) -> ReplicaRecord:
        log = self.log_path(slot)
        rotate_log(log)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=artifact,
                env={**env, "PYTHONPATH": artifact, "PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # survives the agent; adopted when it restarts
            )
        finally:
            os.close(fd)
        start = None
        for _ in range(100):
            start = process_start(proc.pid)
            if start:
                break
            time.sleep(0.01)
        record = ReplicaRecord(
            slot=slot,
            port=port,
            pid=proc.pid,
            pid_start=start or "",
            release=release,
            artifact=artifact,
            generation=generation,
            started_at=time.time(),
            restarts=restarts,
        )
        self.save(record)
        return record

    def drain(self, record: ReplicaRecord) -> ReplicaRecord:
        """SIGTERM: the replica turns unready, serves out its drain window, then exits."""
        with contextlib.suppress(ProcessLookupError):
            if is_alive(record):
                os.kill(record.pid, signal.SIGTERM)
        drained = replace(record, draining_since=time.time())
        self.save(drained)
        return drained

    def kill(self, record: ReplicaRecord) -> None:
        with contextlib.suppress(ProcessLookupError):
            if is_alive(record):
                os.kill(record.pid, signal.SIGKILL)

    def reap(self) -> None:
        """Collect exited children so they do not linger as zombies."""
        with contextlib.suppress(ChildProcessError):
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    return


def probe(
    client: httpx.Client, port: int, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int | None, str]:
    """(status, short reason) of GET path on a replica; status None when unreachable. The
    readiness checks' reasons come only with the replica's METRICS_TOKEN in `headers`."""
    try:
        response = client.get(f"http://127.0.0.1:{port}{path}", headers=headers)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    reason = ""
    if response.status_code != 200:
        with contextlib.suppress(ValueError):
            checks = response.json().get("checks", {})
            reason = "; ".join(
                f"{name}: {check.get('reason', 'failing')}"
                for name, check in checks.items()
                if not check.get("ok")
            )
    return response.status_code, reason
