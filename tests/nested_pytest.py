"""A pytest run inside a test: the plugins it names and nothing else, and no coverage.

Left to inherit the outer run's environment, the inner run would load every installed plugin
(hypothesis and schemathesis alone take a second and a half per process) and trace itself
for coverage that nobody reports. That made the few tests that run pytest the slowest of
the suite.
"""

from __future__ import annotations

import os
import sys

from pipelines.deploy.gates.commands import PROGRESS_ENV, STACKS_ENV
from tests.unmeasured import COVERAGE_ENV
from tests.worker_groups import GROUPS_ENV

PLUGINS = ("xdist.plugin", "pytest_timeout")
# The outer run's: its files, which an inner run that inherited them would write its own
# progress, groups or stacks into, and its worker's name, which would make the inner
# run's controller look like a worker.
OUTER_RUN = (
    PROGRESS_ENV,
    STACKS_ENV,
    GROUPS_ENV,
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
)


def argv(*args: str, plugins: tuple[str, ...] = ()) -> tuple[str, ...]:
    named = [arg for plugin in (*PLUGINS, *plugins) for arg in ("-p", plugin)]
    return (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *named, *args)


def environ(**extra: str) -> dict[str, str]:
    """The whole environment for the inner run. Coverage's variables are emptied rather than
    removed, so the result also works as overrides merged over os.environ (a Gate's env):
    an empty one makes coverage's startup hook do nothing, and the outer run's files unset."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for key in os.environ:
        if key.startswith(COVERAGE_ENV) or key in OUTER_RUN:
            env[key] = ""
    env.update(extra)
    return env
