"""The agent as a process: found by its pid file and command line, started detached so it
outlives the shell that started it, stopped with SIGTERM (its replicas keep running).

The process runs `python -m pipelines.targets.local.agent_main` (see there).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipelines.targets.base import TargetError
from pipelines.targets.local.layout import EnvLayout, read_json

AGENT_START_TIMEOUT_S = 20.0


def running_pid(layout: EnvLayout) -> int | None:
    """The live agent's pid; a pid file left by a crash or reboot is removed."""
    try:
        pid = int(layout.agent_pid.read_text())
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        alive = b"pipelines.targets.local.agent" in cmdline.read_bytes()
    except OSError:
        alive = False
    if not alive:
        layout.agent_pid.unlink(missing_ok=True)  # stale: left by a crash or reboot
        return None
    return pid


def ensure(layout: EnvLayout, name: str) -> int:
    """Start the agent unless it runs; wait until it reports."""
    pid = running_pid(layout)
    if pid is not None:
        return pid
    log = layout.logs / "agent.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.targets.local.agent_main",
                "--env",
                name,
                "--state-dir",
                str(layout.root.parent),
            ],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[3],
        )
    finally:
        os.close(fd)
    deadline = time.time() + AGENT_START_TIMEOUT_S
    while time.time() < deadline:
        observed = read_json(layout.observed) or {}
        if observed.get("agent_pid") == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            raise TargetError(f"{name}: the agent exited at start; see {log}")
        time.sleep(0.05)
    raise TargetError(
        f"{name}: the agent did not report within {AGENT_START_TIMEOUT_S:g} s; see {log}"
    )


def stop(layout: EnvLayout) -> None:
    pid = running_pid(layout)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if running_pid(layout) is None:
            return
        time.sleep(0.05)


def hold_lock(layout: EnvLayout) -> int:
    """One agent per environment: the lock dies with the process, so it is never stale."""
    fd = os.open(layout.agent / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"another agent already runs for {layout.root}") from None
    layout.agent_pid.write_text(str(os.getpid()))
    return fd
