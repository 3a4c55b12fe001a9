"""What the on-call operations share: which target they act on, and how a task answers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipelines.lock import LeaseLost, LockHeld
from pipelines.targets import get_target
from pipelines.targets.base import Target, TargetError


def resolve_target(target: str | Target) -> Target:
    """A target by name (`local`, `aws`), or one already built (tests hand in theirs)."""
    return get_target(target) if isinstance(target, str) else target


def answer(call: Callable[..., str], *args: Any) -> int:
    """Run an operation and print its answer; a TargetError is one line and exit 1."""
    try:
        print(call(*args))
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def held(target: Target, env: str, purpose: str) -> Iterator[None]:
    """The environment's lock, the one deploys take: a rollback or a flag change never
    replaces a rollout in progress, nor one another. A lock lost while the operation ran
    is said, since another run may have changed the environment meanwhile."""
    try:
        with target.lock(env, purpose) as holding:
            yield
            holding.check()
    except LeaseLost as exc:
        raise TargetError(
            f"{env}: {exc}. The operation itself ran; check what {env} runs now before "
            "changing it again"
        ) from None
    except LockHeld as exc:
        raise TargetError(
            f"{env} is busy: {exc}. Wait for it to finish (a lock whose process is gone is "
            "broken by the next run); nothing was changed"
        ) from None
