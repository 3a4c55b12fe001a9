"""Rotating the JWT signing key, the same on every target (runbook section 12).

- **Routine** (the default): the new key signs from now on; the old one stays as the
  previous key, verifying access tokens until its cutoff, one access-token lifetime after
  the rotation. After the cutoff the service refuses its tokens even if they have not
  expired, replicas started after it never load the key, and the next rotation drops it.
  A second routine rotation before the cutoff is refused: it would drop a key whose tokens
  are still live.
- **Compromise** (`--compromised`): no previous key is kept. Every access token signed with
  an older key is refused as soon as the service runs on the new keys; every session logs
  in again.

Either way every refresh token is refused afterwards, because refresh tokens verify against
the current key only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from pipelines.targets.base import TargetError

ROUTINE = "routine"
COMPROMISE = "compromise"


def access_lifetime_s() -> int:
    """The access-token lifetime the service runs with; neither target overrides it."""
    from service.settings import Settings

    default = Settings.model_fields["access_token_ttl_s"].default
    return int(default)


def cutoff_after(rotated_at: datetime) -> datetime:
    return rotated_at + timedelta(seconds=access_lifetime_s())


def iso(instant: datetime | float) -> str:
    if not isinstance(instant, datetime):
        instant = datetime.fromtimestamp(instant, UTC)
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def refuse_inside_cutoff(env: str, previous_kid: str, cutoff: datetime, now: datetime) -> None:
    """A routine rotation while the previous key still verifies tokens would drop it early."""
    if now < cutoff:
        wait = math.ceil((cutoff - now).total_seconds())
        raise TargetError(
            f"{env}: the previous signing key ({previous_kid}) still verifies access tokens "
            f"until {iso(cutoff)} ({wait} s from now); a routine rotation now would drop it "
            f"while tokens it signed are live. Rotate again after {iso(cutoff)}, or, if a key "
            f"may have leaked, rotate with --compromised to drop every older key at once "
            f"(every session logs in again); nothing was changed"
        )


@dataclass(frozen=True)
class Keyring:
    """The signing keys as the AWS secret holds them, one JSON object (the service reads
    it whole as JWT_KEYS)."""

    kid: str
    secret: str
    previous_kid: str = ""
    previous_secret: str = ""
    previous_not_after: str = ""  # ISO instant

    @classmethod
    def parse(cls, text: str, where: str) -> Keyring:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError
            keyring = cls(**{k: str(v) for k, v in data.items() if v is not None})
        except (ValueError, TypeError):
            raise TargetError(
                f"{where} is not a signing-key JSON object with kid and secret (and optionally "
                "previous_kid, previous_secret, previous_not_after); restore its previous "
                "version in Secrets Manager"
            ) from None
        if not keyring.kid or not keyring.secret:
            raise TargetError(f"{where} has an empty kid or secret; restore its previous version")
        try:
            keyring.cutoff  # noqa: B018 - a bad instant must fail here, not mid-rotation
        except ValueError:
            raise TargetError(
                f"{where}: previous_not_after is not an ISO instant; restore its previous "
                "version in Secrets Manager"
            ) from None
        return keyring

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @property
    def cutoff(self) -> datetime | None:
        if not self.previous_kid:
            return None
        if not self.previous_not_after:
            return datetime.min.replace(tzinfo=UTC)  # a previous key with no cutoff: none
        return datetime.fromisoformat(self.previous_not_after.replace("Z", "+00:00"))

    def rotated(
        self, env: str, new_kid: str, new_secret: str, compromised: bool, now: datetime
    ) -> tuple[Keyring, tuple[str, ...]]:
        """The keyring after a rotation, and the kids it no longer honours."""
        cutoff = self.cutoff
        if not compromised and cutoff is not None:
            refuse_inside_cutoff(env, self.previous_kid, cutoff, now)
        dropped = tuple(k for k in (self.previous_kid,) if k)
        if compromised:
            return Keyring(new_kid, new_secret), (*dropped, self.kid)
        return (
            replace(
                self,
                kid=new_kid,
                secret=new_secret,
                previous_kid=self.kid,
                previous_secret=self.secret,
                previous_not_after=iso(cutoff_after(now)),
            ),
            dropped,
        )
