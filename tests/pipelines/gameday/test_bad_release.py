"""The bad release is a real commit of this repository with one change, made without
touching a branch, the index or the working tree."""

from __future__ import annotations

import subprocess

import pytest

from pipelines.gameday import bad_release
from pipelines.releases import ROOT

pytestmark = pytest.mark.integration


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def test_the_unready_release_commit_changes_one_line_and_nothing_else() -> None:
    head, status = git("rev-parse", "HEAD").strip(), git("status", "--porcelain")
    sha = bad_release.commit(bad_release.KINDS["bad-release-unready"])
    assert git("rev-parse", f"{sha}^").strip() == head
    assert git("diff", "--numstat", head, sha).split() == ["1", "1", "service/migrate.py"]
    assert 'return "ffffffffffff"' in git("show", f"{sha}:service/migrate.py")
    assert git("rev-parse", "HEAD").strip() == head  # no branch moved
    assert git("status", "--porcelain") == status  # index and working tree untouched


def test_the_erroring_release_fails_orders_before_it_writes_anything() -> None:
    head = git("rev-parse", "HEAD").strip()
    sha = bad_release.commit(bad_release.KINDS["bad-release-errors"])
    assert git("diff", "--numstat", head, sha).split() == ["1", "0", "service/api/orders.py"]
    changed = git("show", f"{sha}:service/api/orders.py")
    # The raise comes before the order is placed: a failed order was never written.
    assert changed.index("raise RuntimeError(") < changed.index("await place_order(")
    assert "bad-release-errors" in bad_release.DEPLOYED
