"""`invoke secrets.rotate` on the local target (runbook section 12): a new value in the
store, the database told where it must be, and a rolling restart of the replicas onto it.

The signing key follows `targets/signing_keys.py` (routine or compromise). For the other
secrets nothing verifies against an older value once the replicas rolled (the database role
has the new password, the monitor reads the new token), so their previous version is kept
as history only, and a compromise rotation keeps none.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipelines.targets.base import RotationOutcome
from pipelines.targets.local.runtime import NAMES, previous_key_cutoff, signing_kid
from pipelines.targets.signing_keys import (
    COMPROMISE,
    ROUTINE,
    access_lifetime_s,
    cutoff_after,
    iso,
    refuse_inside_cutoff,
)

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv
    from pipelines.targets.local.secrets import SecretVersion


def rotate(env: LocalEnv, secret: str, compromised: bool) -> RotationOutcome:
    store = env.secrets
    signing = secret == NAMES.jwt
    now = datetime.now(UTC)
    before = store.describe(secret)

    def named(version: SecretVersion) -> str:
        if signing:
            return signing_kid(env.name, version.id)
        return f"version {version.number} ({version.id})"

    done: list[str] = []
    dropped: list[str] = []
    if compromised:
        dropped = [named(version) for version in before.versions]
    elif before.previous is not None:
        past = ""
        if signing:
            cutoff = previous_key_cutoff(before)
            assert cutoff is not None  # there is a previous version
            refuse_inside_cutoff(env.name, named(before.previous), cutoff, now)
            past = f", past its cutoff {iso(cutoff)}"
        store.retire(secret)
        dropped.append(named(before.previous))
        done.append(f"dropped the previous {secret} {named(before.previous)}{past}")
    cutoff_new = cutoff_after(now) if signing and not compromised else None
    version = store.rotate(
        secret,
        lambda: secrets.token_urlsafe(48),
        previous_not_after=cutoff_new,
        drop_previous=compromised,
    )
    current = named(version)
    done.append(f"{secret} is now {current}")
    # The store has changed: from here a failure is reported with what to do, never raised
    # past the ledger and the security log.
    try:
        if signing:
            done += _signing_key_lines(env, named(before.current), cutoff_new, dropped, compromised)
        elif compromised:
            done.append(f"dropped {', '.join(dropped)} from the store")
        if secret == NAMES.app:
            env.database.ensure_roles()
            done.append("set the app role's database password to the new value")
        rolled = env.restart()
        ok, reason = rolled.ok, rolled.reason
        if rolled.ok:
            done.append(f"rolled the replicas onto it in {rolled.duration_s:.1f} s")
    except Exception as exc:  # reported in the outcome, with the way out
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    return RotationOutcome(
        environment=env.name,
        secret=secret,
        mode=COMPROMISE if compromised else ROUTINE,
        version=version.id,
        kid=current if signing else None,
        previous_kid=named(before.current) if cutoff_new else None,
        previous_not_after=cutoff_new.timestamp() if cutoff_new else None,
        dropped=tuple(dropped),
        done=tuple(done),
        next_steps=_next_steps(env.name, ok, reason, cutoff_new, compromised),
        ok=ok,
        reason=reason,
    )


def _signing_key_lines(
    env: LocalEnv, old: str, cutoff: datetime | None, dropped: list[str], compromised: bool
) -> list[str]:
    revoked = env.database.revoke_refresh_tokens()
    if compromised:
        return [
            f"dropped {', '.join(dropped)}: the access tokens they signed are refused by every "
            "replica on the new keys",
            f"revoked {revoked} refresh tokens: every session logs in again now",
        ]
    assert cutoff is not None
    return [
        f"kept {old} verifying access tokens until {iso(cutoff)} (one access-token lifetime, "
        f"{access_lifetime_s()} s); after that its tokens are refused even if unexpired",
        f"revoked {revoked} refresh tokens: each session logs in again when its access token ends",
    ]


def _next_steps(
    env: str, ok: bool, reason: str, cutoff: datetime | None, compromised: bool
) -> tuple[str, ...]:
    if not ok:
        kept = ", the dropped key included" if compromised else ""
        return (
            f"the replicas were not rolled onto the new value ({reason}): the old ones keep "
            f"serving with what they started with{kept}. Read `invoke env.logs --env {env}`, "
            "fix the cause, then roll them with a deploy (`invoke deploy`)",
        )
    if compromised:
        return (
            "nothing to roll: no replica holds an older value. Find out how it leaked before "
            f"trusting the environment again (`invoke incident.timeline --env {env} --since "
            "24h`, runbook section 8)",
        )
    if cutoff is not None:
        return (
            f"nothing now. Rotate the signing key again only after {iso(cutoff)}, which also "
            "drops the previous key from the store; replicas started after then never load "
            "it. If it may have leaked, rotate with --compromised now",
        )
    return ("nothing: every replica runs with the new value",)
