"""Security events (ASVS 7.2.1): one structured log record and one counted series each.

`security_event(name, user_id=..., **fields)` logs on logger `drydock.security` with the
extra fields `security_event` and `user_id`, and adds one to
`drydock_security_events_total{event="<name>"}`. Both sides are read by alarms: the local
monitor scrapes the counter, CloudWatch metric filters match `$.security_event` in the log.
An account is named by its user id; where there is none, by `email_hash`, never the address.
"""

from __future__ import annotations

import hashlib
import logging

from prometheus_client import Counter

# Warnings are what an operator should look at; the rest is the audit trail.
WARNING_EVENTS = frozenset({"account_locked", "login_throttled", "refresh_reused"})
EVENTS = WARNING_EVENTS | {
    "login_failed",
    "password_changed",
    "session_ended",
    "sessions_revoked",
    "key_rotated",
}

log = logging.getLogger("drydock.security")

# Process-wide, registered into each app's registry (service/metrics.py). Not in the default
# registry: several apps share one process in the tests, and one replica is one process.
SECURITY_EVENTS = Counter(
    "drydock_security_events",
    "Security events by name (see service/security/events.py)",
    ["event"],
    registry=None,
)
for _name in sorted(EVENTS):
    SECURITY_EVENTS.labels(_name)  # every series exists from the start, at 0


def email_hash(email: str) -> str:
    """How an account is named in a security event when its user id is not known."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def security_event(name: str, *, user_id: int | None, **fields: object) -> None:
    """Log and count one security event. `name` must be one of EVENTS: each name is a label
    value of the counter, so an open set would let the series grow without bound."""
    if name not in EVENTS:
        raise ValueError(f"unknown security event {name!r}; known: {', '.join(sorted(EVENTS))}")
    level = logging.WARNING if name in WARNING_EVENTS else logging.INFO
    log.log(
        level, name.replace("_", " "), extra={**fields, "security_event": name, "user_id": user_id}
    )
    SECURITY_EVENTS.labels(name).inc()
