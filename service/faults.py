"""Deliberate failures, switched on by flag, so the deploy pipeline's verify step can be
shown to catch a bad release.

Deterministic rather than random: one attempt in every `period` fails, starting with the
first, so a single smoke order already sees a failure and any 20 consecutive attempts see
exactly one (a 5 % error rate).
"""

from __future__ import annotations

import itertools


class FaultInjector:
    def __init__(self, period: int = 20) -> None:
        if period < 1:
            raise ValueError("period must be at least 1")
        self.period = period
        self._attempts = itertools.count()

    def should_fail(self) -> bool:
        return next(self._attempts) % self.period == 0
