"""Tests that never run the service's code in their own process are not traced for coverage.

Coverage measures `service/` only, but its tracer still fires on every Python call in the
test process. For the Pulumi programs under mocks, moto and the pure-Python gate checks that
cost them 30 to 45 % more CPU, on the same two cores as the rest of the suite, and measured
nothing. pytest-cov's `no_cover` marker pauses the tracer for a test's call only; here it
is paused for setup and teardown too, since module fixtures (a stack built once, a scan run
once) are where these tests spend their time. Servers the tests start are measured as
before: they inherit coverage through the environment, not through this tracer.

The end-to-end tests are the exception: the processes they start (replicas, agents,
migrations, one-offs) run without coverage too. They run whole environments under load to
prove the pipeline, they measured nothing the rest of the suite does not (docs/BENCHMARKS.md),
and tracing them took a ninth of their CPU on two cores shared with the rest of the suite.
Not the tests on the session's shared environments (tests/conftest.py): an agent started
unmeasured there would start the replicas of every later test on them unmeasured too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Places whose tests start their processes without coverage's variables, so none of them is
# measured. Coverage starts in a Python process only when it finds these in its environment.
UNMEASURED_PROCESSES = ("tests/e2e/",)
COVERAGE_ENV = ("COVERAGE_PROCESS_", "COV_CORE_")
SHARED_ENVIRONMENTS = "local_scratch"  # the session fixture behind local_staging/_production

# Whole directories and files whose tests reach `service/` only through another process (or
# not at all). A file here that starts calling the service in-process loses its coverage
# silently, so each entry is a place that is, by design, about something else.
UNMEASURED = (
    "tests/infra/",
    *UNMEASURED_PROCESSES,
    "tests/host/",
    "tests/pipelines/host/",
    "tests/pipelines/test_architecture.py",
    "tests/pipelines/test_workflows.py",
    "tests/pipelines/test_lock.py",
    "tests/pipelines/deploy/test_gate_commands.py",
    "tests/pipelines/deploy/test_gate_inputs.py",
    "tests/pipelines/deploy/test_gate_progress.py",
    "tests/pipelines/deploy/test_gates.py",
    "tests/pipelines/deploy/test_gate_record.py",
    "tests/pipelines/deploy/test_worker_groups.py",
    "tests/pipelines/deploy/test_infra_plan.py",
    "tests/pipelines/deploy/test_infra_scan.py",
    "tests/pipelines/deploy/test_infra_scan_stacks.py",
    "tests/pipelines/deploy/test_security.py",
    "tests/pipelines/deploy/test_security_infra.py",
    "tests/pipelines/deploy/test_provenance.py",
    "tests/pipelines/deploy/test_runner.py",
    # The AWS target under moto and Stubber, where it never reaches the service's code (the
    # migrate task, the flags and the admin's password hash are measured where they are).
    "tests/pipelines/targets/aws/test_backups.py",
    "tests/pipelines/targets/aws/test_drill.py",
    "tests/pipelines/targets/aws/test_images.py",
    "tests/pipelines/targets/aws/test_lease.py",
    "tests/pipelines/targets/aws/test_observe.py",
    "tests/pipelines/targets/aws/test_provenance.py",
    "tests/pipelines/targets/aws/test_rollout.py",
    "tests/pipelines/targets/aws/test_s3_ledger_lock.py",
    "tests/pipelines/targets/aws/test_snapshot_retention.py",
)


def unmeasured(path: str) -> bool:
    return path.startswith(UNMEASURED)


def relative_path(item: pytest.Item) -> str:
    return item.path.relative_to(item.config.rootpath).as_posix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if unmeasured(relative_path(item)):
            item.add_marker(pytest.mark.no_cover)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _processes_unmeasured(item))


def _processes_unmeasured(item: pytest.Item) -> Iterator[None]:
    """Coverage's variables out of the environment while `item` runs, put back after."""
    shared = SHARED_ENVIRONMENTS in getattr(item, "fixturenames", ())
    if shared or not relative_path(item).startswith(UNMEASURED_PROCESSES):
        return (yield)
    hidden = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith(COVERAGE_ENV)}
    try:
        return (yield)
    finally:
        os.environ.update(hidden)


def _controller(item: pytest.Item) -> Any:
    plugin = item.config.pluginmanager.getplugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    return controller if getattr(controller, "started", False) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _paused(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _paused(item))


def _paused(item: pytest.Item) -> Iterator[None]:
    controller = _controller(item) if item.get_closest_marker("no_cover") else None
    if controller is None:
        return (yield from _processes_unmeasured(item))
    controller.pause()
    try:
        return (yield from _processes_unmeasured(item))
    finally:
        controller.resume()
