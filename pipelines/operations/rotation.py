"""`invoke secrets.rotate` (runbook section 12): a secret rotated on either target under the
environment's lock, recorded in the ledger (so `incident.timeline` shows it) and logged as a
`key_rotated` security event on the `drydock.security` logger."""

from __future__ import annotations

import logging
import sys

from pipelines.ledger import Ledger
from pipelines.operations.common import held, resolve_target
from pipelines.targets.base import RotationOutcome, Target, TargetError
from pipelines.targets.signing_keys import COMPROMISE, ROUTINE

SECURITY_LOG = logging.getLogger("drydock.security")
LEDGER_KIND = "secret-rotated"


def rotate(
    env: str,
    name: str,
    compromised: bool = False,
    ledger: Ledger | None = None,
    target: str | Target = "local",
) -> str:
    """Rotate, record, and say what was done and what the operator must do next. A
    rotation whose roll-out failed is recorded too, then raised with the way out."""
    chosen = resolve_target(target)
    environment = chosen.environment(env)
    book = ledger or chosen.ledger()  # found before anything changes: the change is recorded
    mode = COMPROMISE if compromised else ROUTINE
    with held(chosen, env, f"secrets.rotate {env} {name} ({mode})"):
        outcome = environment.operations.rotate_secret(name, compromised)
    record(book, outcome)
    report = render(outcome)
    if not outcome.ok:
        raise TargetError(report)
    return report


def record(book: Ledger, outcome: RotationOutcome) -> None:
    facts = {
        "secret": outcome.secret,
        "mode": outcome.mode,
        "version": outcome.version,
        "kid": outcome.kid,
        "previous_kid": outcome.previous_kid,
        "previous_not_after": outcome.previous_not_after,
        "dropped": list(outcome.dropped),
    }
    book.append(LEDGER_KIND, outcome.environment, ok=outcome.ok, reason=outcome.reason, **facts)
    # A compromise is an incident; a routine rotation is housekeeping.
    level = logging.WARNING if outcome.mode == COMPROMISE else logging.INFO
    SECURITY_LOG.log(
        level,
        "%s: %s rotated (%s)",
        outcome.environment,
        outcome.secret,
        outcome.mode,
        extra={
            "security_event": "key_rotated",
            "user_id": None,
            "environment": outcome.environment,
            **facts,
        },
    )


def render(outcome: RotationOutcome) -> str:
    lines = [f"{outcome.environment}: {outcome.secret} rotated ({outcome.mode})"]
    lines += [f"  done: {line}" for line in outcome.done]
    lines += [f"  next: {line}" for line in outcome.next_steps]
    return "\n".join(lines)


def rotate_command(env: str, name: str, compromised: bool, target: str) -> int:
    try:
        print(rotate(env, name, compromised, target=target))
    except TargetError as exc:
        print(f"secrets.rotate: {exc}", file=sys.stderr)
        return 1
    return 0
