"""Security events (runbook sections 4 and 5): one structured log record and one count each.

Each event is logged on `drydock.security` with the fields `security_event` (its name) and
`user_id`, never an email in clear: an account without a user id (an unknown email) is
named by `email_hash`. Each is counted in `drydock_security_events_total{event=...}`, which
every app's metrics registry exposes (service/metrics.py), so alarms can watch for spikes of
lockouts or refresh-token reuse.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("drydock.security")

# Signals of an attack in progress are warnings; the rest is the audit trail.
WARNING_EVENTS = frozenset({"account_locked", "login_throttled", "refresh_reused"})
EVENTS = WARNING_EVENTS | {
    "login_succeeded",
    "login_failed",
    "access_denied",
    "password_changed",
    "session_ended",
    "sessions_revoked",
    "key_rotated",
}

# Not in any registry of its own: each app's registry registers it (one process, one count).
SECURITY_EVENTS = Counter(
    "drydock_security_events",
    "Security events by name (failed logins, lockouts, refresh-token reuse, ...)",
    ["event"],
    registry=None,
)
for _name in sorted(EVENTS):  # every series exists from the start, at zero
    SECURITY_EVENTS.labels(_name)


def email_hash(email: str) -> str:
    """Names an account in logs without its address: the first 16 hex digits of the
    SHA-256 of the normalised email."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def security_event(name: str, *, user_id: int | None, **fields: Any) -> None:
    """Log and count one security event. `fields` add context (never a password, a token
    or an email in clear)."""
    if name not in EVENTS:
        # The name is a metric label: an unknown one would be a new series per typo.
        raise ValueError(f"unknown security event {name!r}; known: {', '.join(sorted(EVENTS))}")
    level = logging.WARNING if name in WARNING_EVENTS else logging.INFO
    log.log(
        level,
        "security event %s",
        name,
        extra={"security_event": name, "user_id": user_id, **fields},
    )
    SECURITY_EVENTS.labels(name).inc()
