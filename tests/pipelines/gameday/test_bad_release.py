"""The bad release is a real commit of this repository with one change, made without
touching a branch, the index or the working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


def test_a_bad_deploy_onto_an_environment_with_no_release_is_refused_before_anything(
    tmp_path: Path,
) -> None:
    """Nothing to roll back to: the fault is not made (the game day reports it could not
    be), no commit is built, nothing is written."""
    from pipelines.gameday import bad_deploy
    from pipelines.targets.base import TargetError
    from pipelines.targets.local.target import LocalTarget

    target = LocalTarget(tmp_path / "state")
    step: dict[str, object] = {}
    with pytest.raises(TargetError, match="runs no release yet: nothing to roll back to"):
        bad_deploy.deploy(
            target.environment("production"), target, "bad-release-errors", tmp_path, step
        )
    assert step == {} and not list(tmp_path.glob("*bad-release-errors*"))
