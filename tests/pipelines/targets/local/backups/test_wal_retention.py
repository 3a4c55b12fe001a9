"""Retention never breaks a point-in-time chain: a base backup that alone reaches some
stretch of the window is kept (with the reason), the oldest may go (the window then starts
later), and WAL goes only from before the oldest base backup kept."""

from __future__ import annotations

import pytest

from pipelines.targets.local.backups.retention import PruneDecision
from pipelines.targets.local.backups.wal_retention import guard_chain
from pipelines.targets.local.backups.window import Stretch, Window

pytestmark = [pytest.mark.unit]


class Snap:
    def __init__(self, name: str) -> None:
        self.id = name


def window(*spans: tuple[str, float, float]) -> Window:
    stretches = [Stretch(name, start, end, 0, 0) for name, start, end in spans]
    return Window("staging", "/nonexistent", stretches, [], 16 << 20, 1)


def decide(window: Window, deleting: set[str]) -> dict[str, tuple[bool, str]]:
    decisions = [
        PruneDecision(Snap(s.backup_id), s.backup_id not in deleting, "expired")  # type: ignore[arg-type]
        for s in window.stretches
    ]
    return {d.snapshot.id: (d.keep, d.reason) for d in guard_chain(window, decisions)}


def test_the_oldest_base_backup_may_go_the_window_then_starts_later() -> None:
    found = decide(window(("a", 0, 100), ("b", 50, 100)), {"a"})
    assert found["a"] == (False, "expired")


def test_a_base_backup_another_one_covers_may_go() -> None:
    found = decide(window(("a", 0, 100), ("b", 30, 100), ("c", 60, 100)), {"b"})
    assert found["b"] == (False, "expired")


def test_the_only_base_backup_after_a_wal_gap_is_kept_and_says_why() -> None:
    # WAL is missing between 40 and 60: only b reaches the moments after the gap.
    keep, reason = decide(window(("a", 0, 40), ("b", 60, 100)), {"b"})["b"]
    assert keep is True
    assert reason.startswith("refused:") and "gap" in reason and "expired" in reason


def test_deleting_the_first_backup_after_a_gap_is_refused_even_with_a_later_one() -> None:
    # c covers from 80 on, but only b reaches 60..80.
    spans = (("a", 0, 40), ("b", 60, 100), ("c", 80, 100))
    keep, reason = decide(window(*spans), {"b"})["b"]
    assert keep is True and "gap" in reason
    assert decide(window(*spans), {"a"})["a"][0] is False
