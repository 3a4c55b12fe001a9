"""A pytest run inside a test: the plugins it names and nothing else, and no coverage.

Left to inherit the outer run's environment, the inner run would load every installed plugin
(hypothesis and schemathesis alone take a second and a half per process) and trace itself
for coverage that nobody reports. That made the few tests that run pytest the slowest of
the suite.
"""

from __future__ import annotations

import os
import sys

from tests.unmeasured import COVERAGE_ENV

PLUGINS = ("xdist.plugin", "pytest_timeout")


def argv(*args: str, plugins: tuple[str, ...] = ()) -> tuple[str, ...]:
    named = [arg for plugin in (*PLUGINS, *plugins) for arg in ("-p", plugin)]
    return (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *named, *args)


def environ(**extra: str) -> dict[str, str]:
    """The whole environment for the inner run. Coverage's variables are emptied rather than
    removed, so the result also works as overrides merged over os.environ (a Gate's env):
    an empty one makes coverage's startup hook do nothing."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for key in os.environ:
        if key.startswith(COVERAGE_ENV):
            env[key] = ""
    env.update(extra)
    return env
