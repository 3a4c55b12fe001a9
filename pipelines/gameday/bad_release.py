"""Bad releases for game days: the current commit with one file changed, committed as a
commit object of its own (a temporary index, `git commit-tree`: no branch, no working tree
touched), built as a release like any other, and rolled out. The environment must refuse it
by itself: the rollout's circuit breaker, or the deploy's canary and bake (`bad_deploy.py`),
not a person."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.releases import ROOT
from pipelines.targets.base import Environment, Target, TargetError


@dataclass(frozen=True)
class BadRelease:
    path: str
    edit: Callable[[str], str]
    message: str


KINDS = {
    "bad-release-unready": BadRelease(
        "service/migrate.py",
        lambda text: text.replace("    return str(heads[0])", '    return "ffffffffffff"'),
        "game day: a release that expects a migration that does not exist (never ready)",
    ),
    # Ready like any good release, then every order fails with a 500 before it writes
    # anything: nothing acknowledged can be lost, and the error rate is the only symptom.
    "bad-release-errors": BadRelease(
        "service/api/orders.py",
        lambda text: text.replace(
            "    placed = await place_order(",
            '    raise RuntimeError("game day: this release fails every order")\n'
            "    placed = await place_order(",
            1,
        ),
        "game day: a release that turns ready, then fails every order with a 500",
    ),
}
# Deployed through deploy steps 6 and 7 (bad_deploy.py), not rolled out directly.
DEPLOYED = ("bad-release-errors",)


def _git(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if done.returncode != 0:
        raise TargetError(f"git {' '.join(args[:2])} failed in {ROOT}: {done.stderr.strip()}")
    return done.stdout.strip()


def commit(bad: BadRelease) -> str:
    """HEAD with `bad.edit` applied to `bad.path`, as a new commit object; returns its sha."""
    original = _git("show", f"HEAD:{bad.path}")
    changed = bad.edit(original + "\n")
    if changed == original + "\n":
        raise TargetError(f"the bad-release edit no longer applies to {bad.path}")
    with tempfile.TemporaryDirectory(prefix="gameday-index-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git("read-tree", "HEAD", env=index)
        blob = _git("hash-object", "-w", "--stdin", stdin=changed)
        _git("update-index", "--cacheinfo", f"100644,{blob},{bad.path}", env=index)
        tree = _git("write-tree", env=index)
    identity = {
        "GIT_AUTHOR_NAME": "drydock gameday",
        "GIT_AUTHOR_EMAIL": "gameday@localhost",
        "GIT_COMMITTER_NAME": "drydock gameday",
        "GIT_COMMITTER_EMAIL": "gameday@localhost",
    }
    return _git("commit-tree", tree, "-p", "HEAD", "-m", bad.message, env=identity)


def roll_out(env: Environment, target: Target, kind: str, step: dict[str, object]) -> str:
    """Roll the bad release out; `step` gets when the rollout failed, or the problem if it
    did not."""
    sha = commit(KINDS[kind])
    release = target.release(sha, sha)
    result = env.rollout(release, 30.0)
    if result.ok:
        step["problem"] = f"{release.id} was rolled out although it never turns ready"
        return f"rolled out {release.id}: completed"
    step["failed_at"], step["error"] = time.time(), result.reason
    return f"rolled out {release.id}: {result.state.value}: {result.reason}"
