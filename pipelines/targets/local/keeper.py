"""The agent keeps the load balancer up, as a service manager would: a Caddy that died
(a crash, an OOM kill, kill -9) is started again on the agent's next tick, with a growing
pause when it keeps dying. The replicas keep running meanwhile; only the front door was gone.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Protocol

log = logging.getLogger("drydock.agent")

# "0" turns the restart off. Only for proving that the game day notices a system without it
# (the lb-crash scenario must fail): never set it on an environment people use.
RESTART_ENV = "DRYDOCK_AGENT_RESTARTS_LB"
MAX_BACKOFF_S = 30.0


class Restartable(Protocol):
    def is_running(self) -> bool: ...

    def start(self, timeout: float = 10.0) -> bool: ...


class LoadBalancerKeeper:
    def __init__(self, lb: Restartable, enabled: bool | None = None) -> None:
        self.lb = lb
        self.enabled = os.environ.get(RESTART_ENV, "1") != "0" if enabled is None else enabled
        self.failures = 0
        self.not_before = 0.0
        self.restarts = 0

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not self.enabled or now < self.not_before or self.lb.is_running():
            if self.enabled and now >= self.not_before:
                self.failures = 0
            return
        log.warning("load balancer is down; starting caddy again")
        try:
            self.lb.start()
        except Exception as exc:  # keep ticking: the replicas and alarms still need the agent
            self.failures += 1
            self.not_before = now + min(MAX_BACKOFF_S, 2.0**self.failures)
            log.error("caddy did not start (%s); next try in %.0f s", exc, self.not_before - now)
            return
        self.restarts += 1
        log.info("load balancer restarted", extra={"restarts": self.restarts})
