"""Per-process application state, shared by the edge middleware and the routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.db import Database
from service.faults import FaultInjector
from service.metrics import Metrics
from service.security.breached import BreachedPasswords
from service.security.ratelimit import RateLimiter
from service.security.tokens import TokenService
from service.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    metrics: Metrics
    tokens: TokenService
    limiter: RateLimiter
    draining: bool = False
    order_faults: FaultInjector = field(default_factory=FaultInjector)
    started_at: float = field(default_factory=time.time)
    breached: BreachedPasswords | None = None  # BREACHED_PASSWORDS_FILE, when set
