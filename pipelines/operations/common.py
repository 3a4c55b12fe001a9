"""What the on-call operations share: which target they act on, and how a task answers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

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
