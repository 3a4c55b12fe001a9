"""The agent process: `python -m pipelines.targets.local.agent_main --env E --state-dir D`.

Its main loop keeps the load balancer up (keeper.py), and runs the scheduler tick (agent.py),
the alarm monitor (monitor.py) and the WAL archive's receiver (backups/receiver.py), every
0.25 s. It is the one module of the local target that builds an environment for itself, so
it sits above environment.py; agent_process.py (start, find, stop) sits below it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from pipelines.targets.local.agent_process import hold_lock
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.keeper import LoadBalancerKeeper

log = logging.getLogger("drydock.agent")
TICK_S = 0.25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.targets.local.agent_main")
    parser.add_argument("--env", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    from service.logs import configure_logging

    configure_logging("INFO")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # probes would flood the log
    environment = LocalEnvironment(args.env, state_dir=args.state_dir)
    lock = hold_lock(environment.layout)
    agent = environment.make_agent()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("agent started", extra={"env": args.env, "pid": os.getpid()})
    monitor = environment.make_monitor()
    archiver = environment.make_archiver()
    keeper = LoadBalancerKeeper(environment.load_balancer())
    parts = {"keeper": keeper, "scheduler": agent, "monitor": monitor, "archiver": archiver}
    while not stopping:
        started = time.monotonic()
        for name, part in parts.items():
            try:
                part.tick()
            except Exception:  # one part's bad tick must not stop the others, or the agent
                log.exception("agent tick failed", extra={"part": name})
        time.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
    log.info("agent stopping; replicas keep running")
    with contextlib.suppress(OSError):
        environment.layout.agent_pid.unlink()
    os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
