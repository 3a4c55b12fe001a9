"""Which tests share a pytest-xdist worker in a run with the end-to-end tests.

Such a run spreads the tests by group (`--dist loadgroup`, pipelines/deploy/gates/commands.py)
instead of by chunks of the collection, which sent all the end-to-end tests to one worker:
about 600 s there, more than half the serial run, however fast the others went. A worker
more than the cores (commands.workers_for_cores) then runs the rest beside the two groups.

- every test on the session's shared environments (`local_scratch`) runs on one worker, so
  those environments are built once, and the deploy and canary tests follow each other;
- the other end-to-end tests, which build environments of their own (game days, schema
  changes), run one after another, and start on another worker;
- every other test runs on the worker its file went to, so a module fixture (a PostgreSQL
  cluster, a scan run once) is built once.

xdist's own loadgroup reads the group from a suffix it appends to each test's id, which
pytest 9.2's structured ids no longer take (pytest-dev/pytest-xdist#1386): every test then
becomes its own group. Here the workers write each test's group to a file instead, and the
controller's scheduler reads it, through xdist's public scheduler hook.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests.unmeasured import SHARED_ENVIRONMENTS, relative_path

SHARED = "shared-environments"
OWN = "own-environments"
GROUPS_ENV = "DRYDOCK_TEST_GROUPS"  # the file the workers write and the controller reads


def group_of(item: pytest.Item) -> str:
    if SHARED_ENVIRONMENTS in getattr(item, "fixturenames", ()):
        return SHARED
    if item.get_closest_marker("e2e") is not None:
        return OWN
    return relative_path(item)


class Groups:
    """Each test's group as the workers wrote it; a test missing from the file (none is, but
    for a worker that died collecting) is a group of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_test: dict[str, str] | None = None

    def of(self, nodeid: str) -> str:
        if self.by_test is None:  # first asked once every worker has collected
            try:
                self.by_test = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.by_test = {}
        return self.by_test.get(nodeid, nodeid)


class GroupScheduling(LoadScopeScheduling):
    """xdist's scheduling by scope, each scope being one group of tests."""

    def __init__(self, config: pytest.Config, log: Any, groups: Groups) -> None:
        super().__init__(config, log)
        self.groups = groups

    def _split_scope(self, nodeid: str) -> str:
        return self.groups.of(nodeid)


def _by_group(config: pytest.Config) -> bool:
    return config.getvalue("dist") == "loadgroup"


def pytest_configure(config: pytest.Config) -> None:
    if _by_group(config) and not hasattr(config, "workerinput"):
        handle, path = tempfile.mkstemp(prefix="drydock-test-groups-", suffix=".json")
        os.close(handle)
        os.environ[GROUPS_ENV] = path  # the workers start after this, with this environment


def pytest_unconfigure(config: pytest.Config) -> None:
    if _by_group(config) and not hasattr(config, "workerinput"):
        path = os.environ.pop(GROUPS_ENV, None)
        if path:
            Path(path).unlink(missing_ok=True)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own loadgroup
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> GroupScheduling | None:
    path = os.environ.get(GROUPS_ENV)
    return GroupScheduling(config, log, Groups(Path(path))) if _by_group(config) and path else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get(GROUPS_ENV)
    # On a worker `dist` reads "no"; xdist leaves `loadgroup` set there (xdist/remote.py).
    if not path or not getattr(config.option, "loadgroup", False):
        return
    written = Path(path).with_name(f"{Path(path).name}.{os.getpid()}")
    written.write_text(json.dumps({item.nodeid: group_of(item) for item in items}))
    os.replace(written, path)  # every worker writes the same groups: the last one stays
